//! Key ring soak: concurrent senders through a decrypt route while a driver adds
//! keys through the admin API; each sender switches from the key it uses to the
//! newest live one at random moments. Checked from the receiver's records:
//!
//! - none failed: every request is answered 200;
//! - none lost or duplicated: every request id reaches the receiver exactly
//!   once, complete, decrypted (no EncryptedData left) and with its own payload;
//! - every decryption is counted against the key it used.
//!
//! `SOAK_SECONDS` sets the duration (6 s by default, for CI; longer by hand).

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::net::{self, Daemon, Receiver};
use common::{CertSpec, TestReceiver};
use http_body_util::Full;
use wssgate::wss::keys::KeyRing;
use wssgate::wss::{self, EncryptOptions, Recipient};

const SENDERS: usize = 6;
const KEYS: usize = 5;

/// A small xorshift: random moments without a dependency.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn body(id: &str) -> String {
    format!(
        r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><m:order xmlns:m="urn:m"><m:id>{id}</m:id></m:order></soap:Body></soap:Envelope>"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn senders_switching_keys_while_keys_are_added_lose_nothing() {
    let seconds: u64 = std::env::var("SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(6);
    let keys: Vec<TestReceiver> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..KEYS as u32)
            .map(|i| {
                s.spawn(move || {
                    TestReceiver::new(&CertSpec {
                        serial: 500 + i,
                        ..CertSpec::default()
                    })
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let recipients: Arc<Vec<Recipient>> = Arc::new(keys.iter().map(|k| k.recipient()).collect());
    let receiver = Receiver::start(KeyRing::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    common::write_ring(dir.path(), "tenant", &keys[0]);
    let upstream = format!("http://{}/service", receiver.addr);
    let daemon =
        Arc::new(Daemon::start_in(dir, &net::decrypt_config(&upstream, "", ""), &[]).await);

    // The newest key that is live: senders may switch to it from here on.
    let live = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut senders = Vec::new();
    for s in 0..SENDERS {
        let (daemon, live, stop, recipients) = (
            daemon.clone(),
            live.clone(),
            stop.clone(),
            recipients.clone(),
        );
        senders.push(tokio::spawn(async move {
            let client = net::client();
            let mut random = Random(0x9E37_79B9_7F4A_7C15 ^ ((s as u64 + 1) * 0x2545_F491));
            let mut using = 0usize;
            let mut sent: Vec<(String, u16, usize)> = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                // At a random moment, the sender's own "we have switched".
                if random.next().is_multiple_of(8) {
                    using = live.load(Ordering::Acquire);
                }
                let id = format!("s{s}-{i}");
                let (encrypted, _) = wss::encrypt_to_vec(
                    body(&id).as_bytes(),
                    &recipients[using],
                    &EncryptOptions::default(),
                )
                .unwrap();
                let request = http::Request::post(daemon.url("/inbound"))
                    .header("content-type", "text/xml")
                    .header("x-request-id", &id)
                    .body(Full::new(Bytes::from(encrypted)))
                    .unwrap();
                let status = client
                    .request(request)
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0);
                sent.push((id, status, using));
                i += 1;
            }
            sent
        }));
    }

    // The driver: keys added through the API, spread over the run.
    let admin = daemon.client("keys");
    let pace = Duration::from_millis(seconds * 1000 / KEYS as u64);
    for (index, key) in keys.iter().enumerate().skip(1) {
        tokio::time::sleep(pace).await;
        let added = admin
            .keyring_add("tenant", Bytes::from(key.key_and_cert_pem()))
            .await
            .unwrap();
        assert!(added.live);
        live.store(index, Ordering::Release);
    }
    tokio::time::sleep(pace).await;
    stop.store(true, Ordering::Relaxed);
    let mut sent = Vec::new();
    for s in senders {
        sent.extend(s.await.unwrap());
    }

    let failed: Vec<_> = sent
        .iter()
        .filter(|(_, status, _)| *status != 200)
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} failed: {:?}",
        failed.len(),
        sent.len(),
        &failed[..failed.len().min(5)]
    );
    let mut arrived: HashMap<String, usize> = HashMap::new();
    for r in receiver.received() {
        assert!(r.complete, "{} arrived incomplete", r.request_id);
        let text = String::from_utf8(r.raw).unwrap();
        assert!(
            !text.contains("EncryptedData"),
            "{} arrived encrypted",
            r.request_id
        );
        assert!(
            text.contains(&format!("<m:id>{}</m:id>", r.request_id)),
            "{} carries another payload",
            r.request_id
        );
        *arrived.entry(r.request_id).or_default() += 1;
    }
    let lost: Vec<_> = sent
        .iter()
        .filter(|(id, _, _)| !arrived.contains_key(id))
        .collect();
    assert!(lost.is_empty(), "{} lost", lost.len());
    assert!(arrived.values().all(|n| *n == 1), "a request arrived twice");
    assert_eq!(arrived.len(), sent.len());

    // Every key was used, and every use was counted against it.
    let view = daemon.client("read").keyring("tenant").await.unwrap();
    assert_eq!(view.keys.len(), KEYS);
    for (index, key) in keys.iter().enumerate() {
        let serial = key.recipient().info().serial.clone();
        let counted = view
            .keys
            .iter()
            .find(|k| k.serial == serial)
            .unwrap()
            .decryptions;
        let used = sent.iter().filter(|(_, _, k)| *k == index).count() as u64;
        assert_eq!(counted, used, "key {index}");
    }
    let switched = (1..KEYS)
        .filter(|k| sent.iter().any(|(_, _, u)| u == k))
        .count();
    println!(
        "{} requests, 0 failed, 0 lost; {KEYS} keys, {switched} switched to under load",
        sent.len()
    );
    assert!(switched >= KEYS - 2, "senders switched keys under load");
}
