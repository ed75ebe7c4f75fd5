//! The daemon end to end, on port 0: client → wssgate → a receiver that decrypts.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::net::{self, Daemon, Receiver};
use common::{CertSpec, TestReceiver};
use serde_json::json;
use wssgate::keystore::Keystore;
use wssgate::wss::CertificatePolicy;

const S11: &str = r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" xmlns:ord="urn:orders"><soap:Header><ord:trace>t-1</ord:trace></soap:Header><soap:Body><ord:submit><ord:id>42</ord:id><ord:note>caf&#233; &amp; cr&#232;me</ord:note></ord:submit></soap:Body></soap:Envelope>"#;
const S12: &str = r#"<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope"><env:Body><ord:submit xmlns:ord="urn:orders"><ord:id>42</ord:id></ord:submit></env:Body></env:Envelope>"#;

fn upstream(r: &Receiver) -> String {
    format!("http://{}/service", r.addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_to_end_for_both_soap_versions_and_every_key_identifier() {
    let rx = common::receiver();
    let receiver = Receiver::start(rx.key_ring()).await.unwrap();
    let client = net::client();
    for key_id in ["issuer-serial", "bst", "ski", "thumbprint"] {
        let daemon = Daemon::start(
            &net::config(
                &upstream(&receiver),
                &format!("key_identifier = \"{key_id}\""),
                "",
            ),
            &[("orders-receiver", rx.cert_pem())],
        )
        .await;
        for (body, ct) in [
            (S11, "text/xml; charset=utf-8"),
            (S12, "application/soap+xml; charset=utf-8"),
        ] {
            let (status, headers, answer) =
                net::post(&client, &daemon.url("/orders/v1?x=1"), ct, body.as_bytes()).await;
            assert_eq!(status, 200, "{key_id}: {answer}");
            assert_eq!(
                answer,
                net::RESPONSE,
                "the receiver's answer comes back unchanged"
            );
            assert_eq!(headers.get("x-receiver").unwrap(), "yes");
            let got = receiver.received().pop().unwrap();
            let plain = got
                .decrypted
                .clone()
                .unwrap_or_else(|e| panic!("{key_id}: {e}"));
            assert!(plain.contains("<ord:id>42</ord:id>"), "{plain}");
            assert!(
                !String::from_utf8_lossy(&got.raw).contains("<ord:id>42"),
                "encrypted on the wire"
            );
            assert_eq!(
                got.path, "/service/v1?x=1",
                "rest of the path and the query are appended"
            );
            assert_eq!(got.host, receiver.addr.to_string());
            assert_eq!(got.forwarded_for.as_deref(), Some("127.0.0.1"));
            assert_eq!(got.request_id.len(), 32, "a request id is created");
            assert!(!got.chunked, "small bodies go with a Content-Length");
            if body == S12 {
                assert_eq!(
                    got.content_type,
                    "application/soap+xml; charset=utf-8; action=\"urn:submit\""
                );
            } else {
                assert_eq!(got.content_type, "text/xml; charset=utf-8");
                assert_eq!(got.soap_action.as_deref(), Some("\"urn:submit\""));
            }
            assert_eq!(
                got.certificate.as_deref(),
                Some(rx.recipient().info().sha256.as_str())
            );
        }
        daemon.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libxmlsec1_decrypts_what_the_daemon_sent() {
    let rx = common::receiver();
    let receiver = Receiver::start(rx.key_ring()).await.unwrap();
    let daemon = Daemon::start(
        &net::config(&upstream(&receiver), "profile = \"modern\"", ""),
        &[("orders-receiver", rx.cert_pem())],
    )
    .await;
    let client = net::client();
    let (status, _, _) =
        net::post(&client, &daemon.url("/orders"), "text/xml", S11.as_bytes()).await;
    assert_eq!(status, 200);
    let dir = tempfile::tempdir().unwrap();
    let (key, _, _) = rx.write_to(dir.path(), "rx");
    let (encrypted, original) = (dir.path().join("wire.xml"), dir.path().join("original.xml"));
    std::fs::write(&encrypted, &receiver.received()[0].raw).unwrap();
    std::fs::write(&original, S11).unwrap();
    let manifest = dir.path().join("m.json");
    std::fs::write(
        &manifest,
        serde_json::to_vec(
            &json!([{"name": "daemon", "encrypted": encrypted, "original": original, "key": key}]),
        )
        .unwrap(),
    )
    .unwrap();
    let results = common::run_interop_script(
        "xmlsec_interop.py",
        &["decrypt", manifest.to_str().unwrap()],
    );
    assert_eq!(results[0]["ok"], json!(true), "{results}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_stream_chunked_and_decrypt() {
    let rx = common::receiver();
    let receiver = Receiver::start(rx.key_ring()).await.unwrap();
    let daemon = Daemon::start(
        // A generous upstream timeout: debug builds on a loaded machine are slow.
        &net::config(
            &upstream(&receiver),
            "",
            "stream_threshold = \"4KiB\"\nmax_body = \"4MiB\"",
        )
        .replace("upstream_timeout = \"5s\"", "upstream_timeout = \"60s\""),
        &[("orders-receiver", rx.cert_pem())],
    )
    .await;
    let lines: String = (0..20_000)
        .map(|i| format!("<ord:line n=\"{i}\">x</ord:line>"))
        .collect();
    let body = S11.replace("<ord:id>42</ord:id>", &lines);
    assert!(body.len() > 400_000);
    let (status, _, answer) = net::post(
        &net::client(),
        &daemon.url("/orders"),
        "text/xml",
        body.as_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let got = receiver.received().pop().unwrap();
    assert!(got.chunked, "streamed to the upstream");
    let plain = got.decrypted.unwrap();
    assert!(plain.contains("<ord:line n=\"19999\">x</ord:line>"));

    // Over max_body, announced by Content-Length: 413 at once.
    let before = receiver.received().len();
    let huge = S11.replace("<ord:id>42</ord:id>", &"<a/>".repeat(1_200_000));
    let head = format!(
        "POST /orders HTTP/1.1\r\nhost: x\r\ncontent-type: text/xml\r\ncontent-length: {}\r\n\r\n",
        huge.len()
    );
    let answer = common::raw_exchange(
        daemon.addr,
        &[head.as_bytes(), huge.as_bytes()].concat(),
        Duration::from_secs(5),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("payload-too-large"));
    // Over max_body while streaming a chunked body: the upstream request is aborted.
    let mut chunked = b"POST /orders HTTP/1.1\r\nhost: x\r\ncontent-type: text/xml\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
    for piece in huge.as_bytes().chunks(32 * 1024) {
        chunked.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        chunked.extend_from_slice(piece);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let answer = common::raw_exchange(daemon.addr, &chunked, Duration::from_secs(30)).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        receiver.received()[before..]
            .iter()
            .all(|r| r.decrypted.is_err()),
        "no complete message reached the receiver"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_of_the_design_table() {
    let rx = common::receiver();
    let receiver = Receiver::start(rx.key_ring()).await.unwrap();
    let daemon = Daemon::start(
        &net::config(&upstream(&receiver), "", "max_body = \"64KiB\""),
        &[("orders-receiver", rx.cert_pem())],
    )
    .await;
    let client = net::client();
    let url = daemon.url("/orders");
    let cases: Vec<(&str, &str, String, u16, &str, &str)> = vec![
        ("/elsewhere", "text/xml", S11.to_string(), 404, "no-route", "soap:Client"),
        ("/orders", "application/json", S11.to_string(), 415, "unsupported-media-type", "soap:Client"),
        ("/orders", "text/xml", "not xml".to_string(), 400, "malformed-envelope", "soap:Client"),
        ("/orders", "text/xml", "<!DOCTYPE x [<!ENTITY a 'b'>]><x/>".to_string(), 400, "malformed-envelope", "soap:Client"),
        ("/orders", "text/xml", S11.replace("<ord:submit><ord:id>42</ord:id><ord:note>caf&#233; &amp; cr&#232;me</ord:note></ord:submit>", ""), 400, "empty-body", "soap:Client"),
        ("/orders", "text/xml", S11.replace("<ord:submit>", "<xenc:EncryptedData xmlns:xenc=\"http://www.w3.org/2001/04/xmlenc#\"/><ord:submit>"), 400, "already-encrypted", "soap:Client"),
        ("/orders", "text/xml", S11.replace("42", &"4".repeat(70_000)), 413, "payload-too-large", "soap:Client"),
        ("/orders", "application/soap+xml", "<bad".to_string(), 400, "malformed-envelope", "env:Sender"),
    ];
    for (path, ct, body, status, code, fault_code) in cases {
        let (got, headers, answer) =
            net::post(&client, &daemon.url(path), ct, body.as_bytes()).await;
        assert_eq!(got, status, "{code}: {answer}");
        assert!(
            answer.contains(&format!("<wssgate:code>{code}</wssgate:code>")),
            "{answer}"
        );
        assert!(answer.contains(fault_code), "{fault_code}: {answer}");
        assert!(headers.get("content-type").is_some());
    }
    assert!(
        receiver.received().is_empty(),
        "no refused request reached the receiver"
    );

    // Method: only POST (and GET ?wsdl).
    let req = hyper::Request::delete(&url)
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.status(), 405);
    // GET ?wsdl passes through unencrypted.
    let resp = client
        .get(daemon.url("/orders?wsdl").parse().unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(receiver.received().last().unwrap().path, "/service?wsdl");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_faults_down_tls_and_slow() {
    let rx = common::receiver();
    let client = net::client();
    // Nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}/x", closed.local_addr().unwrap());
    drop(closed);
    let daemon = Daemon::start(
        &net::config(&dead, "", ""),
        &[("orders-receiver", rx.cert_pem())],
    )
    .await;
    let (status, _, answer) =
        net::post(&client, &daemon.url("/orders"), "text/xml", S11.as_bytes()).await;
    assert_eq!(status, 502, "{answer}");
    assert!(answer.contains("upstream-unreachable") && answer.contains("soap:Server"));

    // TLS: the receiver speaks plain HTTP where TLS is expected, and then a TLS
    // server whose certificate is not trusted.
    let receiver = Receiver::start(rx.key_ring()).await.unwrap();
    let tls_url = format!("https://{}/x", receiver.addr);
    let daemon = Daemon::start(
        &net::config(&tls_url, "", ""),
        &[("orders-receiver", rx.cert_pem())],
    )
    .await;
    let (status, _, answer) =
        net::post(&client, &daemon.url("/orders"), "text/xml", S11.as_bytes()).await;
    assert_eq!(status, 502, "{answer}");
    assert!(receiver.received().is_empty());

    // Slow: no answer within upstream_timeout.
    *receiver.delay.lock().unwrap() = Duration::from_secs(3);
    let slow = net::config(&upstream(&receiver), "", "")
        .replace("upstream_timeout = \"5s\"", "upstream_timeout = \"500ms\"");
    let daemon = Daemon::start(&slow, &[("orders-receiver", rx.cert_pem())]).await;
    let (status, _, answer) =
        net::post(&client, &daemon.url("/orders"), "text/xml", S11.as_bytes()).await;
    assert_eq!(status, 504, "{answer}");
    assert!(answer.contains("upstream-timeout"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_upstream_with_a_wrong_certificate_is_refused() {
    let rx = common::receiver();
    let server_identity = TestReceiver::new(&CertSpec {
        common_name: "localhost".into(),
        ..CertSpec::default()
    });
    let addr = common::tls::start_tls_server(&server_identity).await;
    let client = net::client();
    // Not trusted: the system roots do not know the self-signed certificate.
    let daemon = Daemon::start(
        &net::config(&format!("https://localhost:{}/x", addr.port()), "", ""),
        &[("orders-receiver", rx.cert_pem())],
    )
    .await;
    let (status, _, answer) =
        net::post(&client, &daemon.url("/orders"), "text/xml", S11.as_bytes()).await;
    assert_eq!(status, 502, "{answer}");
    // Trusted through the route's CA file: it goes through.
    let ca = daemon.dir.path().join("ca.pem");
    std::fs::write(&ca, server_identity.cert_pem()).unwrap();
    let daemon2 = Daemon::start(
        &net::config(
            &format!("https://localhost:{}/x", addr.port()),
            &format!("ca_file = \"{}\"", ca.display()),
            "",
        ),
        &[("orders-receiver", rx.cert_pem())],
    )
    .await;
    let (status, _, answer) =
        net::post(&client, &daemon2.url("/orders"), "text/xml", S11.as_bytes()).await;
    assert_eq!(status, 200, "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_swap_under_load_with_reload() {
    let old = common::receiver();
    let new = TestReceiver::new(&CertSpec {
        serial: 2027,
        common_name: "receiver-2027".into(),
        ..CertSpec::default()
    });
    let mut keys = old.key_ring();
    keys.push(wssgate::wss::keys::from_pem(&new.key_and_cert_pem(), "new").unwrap());
    let receiver = Arc::new(Receiver::start(keys).await.unwrap());
    let daemon = Arc::new(
        Daemon::start(
            &net::config(&upstream(&receiver), "", ""),
            &[("orders-receiver", old.cert_pem())],
        )
        .await,
    );
    let client = net::client();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..4 {
        let (client, daemon, stop) = (client.clone(), daemon.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let mut results = Vec::new();
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let id = format!("w{w}-{i}");
                let req = hyper::Request::post(daemon.url("/orders"))
                    .header("content-type", "text/xml")
                    .header("x-request-id", &id)
                    .body(http_body_util::Full::new(bytes::Bytes::from_static(
                        S11.as_bytes(),
                    )))
                    .unwrap();
                let sent_at = std::time::Instant::now();
                let status = client
                    .request(req)
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0);
                results.push((id, sent_at, status));
                i += 1;
            }
            results
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The keystore administrator exchanges the certificate on disk; SIGHUP.
    let store = Keystore::new(daemon.shared.load().config.keystore.clone());
    store
        .exchange(
            "orders-receiver",
            &new.cert_pem(),
            "test",
            &CertificatePolicy::default(),
            std::time::SystemTime::now(),
        )
        .unwrap();
    let generation = daemon.reload().await.unwrap();
    let reloaded_at = std::time::Instant::now();
    assert_eq!(generation, 2);
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap());
    }
    assert!(all.len() > 20, "load ran: {}", all.len());
    assert!(all.iter().all(|(_, _, s)| *s == 200), "no request failed");
    let received = receiver.received();
    let new_sha = new.recipient().info().sha256.clone();
    let old_sha = old.recipient().info().sha256.clone();
    for (id, sent_at, _) in &all {
        let r = received
            .iter()
            .find(|r| &r.request_id == id)
            .expect("every request was delivered");
        assert!(r.decrypted.is_ok(), "decrypted");
        let cert = r.certificate.as_deref().unwrap();
        if *sent_at > reloaded_at {
            assert_eq!(cert, new_sha, "{id}: sent after the reload completed");
        } else {
            assert!(cert == old_sha || cert == new_sha);
        }
    }
    assert!(
        received
            .iter()
            .any(|r| r.certificate.as_deref() == Some(old_sha.as_str()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_reloads_leave_the_old_snapshot_serving() {
    let rx = common::receiver();
    let receiver = Receiver::start(rx.key_ring()).await.unwrap();
    let config = net::config(&upstream(&receiver), "", "");
    let daemon = Daemon::start(&config, &[("orders-receiver", rx.cert_pem())]).await;
    let client = net::client();
    let path = daemon.dir.path().join("wssgate.toml");
    let cert = daemon.dir.path().join("keystore/orders-receiver.pem");
    let good_config = std::fs::read_to_string(&path).unwrap();
    let expired = TestReceiver::new(&CertSpec {
        not_before_days: -20,
        not_after_days: -1,
        ..CertSpec::default()
    });
    type Breakage<'a> = (&'a str, Box<dyn Fn() + 'a>);
    let breakages: Vec<Breakage> = vec![
        (
            "bad TOML",
            Box::new(|| std::fs::write(&path, "[proxy\n").unwrap()),
        ),
        (
            "unknown key",
            Box::new(|| std::fs::write(&path, format!("{good_config}\nbogus = 1\n")).unwrap()),
        ),
        (
            "missing certificate",
            Box::new(|| std::fs::remove_file(&cert).unwrap()),
        ),
        (
            "expired certificate",
            Box::new(|| std::fs::write(&cert, expired.cert_pem()).unwrap()),
        ),
    ];
    for (name, breakage) in breakages {
        breakage();
        let err = daemon.reload().await.unwrap_err();
        assert!(!err.is_empty(), "{name}");
        assert_eq!(
            daemon.shared.load().generation,
            1,
            "{name}: the old snapshot stays"
        );
        let (status, _, answer) =
            net::post(&client, &daemon.url("/orders"), "text/xml", S11.as_bytes()).await;
        assert_eq!(status, 200, "{name}: {answer}");
        // Put things back.
        std::fs::write(&path, &good_config).unwrap();
        std::fs::write(&cert, rx.cert_pem()).unwrap();
    }
    assert_eq!(daemon.shared.reload_counts().1, 4);
    assert_eq!(daemon.reload().await, Ok(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_lets_in_flight_requests_finish() {
    let rx = common::receiver();
    let receiver = Receiver::start(rx.key_ring()).await.unwrap();
    *receiver.delay.lock().unwrap() = Duration::from_millis(1500);
    let daemon = Daemon::start(
        &net::config(&upstream(&receiver), "", ""),
        &[("orders-receiver", rx.cert_pem())],
    )
    .await;
    let client = net::client();
    let mut requests = Vec::new();
    for _ in 0..8 {
        let (client, url) = (client.clone(), daemon.url("/orders"));
        requests.push(tokio::spawn(async move {
            net::post(&client, &url, "text/xml", S11.as_bytes()).await.0
        }));
    }
    // Shut down once all eight are at the receiver, i.e. truly in flight.
    common::eventually(Duration::from_secs(10), async || {
        receiver.received().len() >= 8
    })
    .await;
    assert_eq!(receiver.received().len(), 8);
    daemon
        .intents
        .send(wssgate::signal::Intent::Shutdown)
        .await
        .unwrap();
    for r in requests {
        assert_eq!(r.await.unwrap(), 200, "in-flight requests complete");
    }
    tokio::time::timeout(Duration::from_secs(5), daemon.task)
        .await
        .expect("the daemon stops")
        .unwrap();
    assert!(
        tokio::net::TcpStream::connect(daemon.addr).await.is_err(),
        "no longer accepting"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_request_body_is_cut_off() {
    let rx = common::receiver();
    let receiver = Receiver::start(rx.key_ring()).await.unwrap();
    let daemon = Daemon::start(
        &net::config(&upstream(&receiver), "", "body_idle_timeout = \"300ms\""),
        &[("orders-receiver", rx.cert_pem())],
    )
    .await;
    let started = std::time::Instant::now();
    let request = format!(
        "POST /orders HTTP/1.1\r\nhost: x\r\ncontent-type: text/xml\r\ncontent-length: 1000\r\n\r\n{}",
        &S11[..40]
    );
    let answer =
        common::raw_exchange(daemon.addr, request.as_bytes(), Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request-timeout"));
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "answered without waiting for the body"
    );
    assert!(receiver.received().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_through_route_forwards_requests_unchanged_buffered_and_streamed() {
    let rx = common::receiver();
    let receiver = Receiver::start(rx.key_ring()).await.unwrap();
    let client = net::client();
    let daemon = Daemon::start(
        &net::config(
            &upstream(&receiver),
            "mode = \"pass-through\"",
            "stream_threshold = \"4KiB\"",
        ),
        &[("orders-receiver", rx.cert_pem())],
    )
    .await;
    let large = S11.replace("<ord:id>42</ord:id>", &"<ord:id>42</ord:id>".repeat(2_000));
    for body in [S11.to_string(), large] {
        let (status, _, answer) =
            net::post(&client, &daemon.url("/orders"), "text/xml", body.as_bytes()).await;
        assert_eq!(status, 200, "{answer}");
        let got = receiver.received().pop().unwrap();
        assert_eq!(got.raw, body.as_bytes(), "forwarded byte for byte");
        assert_eq!(got.chunked, body.len() > 4096, "large bodies are streamed");
    }
}

/// Shutdown while clients keep sending: every request that reached the
/// receiver is answered 200; a request that failed never reached it (the client
/// can retry it safely against another instance).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_under_load_fails_no_request_in_flight() {
    let rx = common::receiver();
    let receiver = Receiver::start(rx.key_ring()).await.unwrap();
    *receiver.delay.lock().unwrap() = Duration::from_millis(40);
    let daemon = Daemon::start(
        &net::config(&upstream(&receiver), "", ""),
        &[("orders-receiver", rx.cert_pem())],
    )
    .await;
    let mut clients = Vec::new();
    for c in 0..6 {
        let url = daemon.url("/orders");
        clients.push(tokio::spawn(async move {
            let client = net::client();
            let mut results = Vec::new();
            for i in 0.. {
                let id = format!("shutdown-{c}-{i}");
                let request = hyper::Request::post(url.as_str())
                    .header("content-type", "text/xml")
                    .header("x-request-id", &id)
                    .body(http_body_util::Full::new(bytes::Bytes::from_static(
                        S11.as_bytes(),
                    )))
                    .unwrap();
                let status = match client.request(request).await {
                    Ok(r) => r.status().as_u16(),
                    Err(_) => 0,
                };
                results.push((id, status));
                if status == 0 {
                    break;
                }
            }
            results
        }));
    }
    // Shut down once traffic is flowing (counted at the receiver, not timed: a
    // loaded machine is slower, not wrong).
    common::eventually(Duration::from_secs(30), async || {
        receiver.received().len() > 60
    })
    .await;
    daemon
        .intents
        .send(wssgate::signal::Intent::Shutdown)
        .await
        .unwrap();
    let mut results = Vec::new();
    for c in clients {
        results.extend(c.await.unwrap());
    }
    tokio::time::timeout(Duration::from_secs(10), daemon.task)
        .await
        .expect("the daemon stops")
        .unwrap();
    let received = receiver.received();
    let ok = results.iter().filter(|r| r.1 == 200).count();
    for (id, status) in &results {
        let reached = received.iter().any(|r| &r.request_id == id);
        if reached {
            assert_eq!(
                *status, 200,
                "{id} reached the receiver but was answered {status}"
            );
        } else {
            assert_ne!(
                *status, 200,
                "{id} answered 200 without reaching the receiver"
            );
        }
    }
    assert_eq!(received.len(), ok, "received = answered 200");
    assert!(ok > 50, "the clients were sending: {ok}");
}
