//! `wssgate demo`: both renewal procedures, live, with nothing to set up. It makes
//! throw-away receiver key pairs, starts a receiver that decrypts (holding one key
//! at a time, as a one-key receiver does, or two during an overlap), runs the real
//! daemon in-process, sends traffic throughout, performs an overlap and an exclusive
//! renewal through the admin API, and checks from the receiver's records that every
//! message was decrypted and none was lost or duplicated. Then the receiver side: a
//! receiver that cannot decrypt at all behind a `mode = "decrypt"` route, whose key
//! ring gets a new key while senders go on — the exclusive procedure of a one-key
//! receiver turned into an overlap one, without a pause. Last, the tenant's own
//! signing key renewed by overlap and by exclusive (`demo/signing.rs`), in front of a
//! receiver that verifies every signature.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;

use crate::admin::client::AdminClient;
use crate::daemon::Daemon;
use crate::receiver::{self, Answering, CertSpec, KeyPair, Receiver};
use crate::wss::keys::KeyRing;

mod receiver_side;
mod signing;

use receiver_side::receiver_side;

/// Why the demo could not run (not: why it found a problem — that is its report).
#[derive(Debug, thiserror::Error)]
#[error("demo: {0}")]
pub struct DemoError(String);

fn fail<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> DemoError + '_ {
    move |e| DemoError(format!("{what}: {e}"))
}

fn key_pair(serial: u32, name: &str) -> Result<KeyPair, DemoError> {
    KeyPair::generate(&CertSpec {
        common_name: name.into(),
        organization: "Demo Receiver".into(),
        country: None,
        serial,
        not_before_days: 0,
        ..CertSpec::default()
    })
    .map_err(fail("key generation"))
}

fn ring(pairs: &[&KeyPair]) -> Result<KeyRing, DemoError> {
    receiver::ring(pairs).map_err(fail("key"))
}

/// Counters of the demo's clients.
#[derive(Default)]
struct Traffic {
    sent: AtomicU64,
    ok: AtomicU64,
    failed: AtomicU64,
}

/// The demo's HTTP client, shared by the senders of an act.
type DemoClient = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
>;

impl Traffic {
    /// Send one SOAP request and count it (200 is ok, anything else failed);
    /// `false` when the request could not even be made (the sender stops).
    async fn post(&self, client: &DemoClient, url: &str, request_id: String, body: Bytes) -> bool {
        let Ok(req) = hyper::Request::post(url)
            .header("content-type", "text/xml")
            .header("x-request-id", request_id)
            .body(Full::new(body))
        else {
            return false;
        };
        self.sent.fetch_add(1, Ordering::Relaxed);
        match client.request(req).await {
            Ok(r) if r.status() == 200 => self.ok.fetch_add(1, Ordering::Relaxed),
            _ => self.failed.fetch_add(1, Ordering::Relaxed),
        };
        true
    }
}

/// The outcome the demo prints and exits on.
#[derive(Debug, Clone)]
pub struct DemoReport {
    pub sent: u64,
    pub delivered: u64,
    pub decrypted: u64,
    pub failed: u64,
    pub lost: u64,
    pub duplicated: u64,
    /// Messages per certificate serial.
    pub per_certificate: BTreeMap<String, u64>,
}

impl DemoReport {
    pub fn success(&self) -> bool {
        self.sent > 0
            && self.failed == 0
            && self.lost == 0
            && self.duplicated == 0
            && self.decrypted == self.sent
    }
}

fn say(out: &mut dyn Write, text: &str) {
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}

/// Run the demo, printing what happens to `out`.
pub async fn run(out: &mut dyn Write) -> Result<DemoReport, DemoError> {
    let dir = tempfile::tempdir().map_err(fail("temporary directory"))?;
    say(
        out,
        "wssgate demo: both certificate renewal procedures, live, with traffic running\n",
    );
    say(
        out,
        "setup: three throw-away receiver key pairs (RSA-2048): serial 2026, 2027, 2028",
    );
    let k2026 = key_pair(2026, "orders-receiver-2026")?;
    let k2027 = key_pair(2027, "orders-receiver-2027")?;
    let k2028 = key_pair(2028, "orders-receiver-2028")?;
    let (k2029, k2030) = (
        key_pair(2029, "inbound-receiver-2029")?,
        key_pair(2030, "inbound-receiver-2030")?,
    );
    say(
        out,
        "setup: three throw-away tenant signing key pairs (RSA-2048): serial 3001, 3002, 3003",
    );
    let signing_keys = [
        key_pair(3001, "tenant-signing-3001")?,
        key_pair(3002, "tenant-signing-3002")?,
        key_pair(3003, "tenant-signing-3003")?,
    ];
    let plain = Receiver::start(KeyRing::default())
        .await
        .map_err(fail("receiver"))?;
    std::fs::create_dir_all(dir.path().join("private")).map_err(fail("key ring"))?;
    crate::keystore::files::write_private(
        &dir.path().join("private/inbound-receiver.pem"),
        &k2029.key_and_cert_pem().map_err(fail("pem"))?,
    )
    .map_err(fail("key ring"))?;
    crate::keystore::files::write_private(
        &dir.path().join(format!("private/{}.pem", signing::RING)),
        &signing_keys[0].key_and_cert_pem().map_err(fail("pem"))?,
    )
    .map_err(fail("key ring"))?;
    // Verifies every signature; trusts the active signing certificate.
    let verifying = Receiver::start_with(
        ring(&[&k2026])?,
        Answering {
            refuse_undecryptable: true,
            refuse_unverified: true,
        },
    )
    .await
    .map_err(fail("receiver"))?;
    verifying.trust(vec![signing_keys[0].cert.clone()]);
    let receiver = Receiver::start_with(
        ring(&[&k2026])?,
        Answering {
            refuse_undecryptable: true,
            ..Answering::default()
        },
    )
    .await
    .map_err(fail("receiver"))?;
    say(
        out,
        &format!(
            "setup: a receiver on {} that decrypts and holds one key: serial 2026",
            receiver.addr
        ),
    );

    std::fs::create_dir_all(dir.path().join("keystore")).map_err(fail("keystore"))?;
    std::fs::write(
        dir.path().join("keystore/orders-receiver.pem"),
        k2026.cert.to_pem().map_err(fail("pem"))?,
    )
    .map_err(fail("keystore"))?;
    std::fs::write(
        dir.path().join("keystore/signed-receiver.pem"),
        k2026.cert.to_pem().map_err(fail("pem"))?,
    )
    .map_err(fail("keystore"))?;
    let mut token = [0u8; 24];
    openssl::rand::rand_bytes(&mut token).map_err(fail("token"))?;
    let token = hex::encode(token);
    crate::keystore::files::write_private(&dir.path().join("admin.token"), token.as_bytes())
        .map_err(fail("token"))?;
    let config = format!(
        r#"[proxy]
listen = "127.0.0.1:0"
drain_delay = "0s"
[admin]
listen = "127.0.0.1:0"
tokens = [ {{ name = "demo-operator", role = "admin", file = "admin.token" }} ]
[keystore]
dir = "keystore"
private_dir = "private"
state_dir = "var"
[[route]]
name = "orders"
path = "/orders"
upstream = "http://{}/orders"
alias = "orders-receiver"
on_pause = "hold"
hold_timeout = "30s"
[[route]]
name = "inbound"
path = "/inbound"
upstream = "http://{}/inbound"
mode = "decrypt"
ring = "inbound-receiver"
[[route]]
name = "signed"
path = "/signed"
upstream = "http://{}/signed"
alias = "signed-receiver"
sign = true
signing_ring = "{}"
on_pause = "hold"
hold_timeout = "30s"
"#,
        receiver.addr,
        plain.addr,
        verifying.addr,
        signing::RING
    );
    let config_path = dir.path().join("wssgate.toml");
    std::fs::write(&config_path, config).map_err(fail("configuration"))?;
    let daemon = Daemon::load(&config_path).await.map_err(fail("daemon"))?;
    let (proxy_listener, admin_listener) = (
        TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(fail("proxy listener"))?,
        TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(fail("admin listener"))?,
    );
    let proxy_addr = proxy_listener
        .local_addr()
        .map_err(fail("proxy listener"))?;
    let admin_addr = admin_listener
        .local_addr()
        .map_err(fail("admin listener"))?;
    let (intents_tx, intents_rx) = tokio::sync::mpsc::channel(4);
    let daemon_task = tokio::spawn(daemon.run(proxy_listener, admin_listener, intents_rx));
    let admin = AdminClient::with_token(&format!("http://{admin_addr}"), &token)
        .map_err(fail("admin client"))?;
    say(
        out,
        &format!(
            "setup: wssgate proxy on {proxy_addr} (route /orders, alias orders-receiver), admin API on {admin_addr}\n"
        ),
    );

    // Four clients sending continuously.
    let traffic = Arc::new(Traffic::default());
    let stop = Arc::new(AtomicBool::new(false));
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let mut clients = Vec::new();
    for c in 0..4 {
        let (traffic, stop, client) = (traffic.clone(), stop.clone(), client.clone());
        clients.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let body = format!(
                    r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><ord:submit xmlns:ord="urn:demo:orders"><ord:client>{c}</ord:client><ord:seq>{i}</ord:seq></ord:submit></soap:Body></soap:Envelope>"#
                );
                let url = format!("http://{proxy_addr}/orders");
                if !traffic
                    .post(&client, &url, format!("c{c}-{i}"), Bytes::from(body))
                    .await
                {
                    break;
                }
                i += 1;
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }));
    }
    let status = |t: &Traffic, r: &Receiver| {
        format!(
            "sent {}, answered ok {}, failed {}, received and decrypted by the receiver {}",
            t.sent.load(Ordering::Relaxed),
            t.ok.load(Ordering::Relaxed),
            t.failed.load(Ordering::Relaxed),
            r.received().iter().filter(|x| x.decrypted.is_ok()).count()
        )
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    say(
        out,
        &format!(
            "traffic: 4 clients sending to /orders — {}\n",
            status(&traffic, &receiver)
        ),
    );

    // Overlap renewal.
    say(
        out,
        "OVERLAP RENEWAL (the receiver can hold its old and new key for a while)",
    );
    receiver.hold(ring(&[&k2026, &k2027])?);
    say(
        out,
        "  1. receiver administrator: the receiver now accepts serial 2026 and serial 2027",
    );
    let r = admin
        .exchange(
            "orders-receiver",
            Bytes::from(k2027.cert.to_pem().map_err(fail("pem"))?),
        )
        .await
        .map_err(fail("exchange"))?;
    say(
        out,
        &format!(
            "  2. keystore administrator: PUT /v1/keystore/orders-receiver — serial {} is live (was {}), no restart",
            r.current.serial,
            r.previous.as_ref().map_or("?", |p| p.serial.as_str())
        ),
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    receiver.hold(ring(&[&k2027])?);
    say(
        out,
        "  3. receiver administrator: old key removed; the receiver holds serial 2027 only",
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    say(
        out,
        &format!("  traffic: {}\n", status(&traffic, &receiver)),
    );

    // Exclusive renewal.
    say(
        out,
        "EXCLUSIVE RENEWAL (the receiver can hold one key only)",
    );
    let paused = admin
        .pause("orders", Some(Duration::from_secs(10)))
        .await
        .map_err(fail("pause"))?;
    let at_pause = receiver.received().len();
    say(
        out,
        &format!(
            "  1. operator: POST /v1/routes/orders/pause?wait=10 — paused, {} in flight; requests are now held",
            paused.route.in_flight
        ),
    );
    let r = admin
        .exchange(
            "orders-receiver",
            Bytes::from(k2028.cert.to_pem().map_err(fail("pem"))?),
        )
        .await
        .map_err(fail("exchange"))?;
    say(
        out,
        &format!(
            "  2. keystore administrator: exchanged to serial {}",
            r.current.serial
        ),
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    receiver.hold(ring(&[&k2028])?);
    let view = admin.route("orders").await.map_err(fail("route"))?;
    let during_pause = receiver.received().len() - at_pause;
    say(
        out,
        &format!(
            "  3. receiver administrator: key pair swapped to serial 2028; {} requests held, {} reached the receiver during the pause",
            view.held, during_pause
        ),
    );
    let resumed = admin.resume("orders").await.map_err(fail("resume"))?;
    say(
        out,
        &format!(
            "  4. operator: POST /v1/routes/orders/resume — {} held requests released in arrival order, encrypted for serial 2028",
            resumed.released
        ),
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    say(
        out,
        &format!("  traffic: {}\n", status(&traffic, &receiver)),
    );

    stop.store(true, Ordering::Relaxed);
    for c in clients {
        let _ = c.await;
    }
    let inbound = receiver_side(out, &admin, proxy_addr, &plain, [&k2029, &k2030]).await?;
    let [s3001, s3002, s3003] = &signing_keys;
    let signed = signing::acts(
        out,
        &admin,
        proxy_addr,
        "signed",
        &verifying,
        [s3001, s3002, s3003],
    )
    .await?;
    let _ = intents_tx.send(crate::signal::Intent::Shutdown).await;
    let _ = daemon_task.await;

    // The receiver's records decide.
    let deliveries = receiver.received();
    let mut seen: BTreeMap<&str, u64> = BTreeMap::new();
    let mut per_certificate: BTreeMap<String, u64> = BTreeMap::new();
    for d in &deliveries {
        *seen.entry(d.request_id.as_str()).or_default() += 1;
        if d.decrypted.is_ok() {
            *per_certificate.entry(d.key_sources.join(",")).or_default() += 1;
        }
    }
    let sent = traffic.sent.load(Ordering::Relaxed);
    let report = DemoReport {
        sent,
        delivered: seen.len() as u64,
        decrypted: deliveries.iter().filter(|d| d.decrypted.is_ok()).count() as u64,
        failed: traffic.failed.load(Ordering::Relaxed),
        lost: sent.saturating_sub(seen.len() as u64),
        duplicated: seen.values().filter(|n| **n > 1).count() as u64,
        per_certificate,
    };
    say(out, "RESULT (from the receiver's records)");
    say(
        out,
        &format!(
            "  sent {}, delivered {}, decrypted {}, failed {}, lost {}, duplicated {}",
            report.sent,
            report.delivered,
            report.decrypted,
            report.failed,
            report.lost,
            report.duplicated
        ),
    );
    for (key, n) in &report.per_certificate {
        say(
            out,
            &format!("  {n:>5} messages decrypted with the key of {key}"),
        );
    }
    say(
        out,
        &format!(
            "  nothing reached the receiver during the pause: {}",
            if during_pause == 0 { "yes" } else { "NO" }
        ),
    );
    say(
        out,
        &format!(
            "  receiver side: sent {}, delivered decrypted {}, failed {}, lost {}; no pause",
            inbound.sent, inbound.delivered, inbound.failed, inbound.lost
        ),
    );
    say(
        out,
        &format!(
            "  signing key: sent {}, signature verified by the receiver {}, failed {}, lost {}; signed by an untrusted key {}",
            signed.sent, signed.verified, signed.failed, signed.lost, signed.wrong_key
        ),
    );
    let ok = report.success() && during_pause == 0 && inbound.clean() && signed.clean();
    say(
        out,
        if ok {
            "\nevery message was decrypted and none was lost"
        } else {
            "\nPROBLEM: see the counts above"
        },
    );
    if during_pause != 0 || !inbound.clean() || !signed.clean() {
        return Ok(DemoReport {
            failed: report.failed
                + during_pause as u64
                + inbound.failed
                + inbound.lost
                + signed.problems()
                + u64::from(signed.sent == 0),
            ..report
        });
    }
    Ok(report)
}

/// `wssgate demo receiver`: a receiver to try wssgate against — it decrypts every
/// message with the keys it was given (PEM files each holding a private key and its
/// certificate, as `wssgate decrypt --key` reads them), prints one line per message
/// with the certificate serial whose key decrypted it, and answers 500 to what it
/// cannot decrypt. Runs until interrupted (SIGINT or SIGTERM).
pub async fn run_receiver(
    listen: std::net::SocketAddr,
    keys: KeyRing,
    out: &mut dyn Write,
) -> Result<(), DemoError> {
    let receiver = Receiver::start_on(
        listen,
        keys,
        Answering {
            refuse_undecryptable: true,
            ..Answering::default()
        },
    )
    .await
    .map_err(fail(&format!("cannot listen on {listen}")))?;
    say(
        out,
        &format!(
            "demo receiver on http://{} (decrypts with the keys given; Ctrl-C stops)",
            receiver.addr
        ),
    );
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(fail("signals"))?;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate.recv() => break,
        }
        // What arrived since the last look, then forgotten: memory stays flat.
        let new: Vec<receiver::Received> =
            std::mem::take(&mut *receiver.received.lock().unwrap_or_else(|p| p.into_inner()));
        for r in new {
            let line = match &r.decrypted {
                Ok(_) => format!(
                    "received {} {}: decrypted with the key of {}",
                    if r.request_id.is_empty() {
                        "-"
                    } else {
                        &r.request_id
                    },
                    r.path,
                    r.key_sources.join(", ")
                ),
                Err(e) => format!("received {}: NOT decrypted: {e}", r.path),
            };
            say(out, &line);
        }
    }
    Ok(())
}
