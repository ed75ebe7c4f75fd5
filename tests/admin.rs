//! The admin API and both renewal procedures, against the real daemon and a
//! receiver that decrypts (and records what it got, so the invariants are checked
//! from the receiver's side, not from wssgate's).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::net::{self, Daemon, Receiver};
use common::{CertSpec, TestReceiver};
use http_body_util::Full;
use wssgate::keystore::audit;

const BODY: &str = r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><m:order xmlns:m="urn:m"><m:n>1</m:n></m:order></soap:Body></soap:Envelope>"#;

fn cert(serial: u32) -> TestReceiver {
    TestReceiver::new(&CertSpec {
        serial,
        common_name: format!("receiver-{serial}"),
        ..CertSpec::default()
    })
}

fn ring(certs: &[&TestReceiver]) -> wssgate::wss::keys::KeyRing {
    let mut ring = wssgate::wss::keys::KeyRing::default();
    for c in certs {
        ring.push(wssgate::wss::keys::from_pem(&c.key_and_cert_pem(), "k").unwrap());
    }
    ring
}

/// Clients sending continuously until `stop`.
fn load(
    daemon: &Arc<Daemon>,
    stop: &Arc<AtomicBool>,
    clients: usize,
) -> Vec<tokio::task::JoinHandle<Vec<net::Sent>>> {
    net::clients(daemon, stop, clients, "c", Duration::from_millis(5), BODY)
}

/// Send `n` requests to /orders from their own tasks; each yields its status.
fn send_in_background(daemon: &Arc<Daemon>, n: usize) -> Vec<tokio::task::JoinHandle<u16>> {
    (0..n)
        .map(|_| {
            let d = daemon.clone();
            tokio::spawn(async move {
                net::post(
                    &net::client(),
                    &d.url("/orders"),
                    "text/xml",
                    BODY.as_bytes(),
                )
                .await
                .0
            })
        })
        .collect()
}

/// Every client's results: (request id, sent at, status).
async fn collect(
    handles: Vec<tokio::task::JoinHandle<Vec<net::Sent>>>,
) -> Vec<(String, Instant, u16)> {
    let mut all = Vec::new();
    for h in handles {
        all.extend(
            h.await
                .unwrap()
                .into_iter()
                .map(|s| (s.id, s.start, s.status)),
        );
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_role_method_and_host_are_enforced() {
    let rx = common::receiver();
    let receiver = Receiver::start(rx.key_ring()).await.unwrap();
    let daemon = Daemon::start(
        &net::config(&format!("http://{}/s", receiver.addr), "", ""),
        &[("orders-receiver", rx.cert_pem())],
    )
    .await;
    assert_eq!(daemon.admin_call("GET", "/healthz", None, b"").await.0, 200);
    assert_eq!(daemon.admin_call("GET", "/readyz", None, b"").await.0, 200);
    assert_eq!(
        daemon.admin_call("GET", "/v1/status", None, b"").await.0,
        401,
        "no token"
    );
    let resp = net::client()
        .request(
            hyper::Request::get(daemon.admin_url("/v1/status"))
                .header("authorization", "Bearer wrong-token-0123456789")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 401, "wrong token");
    assert_eq!(
        daemon
            .admin_call("GET", "/v1/status", Some("read"), b"")
            .await
            .0,
        200
    );
    let (status, body) = daemon
        .admin_call("POST", "/v1/routes/orders/pause", Some("read"), b"")
        .await;
    assert_eq!(status, 403, "read may not pause: {body}");
    assert_eq!(
        daemon
            .admin_call(
                "PUT",
                "/v1/keystore/orders-receiver",
                Some("operator"),
                b"x"
            )
            .await
            .0,
        403,
        "operator may not exchange"
    );
    assert_eq!(
        daemon
            .admin_call("POST", "/v1/reload", Some("keys"), b"")
            .await
            .0,
        403,
        "keys may not reload"
    );
    assert_eq!(
        daemon
            .admin_call("DELETE", "/v1/reload", Some("admin"), b"")
            .await
            .0,
        405
    );
    assert_eq!(
        daemon
            .admin_call("GET", "/v1/routes/orders/pause", Some("admin"), b"")
            .await
            .0,
        405
    );
    assert_eq!(
        daemon
            .admin_call("GET", "/v1/nothing", Some("admin"), b"")
            .await
            .0,
        404
    );
    // DNS rebinding: a browser sends the attacker's host name.
    let resp = net::client()
        .request(
            hyper::Request::get(daemon.admin_url("/v1/status"))
                .header("host", format!("evil.example:{}", daemon.admin.port()))
                .header("authorization", format!("Bearer {}", net::TOKENS[3].2))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    // Route view.
    let (status, route) = daemon
        .admin_call("GET", "/v1/routes/orders", Some("read"), b"")
        .await;
    assert_eq!(status, 200);
    assert_eq!(route["state"], "active");
    assert_eq!(route["alias"], "orders-receiver");
    assert_eq!(route["certificate"]["serial"], "4711");
    assert_eq!(route["certificate"]["sha256"], rx.recipient().info().sha256);
    let text = serde_json::to_string(
        &daemon
            .admin_call("GET", "/v1/status", Some("admin"), b"")
            .await
            .1,
    )
    .unwrap();
    for secret in net::TOKENS.iter().map(|t| t.2) {
        assert!(!text.contains(secret), "no token in answers");
    }
    assert!(!text.contains("PRIVATE KEY"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exclusive_renewal_under_load() {
    let old = cert(1);
    let new = cert(2);
    let receiver = Arc::new(Receiver::start(ring(&[&old])).await.unwrap());
    let daemon = Arc::new(
        Daemon::start(
            &net::config(
                &format!("http://{}/s", receiver.addr),
                "hold_timeout = \"20s\"",
                "",
            ),
            &[("orders-receiver", old.cert_pem())],
        )
        .await,
    );
    let stop = Arc::new(AtomicBool::new(false));
    let clients = load(&daemon, &stop, 4);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // 1. The operator pauses the route and waits until nothing is in flight.
    let (status, view) = daemon.operate("pause?wait=10").await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["state"], "paused");
    assert_eq!(view["drained"], true);
    let delivered_at_pause = receiver.received().len();
    // 2. The keystore administrator exchanges the certificate.
    let (status, exchanged) = daemon.exchange(&new.cert_pem()).await;
    assert_eq!(status, 200, "{exchanged}");
    assert_eq!(exchanged["current"]["serial"], "2");
    assert_eq!(exchanged["previous"]["serial"], "1");
    // 3. The receiver swaps its key pair (it can hold only one).
    tokio::time::sleep(Duration::from_millis(300)).await;
    *receiver.keys.lock().unwrap() = ring(&[&new]);
    assert_eq!(
        receiver.received().len(),
        delivered_at_pause,
        "nothing reached the receiver during the pause"
    );
    let (_, view) = daemon
        .admin_call("GET", "/v1/routes/orders", Some("read"), b"")
        .await;
    assert!(
        view["held"].as_u64().unwrap() >= 1,
        "requests are held: {view}"
    );
    // 4. The operator resumes: held requests go out under the new certificate.
    let (status, view) = daemon.operate("resume").await;
    assert_eq!(status, 200, "{view}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let sent = collect(clients).await;

    let received = receiver.received();
    let new_sha = new.recipient().info().sha256.clone();
    let refused: Vec<_> = sent.iter().filter(|s| s.2 != 200).collect();
    assert!(
        refused.iter().all(|s| s.2 == 503),
        "only hold limits may refuse: {refused:?}"
    );
    assert_eq!(
        sent.len(),
        received.len() + refused.len(),
        "accepted = delivered + refused"
    );
    for (id, _, status) in &sent {
        let got: Vec<_> = received.iter().filter(|r| &r.request_id == id).collect();
        if *status == 200 {
            assert_eq!(got.len(), 1, "{id} delivered exactly once");
            assert!(got[0].decrypted.is_ok(), "{id}: {:?}", got[0].decrypted);
        }
    }
    for r in &received[delivered_at_pause..] {
        assert_eq!(
            r.certificate.as_deref(),
            Some(new_sha.as_str()),
            "held and later requests use the new certificate"
        );
    }
    assert!(
        received.len() > delivered_at_pause,
        "held requests were released"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlap_renewal_under_load_with_repeated_exchanges() {
    let certs: Vec<TestReceiver> = (10..14).map(cert).collect();
    let receiver = Arc::new(
        Receiver::start(ring(&certs.iter().collect::<Vec<_>>()))
            .await
            .unwrap(),
    );
    let daemon = Arc::new(
        Daemon::start(
            &net::config(&format!("http://{}/s", receiver.addr), "", ""),
            &[("orders-receiver", certs[0].cert_pem())],
        )
        .await,
    );
    let stop = Arc::new(AtomicBool::new(false));
    let clients = load(&daemon, &stop, 4);
    let mut exchanges = Vec::new();
    for c in &certs[1..] {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (status, body) = daemon
            .admin_call(
                "PUT",
                "/v1/keystore/orders-receiver",
                Some("admin"),
                &c.cert_pem(),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        exchanges.push((Instant::now(), c.recipient().info().sha256.clone()));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    let sent = collect(clients).await;
    assert!(sent.iter().all(|s| s.2 == 200), "zero failed requests");
    let received = receiver.received();
    for (id, at, _) in &sent {
        let r = received
            .iter()
            .find(|r| &r.request_id == id)
            .expect("delivered");
        assert!(r.decrypted.is_ok());
        // Sent after exchange k returned: certificate k or a later one, never older.
        if let Some(k) = exchanges.iter().rposition(|(done, _)| done < at) {
            let used = exchanges
                .iter()
                .position(|(_, sha)| Some(sha) == r.certificate.as_ref());
            assert!(
                used.is_some_and(|u| u >= k),
                "{id} sent after exchange {k} returned used an older certificate"
            );
        }
    }
    let history = wssgate::keystore::Keystore::new(daemon.shared.load().config.keystore.clone())
        .history("orders-receiver")
        .unwrap();
    assert_eq!(history.len(), 4, "every certificate is archived or active");
    let log = audit::read(&daemon.shared.load().config.keystore.state_dir).unwrap();
    assert_eq!(
        log.iter()
            .filter(|r| r.action == "exchange" && r.actor == "root")
            .count(),
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_during_a_pause_keeps_the_route_paused_and_reject_mode_answers_503() {
    let rx = common::receiver();
    let receiver = Receiver::start(rx.key_ring()).await.unwrap();
    let config = net::config(
        &format!("http://{}/s", receiver.addr),
        "on_pause = \"reject\"\nhold_timeout = \"7s\"",
        "",
    );
    let daemon = Daemon::start(&config, &[("orders-receiver", rx.cert_pem())]).await;
    let (status, _) = daemon.operate("pause").await;
    assert_eq!(status, 200);
    let (status, headers, answer) = net::post(
        &net::client(),
        &daemon.url("/orders"),
        "text/xml",
        BODY.as_bytes(),
    )
    .await;
    assert_eq!(status, 503, "{answer}");
    assert_eq!(headers.get("retry-after").unwrap(), "7");
    assert!(answer.contains("route-paused"));
    // Restart: stop the daemon and start it again on the same state directory.
    daemon.task.abort();
    let _ = daemon.task.await;
    let Daemon { dir, .. } = daemon;
    let restarted = Daemon::start_in(dir, &config, &[]).await;
    let (_, view) = restarted
        .admin_call("GET", "/v1/routes/orders", Some("read"), b"")
        .await;
    assert_eq!(view["state"], "paused", "{view}");
    let (status, _, _) = net::post(
        &net::client(),
        &restarted.url("/orders"),
        "text/xml",
        BODY.as_bytes(),
    )
    .await;
    assert_eq!(status, 503);
    let (status, _) = restarted.operate("resume").await;
    assert_eq!(status, 200);
    let (status, _) = restarted.operate("resume").await;
    assert_eq!(status, 200, "resume is idempotent");
    let (status, _, _) = net::post(
        &net::client(),
        &restarted.url("/orders"),
        "text/xml",
        BODY.as_bytes(),
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        receiver.received().len() == 1,
        "nothing was sent during the pause, one after"
    );
    let log = audit::read(&restarted.shared.load().config.keystore.state_dir).unwrap();
    let actions: Vec<(&str, &str)> = log
        .iter()
        .map(|r| (r.actor.as_str(), r.action.as_str()))
        .collect();
    assert_eq!(
        actions,
        [("ops", "pause"), ("ops", "resume"), ("ops", "resume")]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hold_limits_and_an_abandoned_client() {
    let rx = common::receiver();
    let receiver = Receiver::start(rx.key_ring()).await.unwrap();
    let config = net::config(
        &format!("http://{}/s", receiver.addr),
        "hold_max = 2\nhold_timeout = \"1s\"",
        "",
    );
    let daemon = Arc::new(Daemon::start(&config, &[("orders-receiver", rx.cert_pem())]).await);
    daemon.operate("pause").await;
    let held = send_in_background(&daemon, 2);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, _, answer) = net::post(
        &net::client(),
        &daemon.url("/orders"),
        "text/xml",
        BODY.as_bytes(),
    )
    .await;
    assert_eq!(status, 503, "hold_max reached: {answer}");
    for h in held {
        assert_eq!(h.await.unwrap(), 503, "hold_timeout ran out");
    }
    // A client that goes away while held is never sent.
    let gone = send_in_background(&daemon, 1).remove(0);
    tokio::time::sleep(Duration::from_millis(200)).await;
    gone.abort();
    tokio::time::sleep(Duration::from_millis(200)).await;
    daemon.operate("resume").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        receiver.received().is_empty(),
        "nothing refused or abandoned was sent"
    );
    assert_eq!(
        daemon
            .gates
            .get("orders")
            .abandoned_total
            .load(Ordering::Relaxed),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_through_the_api_answers_truthfully() {
    let rx = common::receiver();
    let receiver = Receiver::start(rx.key_ring()).await.unwrap();
    let daemon = Daemon::start(
        &net::config(&format!("http://{}/s", receiver.addr), "", ""),
        &[("orders-receiver", rx.cert_pem())],
    )
    .await;
    let (status, body) = daemon
        .admin_call("POST", "/v1/reload", Some("operator"), b"")
        .await;
    assert_eq!(
        (status, body["generation"].as_u64()),
        (200, Some(2)),
        "{body}"
    );
    let path = daemon.dir.path().join("wssgate.toml");
    let good = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, good.replace("[[route]]", "[[route]]\nunknown = 1")).unwrap();
    let (status, body) = daemon
        .admin_call("POST", "/v1/reload", Some("operator"), b"")
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("unknown"),
        "{body}"
    );
    assert_eq!(body["generation"], 2);
    // Exchange refusals: a certificate that is not one, an unknown alias.
    let (status, body) = daemon.exchange(b"not a certificate").await;
    assert_eq!(status, 422, "{body}");
    let (status, _) = daemon
        .admin_call("PUT", "/v1/keystore/nobody", Some("keys"), &rx.cert_pem())
        .await;
    assert_eq!(status, 404);
    let (status, body) = daemon
        .admin_call("GET", "/v1/keystore/orders-receiver", Some("read"), b"")
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["live"]["serial"], "4711");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staged_certificates_activate_on_resume_or_at_a_time_and_can_be_withdrawn() {
    let (old, new, later) = (cert(21), cert(22), cert(23));
    let receiver = Arc::new(Receiver::start(ring(&[&old])).await.unwrap());
    let daemon = Arc::new(
        Daemon::start(
            &net::config(&format!("http://{}/s", receiver.addr), "", ""),
            &[("orders-receiver", old.cert_pem())],
        )
        .await,
    );

    // Exclusive renewal with staged activation: stage, pause, swap, resume.
    let (status, body) = daemon
        .admin_call(
            "PUT",
            "/v1/keystore/orders-receiver?activate=on-resume",
            Some("keys"),
            &new.cert_pem(),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["pending"]["activate"], "on-resume");
    let (_, shown) = daemon
        .admin_call("GET", "/v1/keystore/orders-receiver", Some("read"), b"")
        .await;
    assert_eq!(shown["pending"]["certificate"]["serial"], "22", "{shown}");
    assert_eq!(shown["live"]["serial"], "21", "staged, not live");
    let (status, _, _) = net::post(
        &net::client(),
        &daemon.url("/orders"),
        "text/xml",
        BODY.as_bytes(),
    )
    .await;
    assert_eq!(status, 200, "still the old certificate while staged");
    daemon.operate("pause?wait=5").await;
    let held = send_in_background(&daemon, 3);
    tokio::time::sleep(Duration::from_millis(200)).await;
    *receiver.keys.lock().unwrap() = ring(&[&new]); // the receiver swaps its key
    let (status, body) = daemon.operate("resume").await;
    assert_eq!(status, 200, "{body}");
    for h in held {
        assert_eq!(h.await.unwrap(), 200);
    }
    let received = receiver.received();
    assert_eq!(received.len(), 4);
    let new_sha = new.recipient().info().sha256.clone();
    assert!(
        received[1..]
            .iter()
            .all(|r| r.certificate.as_deref() == Some(new_sha.as_str())),
        "held requests went out under the staged certificate"
    );
    let (_, shown) = daemon
        .admin_call("GET", "/v1/keystore/orders-receiver", Some("read"), b"")
        .await;
    assert!(shown["pending"].is_null());
    assert_eq!(shown["live"]["serial"], "22");

    // Withdraw a staged certificate.
    let (status, _) = daemon
        .admin_call(
            "PUT",
            "/v1/keystore/orders-receiver?activate=on-resume",
            Some("keys"),
            &later.cert_pem(),
        )
        .await;
    assert_eq!(status, 202);
    let (status, body) = daemon
        .admin_call(
            "POST",
            "/v1/keystore/orders-receiver/withdraw",
            Some("keys"),
            b"",
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["withdrawn"]["certificate"]["serial"], "23");

    // Activation at an agreed time.
    let at =
        humantime::format_rfc3339_seconds(std::time::SystemTime::now() + Duration::from_secs(2))
            .to_string();
    let (status, body) = daemon
        .admin_call(
            "PUT",
            &format!("/v1/keystore/orders-receiver?activate_at={at}"),
            Some("keys"),
            &later.cert_pem(),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    *receiver.keys.lock().unwrap() = ring(&[&new, &later]);
    let (status, _, _) = net::post(
        &net::client(),
        &daemon.url("/orders"),
        "text/xml",
        BODY.as_bytes(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        receiver.received().last().unwrap().certificate.as_deref(),
        Some(new_sha.as_str()),
        "before the agreed time"
    );
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let (status, _, _) = net::post(
        &net::client(),
        &daemon.url("/orders"),
        "text/xml",
        BODY.as_bytes(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        receiver.received().last().unwrap().certificate.as_deref(),
        Some(later.recipient().info().sha256.as_str()),
        "after it"
    );
    let log = audit::read(&daemon.shared.load().config.keystore.state_dir).unwrap();
    let actions: Vec<&str> = log.iter().map(|r| r.action.as_str()).collect();
    for a in ["stage", "withdraw", "exchange", "pause", "resume"] {
        assert!(actions.contains(&a), "{a} audited: {actions:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_prometheus_text_with_every_family() {
    let rx = common::receiver();
    let receiver = Receiver::start(rx.key_ring()).await.unwrap();
    let config = format!(
        "{}\n[[route]]\nname = \"dead\"\npath = \"/dead\"\nupstream = \"http://127.0.0.1:9/x\"\nalias = \"orders-receiver\"\n",
        net::config(&format!("http://{}/s", receiver.addr), "", "")
    );
    let daemon = Daemon::start(&config, &[("orders-receiver", rx.cert_pem())]).await;
    for _ in 0..3 {
        assert_eq!(
            net::post(
                &net::client(),
                &daemon.url("/orders"),
                "text/xml",
                BODY.as_bytes()
            )
            .await
            .0,
            200
        );
    }
    assert_eq!(
        net::post(&net::client(), &daemon.url("/orders"), "text/xml", b"<bad")
            .await
            .0,
        400
    );
    assert_eq!(
        net::post(
            &net::client(),
            &daemon.url("/dead"),
            "text/xml",
            BODY.as_bytes()
        )
        .await
        .0,
        502
    );
    daemon
        .admin_call("POST", "/v1/reload", Some("operator"), b"")
        .await;
    daemon
        .admin_call("POST", "/v1/routes/dead/pause", Some("operator"), b"")
        .await;
    assert_eq!(
        daemon.admin_call("GET", "/metrics", None, b"").await.0,
        401,
        "metrics need a read token"
    );

    let resp = net::client()
        .request(
            hyper::Request::get(daemon.admin_url("/metrics"))
                .header("authorization", format!("Bearer {}", net::TOKENS[0].2))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = String::from_utf8(
        http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("Prometheus text");
    let value = |name: &str, labels: &[(&str, &str)]| -> f64 {
        scrape
            .samples
            .iter()
            .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => 1.0,
            })
            .sum()
    };
    let present = |name: &str| scrape.samples.iter().any(|s| s.metric.starts_with(name));
    assert_eq!(
        value(
            "wssgate_requests_total",
            &[("route", "orders"), ("outcome", "ok")]
        ),
        3.0,
        "{text}"
    );
    assert_eq!(
        value(
            "wssgate_requests_total",
            &[("route", "orders"), ("outcome", "malformed-envelope")]
        ),
        1.0
    );
    assert_eq!(
        value(
            "wssgate_upstream_errors_total",
            &[("route", "dead"), ("kind", "unreachable")]
        ),
        1.0
    );
    assert_eq!(
        value(
            "wssgate_reloads_total",
            &[("trigger", "api"), ("result", "ok")]
        ),
        1.0
    );
    assert_eq!(value("wssgate_config_generation", &[]), 2.0);
    assert_eq!(value("wssgate_route_paused", &[("route", "dead")]), 1.0);
    assert_eq!(value("wssgate_route_paused", &[("route", "orders")]), 0.0);
    assert!(
        value(
            "wssgate_request_bytes_total",
            &[("route", "orders"), ("direction", "out")]
        ) > 0.0
    );
    let not_after = value(
        "wssgate_certificate_not_after_seconds",
        &[("alias", "orders-receiver"), ("serial", "4711")],
    );
    assert!(not_after > 1.7e9, "{not_after}");
    for family in [
        "wssgate_request_duration_seconds",
        "wssgate_encryption_duration_seconds",
        "wssgate_route_in_flight",
        "wssgate_route_held",
    ] {
        assert!(present(family), "{family} missing:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_routes_file_pauses_and_resumes_like_the_api() {
    let rx = common::receiver();
    let receiver = Receiver::start(rx.key_ring()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("paused-routes");
    let daemon = Arc::new(
        Daemon::start_with(
            dir,
            &net::config(&format!("http://{}/s", receiver.addr), "", ""),
            &format!("paused_routes_file = \"{}\"", list.display()),
            &[("orders-receiver", rx.cert_pem())],
        )
        .await,
    );
    let state = |d: Arc<Daemon>| async move {
        d.admin_call("GET", "/v1/routes/orders", Some("read"), b"")
            .await
            .1["state"]
            .clone()
    };
    assert_eq!(state(daemon.clone()).await, "active");
    // One change to the (ConfigMap-mounted) file pauses the route.
    std::fs::write(&list, "# routes paused for the renewal window\norders\n").unwrap();
    common::eventually(Duration::from_secs(5), async || {
        state(daemon.clone()).await == "paused"
    })
    .await;
    assert_eq!(state(daemon.clone()).await, "paused");
    let held = send_in_background(&daemon, 1).remove(0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(receiver.received().is_empty(), "held while listed");
    std::fs::write(&list, "").unwrap();
    assert_eq!(
        held.await.unwrap(),
        200,
        "released when the file no longer lists the route"
    );
    assert_eq!(state(daemon.clone()).await, "active");
    let log = audit::read(&daemon.shared.load().config.keystore.state_dir).unwrap();
    assert!(
        log.iter()
            .any(|r| r.action == "pause" && r.actor.starts_with("file:")),
        "audited with the file as actor"
    );
    // A route paused through the API is not the file's to resume.
    let (status, _) = daemon.operate("pause").await;
    assert_eq!(status, 200);
    std::fs::write(&list, "orders\n").unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    std::fs::write(&list, "").unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        state(daemon.clone()).await,
        "paused",
        "still paused by the operator"
    );
}
