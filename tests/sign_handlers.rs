//! A `sign = true` route called in process: the request is signed with the
//! signing ring's active key and encrypted for the route's certificate (both
//! orders, SOAP 1.1 and 1.2), libxmlsec1 verifies what the receiver recorded,
//! and the route's faults: over `sign_max_body`, not SOAP, too deep, a
//! Timestamp already there; a signing ring that is not there is refused at load.

mod common;

use std::net::SocketAddr;

use base64::Engine;
use bytes::Bytes;
use common::net::Receiver;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use wssgate::daemon::Daemon;
use wssgate::proxy::{Proxy, ProxyBody};

const SOAP11: &str = r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><m:order xmlns:m="urn:m">42</m:order></soap:Body></soap:Envelope>"#;
const SOAP12: &str = r#"<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope"><env:Body><m:order xmlns:m="urn:m">42</m:order></env:Body></env:Envelope>"#;

struct InProcess {
    proxy: Proxy,
    receiver: Receiver,
    dir: tempfile::TempDir,
    _daemon: Daemon,
}

fn config_text(upstream: &str, extra_route: &str) -> String {
    common::net::config(
        upstream,
        &format!("sign = true\nsigning_ring = \"tenant\"\n{extra_route}"),
        "",
    )
    .replace(
        "[keystore]\n",
        "[keystore]\nprivate_dir = \"{dir}/private\"\n",
    )
}

fn write_files(dir: &std::path::Path) {
    common::write_keystore(dir, &[("orders-receiver", common::receiver().cert_pem())]);
    common::write_ring(dir, "tenant", common::signer());
}

async fn in_process(extra_route: &str) -> InProcess {
    let receiver = Receiver::start(common::receiver().key_ring())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path());
    let upstream = format!("http://{}/service", receiver.addr);
    let path = dir.path().join("wssgate.toml");
    let text = config_text(&upstream, extra_route);
    std::fs::write(&path, text.replace("{dir}", dir.path().to_str().unwrap())).unwrap();
    let daemon = Daemon::load(&path).await.unwrap();
    let proxy = Proxy::new(daemon.shared.clone(), daemon.gates.clone());
    InProcess {
        proxy,
        receiver,
        dir,
        _daemon: daemon,
    }
}

fn peer() -> SocketAddr {
    "127.0.0.1:40000".parse().unwrap()
}

fn post(body: impl Into<Bytes>, content_type: &str) -> Request<Full<Bytes>> {
    Request::post("/orders")
        .header("content-type", content_type)
        .body(Full::new(body.into()))
        .unwrap()
}

async fn text(response: Response<ProxyBody>) -> (StatusCode, String) {
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn signed_and_encrypted_requests_verify_with_libxmlsec1() {
    let mut cases = Vec::new();
    let mut kept = Vec::new();
    for order in ["sign-then-encrypt", "encrypt-then-sign"] {
        let p = in_process(&format!("order = \"{order}\"")).await;
        let (rx_key, _, _) = common::receiver().write_to(p.dir.path(), "rx");
        let (_, signer_cert, _) = common::signer().write_to(p.dir.path(), "signer");
        for (version, envelope, content_type) in [
            ("soap11", SOAP11, "text/xml"),
            ("soap12", SOAP12, "application/soap+xml"),
        ] {
            let (status, answer) =
                text(p.proxy.handle(post(envelope, content_type), peer()).await).await;
            assert_eq!(status, StatusCode::OK, "{order} {version}: {answer}");
            let received = p.receiver.received.lock().unwrap().pop().unwrap();
            let raw = String::from_utf8(received.raw.clone()).unwrap();
            assert!(raw.contains("<wsu:Timestamp"), "{raw}");
            assert!(raw.contains("Signature"), "{raw}");
            assert!(!raw.contains("<m:order"), "the Body is encrypted: {raw}");
            let der = common::signer().cert.to_der().unwrap();
            let bst = base64::engine::general_purpose::STANDARD.encode(der);
            assert!(raw.contains(&bst), "the signing certificate is the BST");
            let plain = received.decrypted.clone().unwrap();
            assert!(plain.contains("42"), "{plain}");
            let file = p.dir.path().join(format!("{order}-{version}.xml"));
            std::fs::write(&file, &received.raw).unwrap();
            cases.push(json!({"name": format!("{order} {version}"), "signed": file, "cert": signer_cert, "key": rx_key, "order": order}));
            // The same message under a certificate the receiver does not trust.
            let (_, other_cert, _) = common::receiver().write_to(p.dir.path(), "untrusted");
            cases.push(json!({"name": format!("{order} {version} untrusted"), "signed": file, "cert": other_cert, "key": rx_key, "order": order}));
        }
        // The files stay until libxmlsec1 has read them.
        kept.push(p);
    }
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("cases.json");
    std::fs::write(&manifest, serde_json::to_vec(&cases).unwrap()).unwrap();
    let results =
        common::run_interop_script("xmlsec_interop.py", &["verify", manifest.to_str().unwrap()]);
    let results = results.as_array().unwrap();
    assert_eq!(results.len(), cases.len());
    for r in results {
        let name = r["name"].as_str().unwrap();
        let untrusted = name.ends_with("untrusted");
        assert_eq!(r["ok"] == json!(true), !untrusted, "{r}");
        if !untrusted {
            let signed: Vec<&str> = r["signed"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            assert!(
                signed.contains(&"Body") && signed.contains(&"Timestamp"),
                "{r}"
            );
        }
    }
}

#[tokio::test]
async fn the_signing_route_fault_table() {
    let p = in_process("sign_max_body = \"8KiB\"\nxml_limits = { max_depth = 16 }").await;
    let big = SOAP11.replace("42", &"4".repeat(9000));
    let deep = SOAP11.replace(
        "42",
        &format!("{}{}", "<m:a>".repeat(20), "</m:a>".repeat(20)),
    );
    let stamped = SOAP11.replace(
        "<soap:Body>",
        r#"<soap:Header><wsse:Security xmlns:wsse="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"><wsu:Timestamp xmlns:wsu="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"><wsu:Created>2026-01-01T00:00:00Z</wsu:Created></wsu:Timestamp></wsse:Security></soap:Header><soap:Body>"#,
    );
    for (body, status, code) in [
        (big, StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large"),
        (
            "<a>not soap</a>".to_string(),
            StatusCode::BAD_REQUEST,
            "malformed-envelope",
        ),
        (
            "<soap:Envelope".to_string(),
            StatusCode::BAD_REQUEST,
            "malformed-envelope",
        ),
        (deep, StatusCode::BAD_REQUEST, "xml-limit-exceeded"),
        (stamped, StatusCode::BAD_REQUEST, "malformed-envelope"),
    ] {
        let (got, answer) =
            text(p.proxy.handle(post(body.clone(), "text/xml"), peer()).await).await;
        assert_eq!(got, status, "{answer}");
        assert!(answer.contains(code), "{code}: {answer}");
        assert!(!answer.contains("PRIVATE KEY"), "{answer}");
    }
    assert!(
        p.receiver.received.lock().unwrap().is_empty(),
        "nothing was sent"
    );
    let (got, answer) = text(p.proxy.handle(post(SOAP11, "text/xml"), peer()).await).await;
    assert_eq!(got, StatusCode::OK, "{answer}");
}

#[tokio::test]
async fn a_signing_ring_that_is_not_there_is_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path());
    let text = config_text("http://127.0.0.1:9/service", "")
        .replace("signing_ring = \"tenant\"", "signing_ring = \"nobody\"");
    let path = dir.path().join("wssgate.toml");
    std::fs::write(&path, text.replace("{dir}", dir.path().to_str().unwrap())).unwrap();
    let e = Daemon::load(&path).await.err().expect("refused");
    assert!(e.to_string().contains("nobody"), "{e}");
    // The ring there: it loads.
    let text = config_text("http://127.0.0.1:9/service", "");
    std::fs::write(&path, text.replace("{dir}", dir.path().to_str().unwrap())).unwrap();
    assert!(Daemon::load(&path).await.is_ok());
}

#[tokio::test]
async fn a_large_request_is_signed_off_the_async_workers() {
    let p = in_process("").await;
    let big = SOAP11.replace("42", &"7".repeat(300 * 1024));
    let (status, answer) = text(p.proxy.handle(post(big, "text/xml"), peer()).await).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let received = p.receiver.received.lock().unwrap().pop().unwrap();
    let plain = received.decrypted.clone().unwrap();
    assert!(plain.contains(&"7".repeat(300 * 1024)));
    assert!(
        plain.contains("<wsu:Timestamp"),
        "signed as well as encrypted"
    );
}
