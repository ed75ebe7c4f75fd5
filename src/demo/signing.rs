//! The demo's signing key acts: the tenant's own signing key renewed by overlap
//! and by exclusive, with traffic running through a route that signs (then
//! encrypts), in front of a receiver that verifies every signature
//! ([`crate::receiver::verify`]) and answers 500 to one it cannot verify under
//! a certificate it trusts. The receiver's records say which serial signed
//! each message.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioExecutor;

use super::{DemoError, KeyPair, Receiver, Traffic, fail, say};
use crate::admin::client::AdminClient;
use crate::receiver::verify::SignatureCheck;

/// The ring the demo's signing route signs with.
pub(super) const RING: &str = "tenant-signing";

/// What the signing acts found in the receiver's records.
pub(super) struct Signing {
    pub sent: u64,
    pub failed: u64,
    pub lost: u64,
    pub duplicated: u64,
    /// Messages received whose signature verified under a trusted certificate.
    pub verified: u64,
    /// Messages whose signature did not verify under a trusted certificate.
    pub unverified: u64,
    /// Messages that reached the receiver while the route was paused.
    pub during_pause: u64,
    /// Messages signed by a key the receiver had stopped trusting.
    pub wrong_key: u64,
}

impl Signing {
    pub fn clean(&self) -> bool {
        self.sent > 0
            && self.failed == 0
            && self.lost == 0
            && self.duplicated == 0
            && self.unverified == 0
            && self.during_pause == 0
            && self.wrong_key == 0
    }

    /// Every problem, as one count for the demo's result.
    pub fn problems(&self) -> u64 {
        self.failed
            + self.lost
            + self.duplicated
            + self.unverified
            + self.during_pause
            + self.wrong_key
    }
}

fn serial_of(check: Option<&SignatureCheck>) -> String {
    check
        .and_then(|c| c.signer())
        .map_or_else(|| "-".to_string(), |s| s.serial.clone())
}

/// Both signing key acts. `receiver` verifies and trusts the active key
/// (`keys[0]`) when called; `keys[1]` is added by overlap, `keys[2]` by
/// exclusive; `route` signs with [`RING`].
pub(super) async fn acts(
    out: &mut dyn Write,
    admin: &AdminClient,
    proxy_addr: std::net::SocketAddr,
    route: &str,
    receiver: &Receiver,
    keys: [&KeyPair; 3],
) -> Result<Signing, DemoError> {
    let pem = |k: &KeyPair| k.key_and_cert_pem().map(Bytes::from).map_err(fail("pem"));
    let traffic = Arc::new(Traffic::default());
    let stop = Arc::new(AtomicBool::new(false));
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let mut senders = Vec::new();
    for c in 0..2 {
        let (traffic, stop, client) = (traffic.clone(), stop.clone(), client.clone());
        let url = format!("http://{proxy_addr}/{route}");
        senders.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let body = format!(
                    r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><ord:submit xmlns:ord="urn:demo:signed"><ord:sender>{c}</ord:sender><ord:seq>{i}</ord:seq></ord:submit></soap:Body></soap:Envelope>"#
                );
                if !traffic
                    .post(&client, &url, format!("s{c}-{i}"), Bytes::from(body))
                    .await
                {
                    break;
                }
                i += 1;
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }));
    }
    let count = || receiver.received().len();
    tokio::time::sleep(Duration::from_millis(600)).await;

    say(
        out,
        "SIGNING KEY RENEWAL BY OVERLAP (the receiver can trust the old and the new signing certificate)",
    );
    say(
        out,
        &format!(
            "  route /{route} signs with key ring {RING} (serial 3001), then encrypts; the receiver verifies every signature"
        ),
    );
    receiver.trust(vec![keys[0].cert.clone(), keys[1].cert.clone()]);
    say(
        out,
        "  1. receiver administrator: the receiver trusts serial 3001 and serial 3002",
    );
    let added = admin
        .keyring_add(RING, pem(keys[1])?)
        .await
        .map_err(fail("key ring"))?;
    say(
        out,
        &format!(
            "  2. keystore administrator: PUT /v1/keyring/{RING} — serial {} signs the next message (serial {} retained, no longer signs)",
            added.current.serial,
            added.previous.as_ref().map_or("?", |p| p.serial.as_str())
        ),
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    receiver.trust(vec![keys[1].cert.clone()]);
    let overlap_trust_drop = count();
    say(
        out,
        "  3. receiver administrator: trust in serial 3001 dropped; the receiver trusts serial 3002 only\n",
    );
    tokio::time::sleep(Duration::from_millis(500)).await;

    say(
        out,
        "SIGNING KEY RENEWAL BY EXCLUSIVE (the receiver trusts one signing certificate at a time)",
    );
    let paused = admin
        .pause(route, Some(Duration::from_secs(10)))
        .await
        .map_err(fail("pause"))?;
    let at_pause = count();
    say(
        out,
        &format!(
            "  1. operator: POST /v1/routes/{route}/pause?wait=10 — paused, {} in flight; requests are held",
            paused.route.in_flight
        ),
    );
    let added = admin
        .keyring_add(RING, pem(keys[2])?)
        .await
        .map_err(fail("key ring"))?;
    say(
        out,
        &format!(
            "  2. keystore administrator: PUT /v1/keyring/{RING} — serial {} active; nothing is signed while paused",
            added.current.serial
        ),
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    receiver.trust(vec![keys[2].cert.clone()]);
    let exclusive_switch = count();
    let during_pause = exclusive_switch - at_pause;
    say(
        out,
        &format!(
            "  3. receiver administrator: trust switched from serial 3002 to serial 3003; {during_pause} messages reached the receiver during the pause"
        ),
    );
    let resumed = admin.resume(route).await.map_err(fail("resume"))?;
    say(
        out,
        &format!(
            "  4. operator: POST /v1/routes/{route}/resume — {} held requests released in arrival order, signed by serial 3003",
            resumed.released
        ),
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        let _ = s.await;
    }

    // The receiver's records decide.
    let received = receiver.received();
    let mut seen: BTreeMap<&str, u64> = BTreeMap::new();
    let mut per_serial: BTreeMap<String, u64> = BTreeMap::new();
    let mut runs: BTreeMap<String, Vec<(String, u64, u64)>> = BTreeMap::new();
    let (mut unverified, mut wrong_key) = (0, 0);
    for (index, r) in received.iter().enumerate() {
        *seen.entry(r.request_id.as_str()).or_default() += 1;
        if !r
            .signature
            .as_ref()
            .is_some_and(SignatureCheck::is_verified)
        {
            unverified += 1;
        }
        let serial = serial_of(r.signature.as_ref());
        // After each trust change, only the trusted key may have signed.
        let stale = (index >= overlap_trust_drop && serial == "3001")
            || (index >= exclusive_switch && serial != "3003");
        wrong_key += u64::from(stale);
        *per_serial.entry(serial.clone()).or_default() += 1;
        // Per sender, runs of consecutive messages by signer.
        let (sender, seq) = r
            .request_id
            .split_once('-')
            .map_or((r.request_id.as_str(), "0"), |(s, n)| (s, n));
        let seq: u64 = seq.parse().unwrap_or(0);
        let sender_runs = runs.entry(sender.to_string()).or_default();
        match sender_runs.last_mut() {
            Some((s, _, last)) if *s == serial => *last = (*last).max(seq),
            _ => sender_runs.push((serial, seq, seq)),
        }
    }
    let sent = traffic.sent.load(Ordering::Relaxed);
    let result = Signing {
        sent,
        failed: traffic.failed.load(Ordering::Relaxed),
        lost: sent.saturating_sub(seen.len() as u64),
        duplicated: seen.values().filter(|n| **n > 1).count() as u64,
        verified: received.len() as u64 - unverified,
        unverified,
        during_pause: during_pause as u64,
        wrong_key,
    };
    for (sender, sender_runs) in &runs {
        let text: Vec<String> = sender_runs
            .iter()
            .map(|(serial, first, last)| format!("#{first}–#{last} serial {serial}"))
            .collect();
        say(
            out,
            &format!(
                "  sender {}: signed by {}",
                sender.trim_start_matches('s'),
                text.join(", ")
            ),
        );
    }
    for (serial, n) in &per_serial {
        say(
            out,
            &format!("  {n:>5} messages verified by the receiver as signed by serial {serial}"),
        );
    }
    let ring = admin.keyring(RING).await.map_err(fail("key ring"))?;
    for k in &ring.keys {
        say(
            out,
            &format!(
                "  wssgate counted for key serial {}: {} messages signed",
                k.serial, k.signatures
            ),
        );
    }
    say(
        out,
        &format!(
            "  signing: sent {}, failed {}, lost {}, duplicated {}, unverified {}, signed by an untrusted key {}, reached the receiver during the pause {}\n",
            result.sent,
            result.failed,
            result.lost,
            result.duplicated,
            result.unverified,
            result.wrong_key,
            result.during_pause
        ),
    );
    Ok(result)
}
