//! Renewal soak: concurrent clients against one route while a driver cycles
//! through every way a certificate changes — overlap exchanges through the API,
//! exclusive pause/exchange/resume, exchanges on disk picked up by a reload
//! (SIGHUP's path), invalid reloads, staged activations on resume — and every
//! invariant is checked from the receiver's records, not from wssgate's:
//!
//! - no message lost: every request answered 200 was received, complete, once;
//! - none duplicated: no request id reaches the receiver twice;
//! - none sent during a pause (between "drained" and the resume call);
//! - none encrypted for a certificate that was not active while it was in flight;
//! - no request failed, except refusals by `hold_max`/`hold_timeout` (counted).
//!
//! `SOAK_SECONDS` sets the duration (20 s by default, as in CI; longer by hand).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use common::net::{self, Daemon, Receiver};
use common::{CertSpec, TestReceiver};
use wssgate::keystore::Keystore;

const BODY: &str = r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><m:order xmlns:m="urn:m"><m:id>1</m:id></m:order></soap:Body></soap:Envelope>"#;
const CLIENTS: usize = 6;

/// A certificate's activation: it may become live anywhere in `from..until_at_latest`.
struct Activation {
    from: Instant,
    until_at_latest: Instant,
    sha256: String,
}

/// Pause the route and wait until nothing is in flight; returns when that was.
async fn pause_drained(daemon: &Daemon) -> Instant {
    let (status, view) = daemon.operate("pause?wait=10").await;
    assert_eq!(status, 200, "pause: {view}");
    Instant::now()
}

/// Exchange through the API; the certificate may go live anywhere during the call.
async fn exchange(daemon: &Daemon, cert: &TestReceiver) -> Activation {
    let from = Instant::now();
    let (status, body) = daemon.exchange(&cert.cert_pem()).await;
    assert_eq!(status, 200, "exchange: {body}");
    Activation {
        from,
        until_at_latest: Instant::now(),
        sha256: cert.recipient().info().sha256.clone(),
    }
}

async fn resume(daemon: &Daemon) {
    let (status, view) = daemon.operate("resume").await;
    assert_eq!(status, 200, "resume: {view}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewal_soak_loses_nothing_and_never_uses_a_wrong_certificate() {
    let seconds: u64 = std::env::var("SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let certs: Vec<TestReceiver> = (200..206)
        .map(|serial| {
            TestReceiver::new(&CertSpec {
                serial,
                common_name: format!("receiver-{serial}"),
                ..CertSpec::default()
            })
        })
        .collect();
    let mut ring = wssgate::wss::keys::KeyRing::default();
    for c in &certs {
        ring.push(wssgate::wss::keys::from_pem(&c.key_and_cert_pem(), "k").unwrap());
    }
    let receiver = Arc::new(Receiver::start(ring).await.unwrap());
    let daemon = Arc::new(
        Daemon::start(
            &net::config(
                &format!("http://{}/s", receiver.addr),
                "hold_timeout = \"20s\"",
                "",
            ),
            &[("orders-receiver", certs[0].cert_pem())],
        )
        .await,
    );
    let config_path = daemon.dir.path().join("wssgate.toml");
    let good_config = std::fs::read_to_string(&config_path).unwrap();
    let sha = |i: usize| certs[i % certs.len()].recipient().info().sha256.clone();
    let started = Instant::now();
    let mut activations = vec![Activation {
        from: started,
        until_at_latest: started,
        sha256: sha(0),
    }];
    let mut pauses: Vec<(Instant, Instant)> = Vec::new();
    let mut counts = [0usize; 5];
    let stop = Arc::new(AtomicBool::new(false));
    let load = net::clients(
        &daemon,
        &stop,
        CLIENTS,
        "soak-",
        Duration::from_millis(2),
        BODY,
    );

    let mut next = 1;
    let mut step = 0;
    while started.elapsed() < Duration::from_secs(seconds) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let action = step % 5;
        step += 1;
        match action {
            // Overlap: exchange through the API while traffic flows.
            0 => {
                activations.push(exchange(&daemon, &certs[next % certs.len()]).await);
                next += 1;
            }
            // Exclusive: pause (drained), exchange, receiver swaps, resume.
            1 => {
                let paused = pause_drained(&daemon).await;
                activations.push(exchange(&daemon, &certs[next % certs.len()]).await);
                next += 1;
                tokio::time::sleep(Duration::from_millis(150)).await;
                let resuming = Instant::now();
                pauses.push((paused, resuming));
                resume(&daemon).await;
            }
            // On disk, then the reload a SIGHUP triggers.
            2 => {
                let from = Instant::now();
                let keystore = Keystore::new(daemon.shared.load().config.keystore.clone());
                let policy =
                    wssgate::keystore::policy(&daemon.shared.load().config.keystore, false);
                keystore
                    .exchange(
                        "orders-receiver",
                        &certs[next % certs.len()].cert_pem(),
                        "soak",
                        &policy,
                        SystemTime::now(),
                    )
                    .unwrap();
                daemon.reload().await.expect("valid reload");
                activations.push(Activation {
                    from,
                    until_at_latest: Instant::now(),
                    sha256: sha(next),
                });
                next += 1;
            }
            // An invalid configuration: the reload is refused, nothing changes.
            3 => {
                let generation = daemon.shared.load().generation;
                std::fs::write(
                    &config_path,
                    format!("{good_config}\n[[route]]\nname = 1\n"),
                )
                .unwrap();
                assert!(daemon.reload().await.is_err(), "invalid reload refused");
                assert_eq!(daemon.shared.load().generation, generation);
                std::fs::write(&config_path, &good_config).unwrap();
            }
            // Staged: pause, stage for on-resume, resume activates it first.
            _ => {
                let paused = pause_drained(&daemon).await;
                let (status, body) = daemon
                    .admin_call(
                        "PUT",
                        "/v1/keystore/orders-receiver?activate=on-resume",
                        Some("keys"),
                        &certs[next % certs.len()].cert_pem(),
                    )
                    .await;
                assert_eq!(status, 202, "staged: {body}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                let resuming = Instant::now();
                pauses.push((paused, resuming));
                resume(&daemon).await;
                activations.push(Activation {
                    from: resuming,
                    until_at_latest: Instant::now(),
                    sha256: sha(next),
                });
                next += 1;
            }
        }
        counts[action] += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let mut sent = Vec::new();
    for h in load {
        sent.extend(h.await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let received = receiver.received();

    // No request failed (held requests wait; none was refused in this run).
    let refused = sent.iter().filter(|s| s.status == 503).count();
    let failed: Vec<_> = sent
        .iter()
        .filter(|s| s.status != 200 && s.status != 503)
        .map(|s| (&s.id, s.status))
        .collect();
    assert!(failed.is_empty(), "failed requests: {failed:?}");
    // None duplicated, none lost, nothing extra.
    let mut ids: Vec<&str> = received.iter().map(|r| r.request_id.as_str()).collect();
    ids.sort_unstable();
    let before = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), before, "a request reached the receiver twice");
    let accepted: Vec<&net::Sent> = sent.iter().filter(|s| s.status == 200).collect();
    assert_eq!(received.len(), accepted.len(), "received = accepted");
    for s in &accepted {
        let r = received
            .iter()
            .find(|r| r.request_id == s.id)
            .unwrap_or_else(|| panic!("{} answered 200 but never received", s.id));
        assert!(
            r.complete && r.decrypted.is_ok(),
            "{}: {:?}",
            s.id,
            r.decrypted
        );
        // Nothing during a pause.
        for (paused, resuming) in &pauses {
            assert!(
                !(r.at > *paused && r.at < *resuming),
                "{} reached the receiver during a pause",
                s.id
            );
        }
        // The certificate was active at some moment while the request was in flight:
        // activation k is live from (at the earliest) its start until (at the
        // latest) the end of activation k+1.
        let used = r.certificate.as_deref().unwrap();
        let allowed = activations.iter().enumerate().any(|(k, a)| {
            let until = activations
                .get(k + 1)
                .map_or(Instant::now(), |n| n.until_at_latest);
            a.sha256 == used && a.from <= s.end && until >= s.start
        });
        assert!(
            allowed,
            "{} used a certificate not active while it was in flight",
            s.id
        );
    }
    println!(
        "{seconds} s: {} requests ({} accepted, {refused} refused while paused), {} overlap exchanges, {} exclusive cycles, {} reloads after on-disk exchanges, {} invalid reloads, {} staged activations; lost 0, duplicated 0, sent while paused 0, wrong certificate 0",
        sent.len(),
        accepted.len(),
        counts[0],
        counts[1],
        counts[2],
        counts[3],
        counts[4],
    );
    assert!(
        counts.iter().all(|&c| c > 0),
        "every kind of change ran: {counts:?}"
    );
}
