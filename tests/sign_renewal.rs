//! The signing key renewed under load. In process: senders through a signing
//! route's handler while a new key is added to the signing ring through
//! `PUT /v1/keyring/{ring}` (role keys). Through sockets (the daemon on port 0,
//! and a `wssgate serve` process on port 0): the same by overlap against a
//! receiver that verifies every signature and trusts both signing
//! certificates; and by `wssgate renew exclusive --ring` against one that
//! trusts one certificate and switches at the prompt. None fails, none is lost; the
//! receiver's records (the BinarySecurityToken and the verified signer) show
//! which key signed each message.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::net::{self, Received, Receiver, TOKENS};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use wssgate::admin::Admin;
use wssgate::admin::client::AdminClient;
use wssgate::admin::contract::RouteState;
use wssgate::admin::contract::{KeyringAddAnswer, paths};
use wssgate::daemon::Daemon;
use wssgate::proxy::Proxy;
use wssgate::receiver::Answering;

const ADMIN_ADDR: &str = "127.0.0.1:9090";
const ENVELOPE: &str = r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><m:order xmlns:m="urn:m">42</m:order></soap:Body></soap:Envelope>"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_signing_key_renewed_by_overlap_under_load() {
    let receiver = Receiver::start(common::receiver().key_ring())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    common::write_keystore(
        dir.path(),
        &[("orders-receiver", common::receiver().cert_pem())],
    );
    common::write_ring(dir.path(), "tenant", common::signer());
    let mut config = String::from("[admin]\nlisten = \"127.0.0.1:9090\"\ntokens = [\n");
    for (name, role, token) in TOKENS {
        common::write_secret(&dir.path().join(format!("{name}.token")), token);
        config.push_str(&format!(
            "  {{ name = \"{name}\", role = \"{role}\", file = \"{{dir}}/{name}.token\" }},\n"
        ));
    }
    config.push_str("]\n");
    let upstream = format!("http://{}/service", receiver.addr);
    config.push_str(
        &common::net::config(&upstream, "sign = true\nsigning_ring = \"tenant\"", "").replace(
            "[keystore]\n",
            "[keystore]\nprivate_dir = \"{dir}/private\"\n",
        ),
    );
    let path = dir.path().join("wssgate.toml");
    std::fs::write(&path, config.replace("{dir}", dir.path().to_str().unwrap())).unwrap();
    let daemon = Daemon::load(&path).await.unwrap();
    let proxy = Arc::new(Proxy::new(daemon.shared.clone(), daemon.gates.clone()));
    let admin = Admin::new(daemon.control.clone(), ADMIN_ADDR.parse().unwrap());
    let next = common::next_signer();

    let stop = Arc::new(AtomicBool::new(false));
    let peer: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let senders: Vec<_> = (0..4)
        .map(|c| {
            let (proxy, stop) = (proxy.clone(), stop.clone());
            tokio::spawn(async move {
                let mut sent = Vec::new();
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let id = format!("s{c}-{i}");
                    let request = Request::post("/orders")
                        .header("content-type", "text/xml")
                        .header("x-request-id", &id)
                        .body(Full::new(Bytes::from_static(ENVELOPE.as_bytes())))
                        .unwrap();
                    let start = Instant::now();
                    let status = proxy.handle(request, peer).await.status();
                    sent.push((id, start, Instant::now(), status));
                    i += 1;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                sent
            })
        })
        .collect();
    // Counted, not timed: enough requests before the add, and after it.
    received_at_least(&receiver, 30).await;
    let put_started = Instant::now();
    let token = TOKENS.iter().find(|t| t.1 == "keys").unwrap().2;
    let request = Request::put(paths::keyring_alias("tenant"))
        .header("host", ADMIN_ADDR)
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(Bytes::from(next.key_and_cert_pem())))
        .unwrap();
    let answer = admin.handle(request).await;
    assert_eq!(answer.status(), StatusCode::OK);
    let body = answer.into_body().collect().await.unwrap().to_bytes();
    let added: KeyringAddAnswer = serde_json::from_slice(&body).unwrap();
    assert!(added.live && added.error.is_none(), "{added:?}");
    let put_returned = Instant::now();
    let so_far = receiver.received.lock().unwrap().len();
    received_at_least(&receiver, so_far + 30).await;
    stop.store(true, Ordering::Relaxed);
    let mut sent = Vec::new();
    for s in senders {
        sent.extend(s.await.unwrap());
    }

    let failed: Vec<_> = sent.iter().filter(|s| s.3 != StatusCode::OK).collect();
    assert!(
        failed.is_empty(),
        "{} failed: {:?}",
        failed.len(),
        failed.first()
    );
    let received = receiver.received.lock().unwrap();
    let (old, new) = (common::bst_of(common::signer()), common::bst_of(next));
    let (mut before, mut after) = (0, 0);
    for (id, start, end, _) in &sent {
        let message = received
            .iter()
            .find(|r| &r.request_id == id)
            .unwrap_or_else(|| panic!("{id} not received"));
        let raw = String::from_utf8_lossy(&message.raw);
        let signed_by_new = raw.contains(&new);
        assert!(
            signed_by_new != raw.contains(&old),
            "{id}: one signing certificate"
        );
        if *start > put_returned {
            assert!(signed_by_new, "{id} was sent after the PUT returned");
            after += 1;
        } else if *end < put_started {
            assert!(!signed_by_new, "{id} was answered before the PUT began");
            before += 1;
        }
    }
    assert!(before > 10 && after > 10, "{before} before, {after} after");
}

/// What the receiver recorded of the requests `sent`: each one exactly once,
/// answered 200, with a signature verified under a trusted certificate; by
/// request id, whether it is signed by `new` (else by `old`, never both).
fn signed_by_new(
    sent: &[net::Sent],
    received: &[Received],
    old: &common::TestReceiver,
    new: &common::TestReceiver,
) -> HashMap<String, (bool, Instant)> {
    let failed: Vec<_> = sent.iter().filter(|s| s.status != 200).collect();
    assert!(
        failed.is_empty(),
        "{} of {} failed, first: {} ({})",
        failed.len(),
        sent.len(),
        failed[0].id,
        failed[0].status
    );
    let mut by_id: HashMap<String, (bool, Instant)> = HashMap::new();
    for r in received {
        let (is_old, is_new) = (
            common::carries_token_of(&r.raw, old),
            common::carries_token_of(&r.raw, new),
        );
        assert!(
            is_old != is_new,
            "{}: one signing certificate",
            r.request_id
        );
        let signer = r.signature.as_ref().and_then(|s| s.signer());
        assert!(
            r.signature.as_ref().is_some_and(|s| s.is_verified()),
            "{}: {:?}",
            r.request_id,
            r.signature
        );
        let expected = if is_new { "1920" } else { "1919" };
        assert_eq!(signer.map(|s| s.serial.as_str()), Some(expected));
        assert!(
            by_id.insert(r.request_id.clone(), (is_new, r.at)).is_none(),
            "{} arrived twice",
            r.request_id
        );
    }
    for s in sent {
        assert!(by_id.contains_key(&s.id), "{} was lost", s.id);
    }
    assert_eq!(by_id.len(), sent.len(), "messages nobody sent");
    by_id
}

/// The signatures the daemon counted per key serial, from the typed view.
async fn signatures(admin: &AdminClient, serial: &str) -> u64 {
    let view = admin.keyring("tenant").await.unwrap();
    view.keys
        .iter()
        .find(|k| k.serial == serial)
        .map_or(0, |k| k.signatures)
}

/// Every request sent after the add returned is signed by the new key, every
/// one answered before it began by the old: how many before, during, after.
fn split_at_the_add(
    sent: &[net::Sent],
    by_id: &HashMap<String, (bool, Instant)>,
    put_started: Instant,
    put_returned: Instant,
) -> (usize, usize, usize) {
    let (mut before, mut between, mut after) = (0, 0, 0);
    for s in sent {
        let (is_new, _) = by_id[&s.id];
        if s.start > put_returned {
            assert!(is_new, "{} was sent after the add returned", s.id);
            after += 1;
        } else if s.end < put_started {
            assert!(!is_new, "{} was answered before the add began", s.id);
            before += 1;
        } else {
            between += 1;
        }
    }
    assert!(
        before >= 20 && after >= 20,
        "{before} before, {after} after"
    );
    (before, between, after)
}

/// A receiver that decrypts, verifies every signature and refuses (500) what
/// it cannot decrypt or verify under the `trusted` certificates.
async fn verifying_receiver(trusted: &[&common::TestReceiver]) -> Receiver {
    let receiver = Receiver::start_with(
        common::receiver().key_ring(),
        Answering {
            refuse_undecryptable: true,
            refuse_unverified: true,
        },
    )
    .await
    .unwrap();
    receiver.trust(trusted.iter().map(|t| t.cert.clone()).collect());
    receiver
}

async fn received_at_least(receiver: &Receiver, n: usize) {
    common::eventually(Duration::from_secs(60), async || {
        receiver.received.lock().unwrap().len() >= n
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_signing_key_renewed_by_overlap_through_sockets() {
    let (old, new) = (common::signer(), common::next_signer());
    let receiver = verifying_receiver(&[old, new]).await;
    let daemon =
        Arc::new(net::start_signing(&format!("http://{}/service", receiver.addr), old).await);
    let stop = Arc::new(AtomicBool::new(false));
    let load = net::clients(&daemon, &stop, 4, "o", Duration::from_millis(2), ENVELOPE);
    received_at_least(&receiver, 40).await;

    let put_started = Instant::now();
    let added = daemon
        .client("keys")
        .keyring_add("tenant", Bytes::from(new.key_and_cert_pem()))
        .await
        .unwrap();
    let put_returned = Instant::now();
    assert!(added.live && added.error.is_none(), "{added:?}");
    assert_eq!(added.current.serial, "1920");
    let so_far = receiver.received.lock().unwrap().len();
    received_at_least(&receiver, so_far + 40).await;
    stop.store(true, Ordering::Relaxed);
    let mut sent = Vec::new();
    for l in load {
        sent.extend(l.await.unwrap());
    }

    let by_id = signed_by_new(&sent, &receiver.received(), old, new);
    let (before, between, after) = split_at_the_add(&sent, &by_id, put_started, put_returned);
    // The daemon's count per key is the receiver's.
    let by_new = by_id.values().filter(|v| v.0).count() as u64;
    assert_eq!(signatures(&daemon.client("read"), "1920").await, by_new);
    assert_eq!(
        signatures(&daemon.client("read"), "1919").await,
        sent.len() as u64 - by_new
    );
    let (status, metrics) = daemon
        .client("read")
        .raw(http::Method::GET, "/metrics", None)
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    let metrics = String::from_utf8_lossy(&metrics);
    let series = metrics
        .lines()
        .find(|l| l.starts_with("wssgate_signatures_total{") && l.contains("serial=\"1920\""))
        .unwrap_or_else(|| panic!("no signature series for serial 1920:\n{metrics}"));
    assert!(series.contains("ring=\"tenant\""), "{series}");
    assert_eq!(series.rsplit(' ').next(), Some(by_new.to_string().as_str()));
    eprintln!(
        "overlap through sockets: {} sent, 0 failed, {before} before the add (old key), {between} during it, {after} after (new key)",
        sent.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_signing_key_renewed_by_exclusive_under_load() {
    let (old, new) = (common::signer(), common::next_signer());
    // A one-certificate receiver: it trusts the old signing certificate only.
    let receiver = verifying_receiver(&[old]).await;
    let daemon =
        Arc::new(net::start_signing(&format!("http://{}/service", receiver.addr), old).await);
    let key_file = daemon.dir.path().join("new-signing.pem");
    common::write_secret(&key_file, new.key_and_cert_pem());
    let stop = Arc::new(AtomicBool::new(false));
    let load = net::clients(&daemon, &stop, 4, "x", Duration::from_millis(2), ENVELOPE);
    received_at_least(&receiver, 40).await;

    let mut child = Command::new(env!("CARGO_BIN_EXE_wssgate"))
        .args(["renew", "--admin", &daemon.admin_url("")])
        .arg("--token-file")
        .arg(daemon.dir.path().join("root.token"))
        .args(["exclusive", "--ring", "tenant", "--add"])
        .arg(&key_file)
        .args(["--wait", "30"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let mut output = Vec::new();
    while let Some(line) = lines.recv().await {
        let prompt = line.contains("switch the receiver's trust");
        output.push(line);
        if prompt {
            break;
        }
    }
    // The routes are paused and the new key is active: requests are held.
    let read = daemon.client("read");
    common::eventually(Duration::from_secs(30), async || {
        read.route("orders").await.is_ok_and(|r| r.held > 0)
    })
    .await;
    let route = read.route("orders").await.unwrap();
    assert_eq!(route.state, RouteState::Paused, "{output:?}");
    assert!(route.held > 0, "nothing held while paused");
    // The trust switch point: from here the receiver refuses the old key.
    receiver.trust(vec![new.cert.clone()]);
    let switched = Instant::now();
    stdin.write_all(b"yes\n").unwrap();
    drop(stdin);
    while let Some(line) = lines.recv().await {
        output.push(line);
    }
    let status = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let text = output.join("\n");
    assert!(
        status.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&status.stderr)
    );
    for step in [
        "1.  operator: pausing route orders",
        "2.  keystore administrator: adding the key to key ring tenant",
        "3.  receiver administrator: switch the receiver's trust from serial 1919 to serial 1920",
        "4.  operator: resumed route orders; serial 1920 signs",
        "done",
    ] {
        assert!(text.contains(step), "{step:?} missing from:\n{text}");
    }
    let so_far = receiver.received.lock().unwrap().len();
    received_at_least(&receiver, so_far + 40).await;
    stop.store(true, Ordering::Relaxed);
    let mut sent = Vec::new();
    for l in load {
        sent.extend(l.await.unwrap());
    }

    let by_id = signed_by_new(&sent, &receiver.received(), old, new);
    let (mut before, mut after) = (0, 0);
    for (id, (is_new, at)) in &by_id {
        if *at >= switched {
            assert!(
                is_new,
                "{id} reached the receiver after the switch under the old key"
            );
            after += 1;
        } else {
            assert!(
                !is_new,
                "{id} reached the receiver before the switch under the new key"
            );
            before += 1;
        }
    }
    assert!(
        before >= 40 && after >= 40,
        "{before} before, {after} after"
    );
    let by_new = by_id.values().filter(|v| v.0).count() as u64;
    assert_eq!(signatures(&daemon.client("read"), "1920").await, by_new);
    eprintln!(
        "exclusive under load: {} sent, 0 failed, 0 lost, {before} under the old key before the switch, {after} under the new key after it ({} held at the switch)",
        sent.len(),
        route.held
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_signing_key_renewed_by_overlap_through_a_serve_process() {
    let (old, new) = (common::signer(), common::next_signer());
    let receiver = verifying_receiver(&[old, new]).await;
    let dir = tempfile::tempdir().unwrap();
    common::write_ring(dir.path(), "tenant", old);
    let upstream = format!("http://{}/service", receiver.addr);
    let serve = tokio::task::spawn_blocking(move || {
        net::ServeProcess::start(
            dir,
            &net::signing_config(&upstream),
            &[("orders-receiver", common::receiver().cert_pem())],
        )
    })
    .await
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let load = net::clients_to(
        &format!("http://{}/orders", serve.addr),
        &stop,
        4,
        "p",
        Duration::from_millis(2),
        ENVELOPE,
    );
    received_at_least(&receiver, 40).await;

    let put_started = Instant::now();
    let added = serve
        .client("keys")
        .keyring_add("tenant", Bytes::from(new.key_and_cert_pem()))
        .await
        .unwrap();
    let put_returned = Instant::now();
    assert!(added.live && added.error.is_none(), "{added:?}");
    let so_far = receiver.received.lock().unwrap().len();
    received_at_least(&receiver, so_far + 40).await;
    stop.store(true, Ordering::Relaxed);
    let mut sent = Vec::new();
    for l in load {
        sent.extend(l.await.unwrap());
    }

    let by_id = signed_by_new(&sent, &receiver.received(), old, new);
    let (before, between, after) = split_at_the_add(&sent, &by_id, put_started, put_returned);
    let by_new = by_id.values().filter(|v| v.0).count() as u64;
    let read = serve.client("read");
    assert_eq!(signatures(&read, "1920").await, by_new);
    assert_eq!(signatures(&read, "1919").await, sent.len() as u64 - by_new);
    eprintln!(
        "overlap through a serve process: {} sent, 0 failed, 0 lost, {before} before the add (old key), {between} during it, {after} after (new key)",
        sent.len()
    );
}

/// A key the ring's signing routes could not sign with (here: no
/// SubjectKeyIdentifier under `signature_key_identifier = "ski"`) is refused
/// before it is written: the ring keeps its key, the daemon keeps signing with
/// it, and a reload still succeeds (had it become active, every snapshot
/// built from the ring would be refused, and so would the next start).
#[tokio::test]
async fn a_key_the_signing_routes_cannot_use_is_refused_before_anything_changes() {
    let receiver = Receiver::start(common::receiver().key_ring())
        .await
        .unwrap();
    let upstream = format!("http://{}/service", receiver.addr);
    let dir = tempfile::tempdir().unwrap();
    common::write_ring(dir.path(), "tenant", common::signer());
    let config = net::signing_config(&upstream).replace(
        "sign = true\n",
        "sign = true\nsignature_key_identifier = \"ski\"\n",
    );
    let daemon = net::Daemon::start_in(
        dir,
        &config,
        &[("orders-receiver", common::receiver().cert_pem())],
    )
    .await;
    let without_ski = common::TestReceiver::new(&common::CertSpec {
        common_name: "tenant signer without SKI".into(),
        serial: 1930,
        ski: false,
        ..common::CertSpec::default()
    });
    let refused = daemon
        .client("keys")
        .keyring_add("tenant", Bytes::from(without_ski.key_and_cert_pem()))
        .await
        .expect_err("a key the route cannot sign with");
    let text = refused.to_string();
    assert!(
        text.contains("route \"orders\"") && text.contains("SubjectKeyIdentifier"),
        "{text}"
    );
    let ring = daemon.client("read").keyring("tenant").await.unwrap();
    assert_eq!(ring.keys.len(), 1, "{ring:?}");
    assert_eq!(ring.keys[0].serial, "1919");
    daemon
        .client("operator")
        .reload()
        .await
        .expect("the ring still loads");
    let (status, _, answer) = net::post(
        &net::client(),
        &daemon.url("/orders"),
        "text/xml; charset=utf-8",
        ENVELOPE.as_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
}
