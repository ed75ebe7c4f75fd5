//! The demo's receiver-side act: a receiver that cannot decrypt behind a
//! `mode = "decrypt"` route, whose key ring gets a new key while two senders
//! switch to it when they are ready — the exclusive procedure of a one-key
//! receiver turned into an overlap one, without a pause.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioExecutor;

use super::{DemoError, KeyPair, Receiver, Traffic, fail, say};
use crate::admin::client::AdminClient;

/// What the receiver side's senders saw, and its receiver got.
pub(super) struct Inbound {
    pub sent: u64,
    pub delivered: u64,
    pub failed: u64,
    pub lost: u64,
}

impl Inbound {
    pub fn clean(&self) -> bool {
        self.sent > 0 && self.failed == 0 && self.lost == 0 && self.delivered == self.sent
    }
}

/// The receiver side: two senders encrypt for the receiver's key themselves and
/// send through the decrypt route; the receiver administrator adds the new key
/// to the ring; each sender switches when it is ready; the old key goes on
/// decrypting meanwhile. `keys`: the active key, then the new one.
pub(super) async fn receiver_side(
    out: &mut dyn Write,
    admin: &AdminClient,
    proxy_addr: std::net::SocketAddr,
    plain: &Receiver,
    keys: [&KeyPair; 2],
) -> Result<Inbound, DemoError> {
    say(
        out,
        "RECEIVER SIDE: EXCLUSIVE TURNED OVERLAP (a receiver that holds one key, behind a decrypt route)",
    );
    say(
        out,
        "  wssgate decrypts for it with key ring inbound-receiver (serial 2029); it gets plaintext",
    );
    let recipients = [
        Arc::new(crate::wss::Recipient::new(keys[0].cert.clone()).map_err(fail("certificate"))?),
        Arc::new(crate::wss::Recipient::new(keys[1].cert.clone()).map_err(fail("certificate"))?),
    ];
    let traffic = Arc::new(Traffic::default());
    let stop = Arc::new(AtomicBool::new(false));
    // Which key each sender encrypts for (0: serial 2029, 1: serial 2030).
    let switched: Arc<[AtomicBool; 2]> = Arc::new([AtomicBool::new(false), AtomicBool::new(false)]);
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let mut senders = Vec::new();
    for c in 0..2usize {
        let (traffic, stop, client, switched, recipients) = (
            traffic.clone(),
            stop.clone(),
            client.clone(),
            switched.clone(),
            recipients.clone(),
        );
        senders.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let body = format!(
                    r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><ord:notify xmlns:ord="urn:demo:inbound"><ord:sender>{c}</ord:sender><ord:seq>{i}</ord:seq></ord:notify></soap:Body></soap:Envelope>"#
                );
                let recipient = &recipients[usize::from(switched[c].load(Ordering::Relaxed))];
                let Ok((encrypted, _)) = crate::wss::encrypt_to_vec(
                    body.as_bytes(),
                    recipient,
                    &crate::wss::EncryptOptions::default(),
                ) else {
                    break;
                };
                let url = format!("http://{proxy_addr}/inbound");
                if !traffic
                    .post(&client, &url, format!("in{c}-{i}"), Bytes::from(encrypted))
                    .await
                {
                    break;
                }
                i += 1;
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    let added = admin
        .keyring_add(
            "inbound-receiver",
            Bytes::from(keys[1].key_and_cert_pem().map_err(fail("pem"))?),
        )
        .await
        .map_err(fail("key ring"))?;
    say(
        out,
        &format!(
            "  1. receiver administrator: PUT /v1/keyring/inbound-receiver — serial {} active, serial {} retained until {}",
            added.current.serial,
            added.previous.as_ref().map_or("?", |p| p.serial.as_str()),
            added
                .previous_retain_until
                .as_deref()
                .map_or("?", |t| t.get(..10).unwrap_or(t))
        ),
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    switched[0].store(true, Ordering::Relaxed);
    say(
        out,
        "  2. sender 0 encrypts for serial 2030 from now on; sender 1 still for 2029",
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    switched[1].store(true, Ordering::Relaxed);
    say(
        out,
        "  3. sender 1 switches too — no pause, no window, on either side",
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        let _ = s.await;
    }
    let ring = admin
        .keyring("inbound-receiver")
        .await
        .map_err(fail("key ring"))?;
    let mut report = String::new();
    for k in &ring.keys {
        report.push_str(&format!(
            "  key serial {} ({}): {} messages decrypted\n",
            k.serial,
            match k.state {
                crate::keystore::KeyState::Active => "active",
                crate::keystore::KeyState::Retained => "retained",
            },
            k.decryptions
        ));
    }
    say(out, report.trim_end());
    let received = plain.received();
    let delivered = received
        .iter()
        .filter(|r| r.complete && !r.raw.windows(13).any(|w| w == b"EncryptedData"))
        .count() as u64;
    let sent = traffic.sent.load(Ordering::Relaxed);
    say(out, "");
    Ok(Inbound {
        sent,
        delivered,
        failed: traffic.failed.load(Ordering::Relaxed),
        lost: sent.saturating_sub(received.len() as u64),
    })
}
