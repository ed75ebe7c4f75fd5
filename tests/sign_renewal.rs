//! The signing key renewed by overlap under load, in process: senders through a
//! signing route while a new key is added to the signing ring through
//! `PUT /v1/keyring/{ring}` (role keys). None fails; every request sent after the
//! PUT returned is signed by the new key (the BinarySecurityToken the receiver
//! recorded), every one answered before the PUT began by the old.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use common::net::{Receiver, TOKENS};
use common::{CertSpec, TestReceiver};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use wssgate::admin::Admin;
use wssgate::admin::contract::{KeyringAddAnswer, paths};
use wssgate::daemon::Daemon;
use wssgate::proxy::Proxy;

const ADMIN_ADDR: &str = "127.0.0.1:9090";
const ENVELOPE: &str = r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><m:order xmlns:m="urn:m">42</m:order></soap:Body></soap:Envelope>"#;

fn bst_of(key: &TestReceiver) -> String {
    base64::engine::general_purpose::STANDARD.encode(key.cert.to_der().unwrap())
}

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
    let next = TestReceiver::new(&CertSpec {
        common_name: "tenant signer 2".into(),
        serial: 1920,
        ..CertSpec::default()
    });

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
    tokio::time::sleep(Duration::from_millis(400)).await;
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
    tokio::time::sleep(Duration::from_millis(400)).await;
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
    let (old, new) = (bst_of(common::signer()), bst_of(&next));
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
