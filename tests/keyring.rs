//! The key ring and the receiver-side gateway, end to end through the daemon on
//! port 0 to a plain receiver that records what it got: a decrypt route
//! forwards the plaintext for the old key and for a key added through the API,
//! counts each key's use, and refuses the old key once its retain_until has
//! passed; answers of `response = "decrypt"` reach the client decrypted.

mod common;

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use common::net::{self, Daemon, Receiver};
use common::{CertSpec, TestReceiver};
use wssgate::keystore::{KeyState, Keystore};
use wssgate::wss::keys::KeyRing;
use wssgate::wss::{self, EncryptOptions};

const ENVELOPE: &str = r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Header><a:To xmlns:a="http://www.w3.org/2005/08/addressing">urn:x</a:To></soap:Header><soap:Body><m:order xmlns:m="urn:m"><m:id>42</m:id><m:note>caf&#233; &amp; more</m:note></m:order></soap:Body></soap:Envelope>"#;

fn key(serial: u32) -> TestReceiver {
    TestReceiver::new(&CertSpec {
        serial,
        common_name: format!("tenant-{serial}"),
        ..CertSpec::default()
    })
}

fn encrypted_for(key: &TestReceiver) -> Vec<u8> {
    wss::encrypt_to_vec(
        ENVELOPE.as_bytes(),
        &key.recipient(),
        &EncryptOptions::default(),
    )
    .unwrap()
    .0
}

/// A daemon with a decrypt route to a plain receiver, its ring holding `active`.
async fn gateway(active: &TestReceiver, extra_route: &str) -> (Daemon, Receiver) {
    let receiver = Receiver::start(KeyRing::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    common::write_ring(dir.path(), "tenant", active);
    let upstream = format!("http://{}/service", receiver.addr);
    let config = net::decrypt_config(&upstream, extra_route, "");
    let daemon = Daemon::start_in(dir, &config, &[]).await;
    (daemon, receiver)
}

async fn post(daemon: &Daemon, body: &[u8]) -> (u16, String) {
    let (status, _, answer) = net::post(
        &net::client(),
        &daemon.url("/inbound"),
        "text/xml; charset=utf-8",
        body,
    )
    .await;
    (status, answer)
}

/// What the receiver got last, as text.
fn last_received(receiver: &Receiver) -> String {
    let got = receiver.received();
    String::from_utf8(got.last().expect("something arrived").raw.clone()).unwrap()
}

#[tokio::test]
async fn old_and_new_keys_decrypt_until_the_old_one_is_past_retain_until() {
    let (old, new) = (key(100), key(101));
    let (daemon, receiver) = gateway(&old, "").await;

    // The old key: the plaintext arrives, the security header is gone.
    let for_old = encrypted_for(&old);
    let (status, answer) = post(&daemon, &for_old).await;
    assert_eq!(status, 200, "{answer}");
    let got = last_received(&receiver);
    let (expected, _) = wss::decrypt::decrypt_document(&for_old, &old.key_ring()).unwrap();
    assert_eq!(got.as_bytes(), expected.as_slice());
    assert!(
        !got.contains("EncryptedData") && !got.contains("Security"),
        "{got}"
    );
    assert!(got.contains("<m:id>42</m:id>"), "{got}");

    // A new key through the API: active at once, the old one retained.
    let added = daemon
        .client("keys")
        .keyring_add("tenant", Bytes::from(new.key_and_cert_pem()))
        .await
        .unwrap();
    assert!(added.live);
    assert_eq!(added.current.serial, "101");
    assert_eq!(added.previous.as_ref().unwrap().serial, "100");
    let retain_until = added.previous_retain_until.clone().unwrap();
    let until = humantime::parse_rfc3339(&retain_until).unwrap();
    assert!(until > SystemTime::now() + Duration::from_secs(89 * 86_400));

    for body in [&for_old, &encrypted_for(&new), &for_old] {
        let (status, answer) = post(&daemon, body).await;
        assert_eq!(status, 200, "{answer}");
        assert!(last_received(&receiver).contains("<m:id>42</m:id>"));
    }

    // Which key is still used, per key: in the API and in the metrics.
    let view = daemon.client("read").keyring("tenant").await.unwrap();
    assert!(view.live);
    assert_eq!(view.routes, vec!["inbound".to_string()]);
    assert_eq!(view.keys.len(), 2);
    assert_eq!(
        (view.keys[0].state, view.keys[0].serial.as_str()),
        (KeyState::Active, "101")
    );
    assert_eq!(view.keys[0].decryptions, 1);
    assert_eq!(
        (view.keys[1].state, view.keys[1].serial.as_str()),
        (KeyState::Retained, "100")
    );
    assert_eq!(
        view.keys[1].decryptions, 3,
        "counted across the reload of the add"
    );
    assert_eq!(
        view.keys[1].retain_until.as_deref().map(|u| &u[..19]),
        Some(&retain_until[..19])
    );
    assert!(view.keys.iter().all(|k| k.last_used.is_some()));
    let all = daemon.client("read").keyrings().await.unwrap();
    assert_eq!(all, vec![view]);
    let metrics = metrics_text(&daemon).await;
    for line in [
        r#"wssgate_decryptions_total{ring="tenant",serial="100"} 3"#,
        r#"wssgate_decryptions_total{ring="tenant",serial="101"} 1"#,
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
    assert!(metrics.contains(r#"wssgate_keyring_not_after_seconds{ring="tenant",serial="100"}"#));
    assert!(metrics.contains(r#"wssgate_keyring_last_used_seconds{ring="tenant",serial="101"}"#));

    // After retain_until the old key is gone: its messages get decryption-failed.
    let archive = daemon.dir.path().join("var/private-archive/tenant");
    let json = std::fs::read_dir(&archive)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "json"))
        .unwrap();
    let mut record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    record["retain_until"] = "2001-01-01T00:00:00.000Z".into();
    std::fs::write(&json, serde_json::to_vec(&record).unwrap()).unwrap();
    daemon.reload().await.unwrap();
    let (status, answer) = post(&daemon, &for_old).await;
    assert_eq!(
        (status, common::fault_code(&answer)),
        (400, "decryption-failed"),
        "{answer}"
    );
    let (status, _) = post(&daemon, &encrypted_for(&new)).await;
    assert_eq!(status, 200);
    let view = daemon.client("read").keyring("tenant").await.unwrap();
    assert_eq!(view.keys.len(), 1);
    assert!(
        !metrics_text(&daemon).await.contains(r#"serial="100""#),
        "a gone key leaves the metrics"
    );

    // Purged from disk; the history keeps the record until then.
    let store = Keystore::new(daemon.shared.load().config.keystore.clone());
    assert_eq!(store.ring_history("tenant").unwrap().keys.len(), 2);
    let report = store.ring_purge("test", SystemTime::now()).unwrap();
    assert_eq!(report.deleted.len(), 1);
    assert_eq!(store.ring_history("tenant").unwrap().keys.len(), 1);
    let audit = wssgate::keystore::audit::read(&daemon.dir.path().join("var")).unwrap();
    let actions: Vec<&str> = audit.iter().map(|r| r.action.as_str()).collect();
    assert!(
        actions.contains(&"keyring-add") && actions.contains(&"keyring-purge"),
        "{actions:?}"
    );
}

async fn metrics_text(daemon: &Daemon) -> String {
    use http_body_util::BodyExt;
    let token = net::TOKENS.iter().find(|t| t.1 == "read").unwrap().2;
    let request = http::Request::get(daemon.admin_url("/metrics"))
        .header("authorization", format!("Bearer {token}"))
        .body(http_body_util::Full::new(Bytes::new()))
        .unwrap();
    let response = net::client().request(request).await.unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(body.to_vec()).unwrap()
}

#[tokio::test]
async fn a_key_past_retain_until_stops_at_that_moment_not_at_the_next_reload() {
    let (old, new) = (key(110), key(111));
    let store_dir = tempfile::tempdir().unwrap();
    let config = wssgate::config::Config::parse(
        &net::decrypt_config("http://127.0.0.1:9/", "", ""),
        &store_dir.path().join("wssgate.toml"),
    )
    .unwrap();
    let mut keystore = config.keystore.clone();
    keystore.private_dir = store_dir.path().join("private");
    keystore.state_dir = store_dir.path().join("var");
    let store = Keystore::new(keystore);
    let policy = wssgate::keystore::policy(store.config(), false);
    let then = SystemTime::now() - Duration::from_secs(100 * 86_400);
    store
        .ring_add(
            "tenant",
            &old.key_and_cert_pem(),
            "t",
            &policy,
            &|_| Ok(()),
            then,
        )
        .unwrap();
    // Retired 89 days and 23 hours ago: retained for one more hour.
    let retired = SystemTime::now() - Duration::from_secs(90 * 86_400 - 3600);
    store
        .ring_add(
            "tenant",
            &new.key_and_cert_pem(),
            "t",
            &policy,
            &|_| Ok(()),
            retired,
        )
        .unwrap();
    let ring = wssgate::keyring::Ring::new(
        "tenant",
        store.ring_keys("tenant", SystemTime::now()).unwrap(),
    );
    assert_eq!(ring.usable(SystemTime::now()).0, vec![0, 1]);
    assert_eq!(
        ring.usable(SystemTime::now() + Duration::from_secs(3601)).0,
        vec![0]
    );
    // The ring's files are owner-only.
    use std::os::unix::fs::PermissionsExt;
    for dir in [
        store_dir.path().join("private"),
        store_dir.path().join("var/private-archive/tenant"),
    ] {
        for f in std::fs::read_dir(dir).unwrap() {
            let mode = f.unwrap().metadata().unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "{mode:o}");
        }
    }
}

#[tokio::test]
async fn answers_of_response_decrypt_reach_the_client_decrypted() {
    let tenant = key(120);
    let receiver_cert = common::receiver();
    // The upstream answers encrypted for the tenant's key.
    let answer = wss::encrypt_to_vec(
        net::RESPONSE.as_bytes(),
        &tenant.recipient(),
        &EncryptOptions::default(),
    )
    .unwrap()
    .0;
    let upstream = encrypted_answer_server(Bytes::from(answer)).await;
    let dir = tempfile::tempdir().unwrap();
    common::write_ring(dir.path(), "tenant", &tenant);
    let mut config = net::config(
        &format!("http://{upstream}/orders"),
        "response = \"decrypt\"\nresponse_ring = \"tenant\"",
        "",
    );
    config = config.replace(
        "state_dir = \"{dir}/var\"",
        "state_dir = \"{dir}/var\"\nprivate_dir = \"{dir}/private\"",
    );
    let daemon = Daemon::start_in(
        dir,
        &config,
        &[("orders-receiver", receiver_cert.cert_pem())],
    )
    .await;
    let (status, headers, body) = net::post(
        &net::client(),
        &daemon.url("/orders"),
        "text/xml",
        ENVELOPE.as_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(!body.contains("EncryptedData"), "{body}");
    assert!(body.contains("<r:ok xmlns:r=\"urn:receiver\"/>"), "{body}");
    assert_eq!(headers["content-length"], body.len().to_string().as_str());
    let view = daemon.client("read").keyring("tenant").await.unwrap();
    assert_eq!(view.keys[0].decryptions, 1);
}

/// An upstream that answers every request with `answer`.
async fn encrypted_answer_server(answer: Bytes) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_req| {
                    let answer = answer.clone();
                    async move {
                        let mut r = http::Response::new(http_body_util::Full::new(answer));
                        r.headers_mut()
                            .insert("content-type", http::HeaderValue::from_static("text/xml"));
                        Ok::<_, std::convert::Infallible>(r)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn ring_files_readable_by_others_are_refused_and_bad_keys_change_nothing() {
    use std::os::unix::fs::PermissionsExt;
    let (tenant, other) = (key(130), key(131));
    let (daemon, _receiver) = gateway(&tenant, "").await;
    let path = daemon.dir.path().join("private/tenant.pem");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let refused = daemon.reload().await.unwrap_err();
    assert!(refused.contains("mode 0600 or stricter"), "{refused}");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
    daemon.reload().await.unwrap();

    let client = daemon.client("keys");
    // A key with someone else's certificate, the same key again, a certificate
    // without key, and the wrong role: refused, the ring unchanged.
    let mut mismatched = tenant.key_pem();
    mismatched.extend_from_slice(&other.cert_pem());
    for (body, status) in [
        (mismatched, 422),
        (tenant.key_and_cert_pem(), 422),
        (other.cert_pem(), 422),
    ] {
        match client.keyring_add("tenant", Bytes::from(body)).await {
            Err(wssgate::admin::client::CtlError::Refused { status: s, message }) => {
                assert_eq!(s, status, "{message}");
                assert!(!message.contains("PRIVATE KEY"), "{message}");
            }
            other => panic!("not refused: {other:?}"),
        }
    }
    let reader = daemon.client("read");
    assert!(matches!(
        reader
            .keyring_add("tenant", Bytes::from(other.key_and_cert_pem()))
            .await,
        Err(wssgate::admin::client::CtlError::Refused { status: 403, .. })
    ));
    assert!(matches!(
        reader.keyring("nobody").await,
        Err(wssgate::admin::client::CtlError::Refused { status: 404, .. })
    ));
    let view = reader.keyring("tenant").await.unwrap();
    assert_eq!(view.keys.len(), 1);
    assert_eq!(view.keys[0].serial, "130");
}

#[tokio::test]
async fn a_key_replaced_on_disk_keeps_the_previous_one_retained() {
    // A Kubernetes Secret updated with the new key: the file changes, no add ran.
    let (old, new) = (key(140), key(141));
    let (daemon, receiver) = gateway(&old, "").await;
    common::write_secret(
        &daemon.dir.path().join("private/tenant.pem"),
        new.key_and_cert_pem(),
    );
    daemon.reload().await.unwrap();
    for k in [&old, &new] {
        let (status, answer) = post(&daemon, &encrypted_for(k)).await;
        assert_eq!(status, 200, "{answer}");
    }
    assert_eq!(receiver.received().len(), 2);
    let view = daemon.client("read").keyring("tenant").await.unwrap();
    let states: Vec<_> = view
        .keys
        .iter()
        .map(|k| (k.serial.as_str(), k.state))
        .collect();
    assert_eq!(
        states,
        vec![("141", KeyState::Active), ("140", KeyState::Retained)]
    );
    assert!(view.keys[1].retain_until.is_some());
    let audit = wssgate::keystore::audit::read(&daemon.dir.path().join("var")).unwrap();
    let adopted = audit.iter().find(|r| r.action == "keyring-add").unwrap();
    assert_eq!(adopted.actor, "file");
    assert_eq!(adopted.before.as_ref().unwrap().serial, "140");
}
