//! The decrypt route and the key ring endpoints called in process, with
//! in-memory bodies: the decrypt route's fault table and its bounds (body size,
//! XML limits on input and plaintext, EncryptedKeys per message, references per
//! message in linear time), and the admin endpoints' roles and refusals.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::net::{Receiver, TOKENS};
use common::{CertSpec, TestReceiver};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use wssgate::admin::Admin;
use wssgate::admin::contract::{KeyringAddAnswer, KeyringView, paths};
use wssgate::daemon::Daemon;
use wssgate::proxy::{Proxy, ProxyBody};
use wssgate::wss::keys::KeyRing;
use wssgate::wss::{self, EncryptOptions};

const ADMIN_ADDR: &str = "127.0.0.1:9090";
const ENVELOPE: &str = r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><m:x xmlns:m="urn:m">1</m:x></soap:Body></soap:Envelope>"#;

struct InProcess {
    proxy: Proxy,
    admin: Admin,
    receiver: Receiver,
    tenant: &'static TestReceiver,
    _daemon: Daemon,
    _dir: tempfile::TempDir,
}

fn tenant() -> &'static TestReceiver {
    static T: std::sync::OnceLock<TestReceiver> = std::sync::OnceLock::new();
    T.get_or_init(|| {
        TestReceiver::new(&CertSpec {
            serial: 600,
            ..CertSpec::default()
        })
    })
}

/// A decrypt route `/inbound` (with `extra_route`) and, beside it, `/open`
/// with `require_encryption = false`, both to a recording receiver.
async fn in_process(extra_route: &str) -> InProcess {
    let receiver = Receiver::start(KeyRing::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    common::write_ring(dir.path(), "tenant", tenant());
    let mut config = String::from("[admin]\nlisten = \"127.0.0.1:9090\"\ntokens = [\n");
    for (name, role, token) in TOKENS {
        common::write_secret(&dir.path().join(format!("{name}.token")), token);
        config.push_str(&format!(
            "  {{ name = \"{name}\", role = \"{role}\", file = \"{{dir}}/{name}.token\" }},\n"
        ));
    }
    config.push_str("]\n");
    let upstream = format!("http://{}/service", receiver.addr);
    let open = format!(
        "{extra_route}\n\n[[route]]\nname = \"open\"\npath = \"/open\"\nupstream = \"{upstream}\"\nmode = \"decrypt\"\nring = \"tenant\"\nrequire_encryption = false\n"
    );
    config.push_str(&common::net::decrypt_config(
        &upstream,
        &open,
        "max_body = \"4MiB\"",
    ));
    let path = dir.path().join("wssgate.toml");
    std::fs::write(&path, config.replace("{dir}", dir.path().to_str().unwrap())).unwrap();
    let daemon = Daemon::load(&path).await.unwrap();
    let proxy = Proxy::new(daemon.shared.clone(), daemon.gates.clone());
    let admin = Admin::new(daemon.control.clone(), ADMIN_ADDR.parse().unwrap());
    InProcess {
        proxy,
        admin,
        receiver,
        tenant: tenant(),
        _daemon: daemon,
        _dir: dir,
    }
}

fn peer() -> SocketAddr {
    "127.0.0.1:40000".parse().unwrap()
}

async fn text(response: Response<ProxyBody>) -> (StatusCode, String) {
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn post(path: &str, body: impl Into<Bytes>) -> Request<Full<Bytes>> {
    Request::post(path)
        .header("content-type", "text/xml")
        .body(Full::new(body.into()))
        .unwrap()
}

fn encrypted(envelope: &str) -> String {
    let (out, _) = wss::encrypt_to_vec(
        envelope.as_bytes(),
        &tenant().recipient(),
        &EncryptOptions::default(),
    )
    .unwrap();
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn the_decrypt_route_fault_table_in_process() {
    let p = in_process("xml_limits = { max_elements = 64 }").await;
    let wide = format!(
        r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><m:x xmlns:m="urn:m">{}</m:x></soap:Body></soap:Envelope>"#,
        "<m:i/>".repeat(100)
    );
    // Over the limit once decrypted: the sender holds the key, but the limit
    // is told as a failed decryption, like every other fault after the key.
    let wide_inside = encrypted(&wide);
    let good = encrypted(ENVELOPE);
    let too_many_keys = {
        let (start, end) = (
            good.find("<xenc:EncryptedKey").unwrap(),
            good.find("</xenc:EncryptedKey>").unwrap() + "</xenc:EncryptedKey>".len(),
        );
        let key = &good[start..end];
        good.replacen(
            key,
            &key.repeat(wssgate::wss::decrypt::MAX_ENCRYPTED_KEYS + 1),
            1,
        )
    };
    let cases: Vec<(&str, String, StatusCode, &str)> = vec![
        (
            "/inbound",
            ENVELOPE.to_string(),
            StatusCode::BAD_REQUEST,
            "not-encrypted",
        ),
        (
            "/inbound",
            "<not-xml".to_string() + "EncryptedKey",
            StatusCode::BAD_REQUEST,
            "malformed-envelope",
        ),
        (
            "/inbound",
            format!("{}<!-- EncryptedKey -->", wide),
            StatusCode::BAD_REQUEST,
            "xml-limit-exceeded",
        ),
        (
            "/inbound",
            wide_inside,
            StatusCode::BAD_REQUEST,
            "decryption-failed",
        ),
        (
            "/inbound",
            too_many_keys,
            StatusCode::BAD_REQUEST,
            "xml-limit-exceeded",
        ),
        (
            "/inbound",
            "x".repeat(5 << 20),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload-too-large",
        ),
        (
            "/open",
            "<!DOCTYPE x [<!ENTITY a 'EncryptedKey'>]><x/>".to_string(),
            StatusCode::BAD_REQUEST,
            "malformed-envelope",
        ),
    ];
    for (path, body, status, code) in cases {
        let (got, answer) = text(p.proxy.handle(post(path, body.clone()), peer()).await).await;
        assert_eq!(
            (got, common::fault_code(&answer)),
            (status, code),
            "{}: {answer}",
            &body[..body.len().min(80)]
        );
    }
    assert!(
        p.receiver.received().is_empty(),
        "nothing refused reached the receiver"
    );

    // What passes: the decrypted message, and on /open a plain one unchanged.
    let (status, answer) = text(p.proxy.handle(post("/inbound", good), peer()).await).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (status, _) = text(p.proxy.handle(post("/open", ENVELOPE), peer()).await).await;
    assert_eq!(status, StatusCode::OK);
    let got = p.receiver.received();
    assert_eq!(got.len(), 2);
    assert!(String::from_utf8_lossy(&got[0].raw).contains("<m:x xmlns:m=\"urn:m\">1</m:x>"));
    assert_eq!(got[1].raw, ENVELOPE.as_bytes());
    let _ = p.tenant;
}

#[tokio::test]
async fn many_references_cost_linear_time() {
    let p = in_process("").await;
    // 20 000 DataReferences to 20 000 elements with Ids: an Id index answers
    // each in constant time; a search per reference would take minutes.
    let good = encrypted(ENVELOPE);
    let n = 20_000;
    let references: String = (0..n)
        .map(|i| format!(r##"<xenc:DataReference URI="#d{i}"/>"##))
        .collect();
    let targets: String = (0..n).map(|i| format!(r#"<m:t wsu:Id="d{i}"/>"#)).collect();
    let body = good
        .replacen("<xenc:ReferenceList>", &format!("<xenc:ReferenceList>{references}"), 1)
        .replacen(
            "<soap:Body",
            &format!(r#"<soap:Header><m:h xmlns:m="urn:m" xmlns:wsu="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd">{targets}</m:h></soap:Header><soap:Body"#),
            1,
        );
    let started = Instant::now();
    let (status, answer) = text(p.proxy.handle(post("/inbound", body), peer()).await).await;
    let took = started.elapsed();
    assert_eq!(
        (status, common::fault_code(&answer)),
        (StatusCode::BAD_REQUEST, "decryption-failed"),
        "{answer}"
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
}

async fn admin(
    p: &InProcess,
    method: &str,
    path: &str,
    role: Option<&str>,
    body: Vec<u8>,
) -> (StatusCode, String) {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header("host", ADMIN_ADDR);
    if let Some(role) = role {
        let token = TOKENS.iter().find(|t| t.1 == role).unwrap().2;
        request = request.header("authorization", format!("Bearer {token}"));
    }
    text(
        p.admin
            .handle(request.body(Full::new(Bytes::from(body))).unwrap())
            .await,
    )
    .await
}

#[tokio::test]
async fn the_keyring_endpoints_in_process() {
    let p = in_process("").await;
    let ring = paths::keyring_alias("tenant");
    let next = TestReceiver::new(&CertSpec {
        serial: 601,
        ..CertSpec::default()
    });
    for (method, path, role, status) in [
        (
            "GET",
            paths::KEYRING.to_string(),
            None,
            StatusCode::UNAUTHORIZED,
        ),
        ("GET", ring.clone(), None, StatusCode::UNAUTHORIZED),
        ("PUT", ring.clone(), Some("read"), StatusCode::FORBIDDEN),
        ("PUT", ring.clone(), Some("operator"), StatusCode::FORBIDDEN),
        (
            "POST",
            ring.clone(),
            Some("admin"),
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            "GET",
            paths::keyring_alias("nobody"),
            Some("read"),
            StatusCode::NOT_FOUND,
        ),
        (
            "GET",
            paths::keyring_alias("../etc"),
            Some("read"),
            StatusCode::NOT_FOUND,
        ),
    ] {
        let (got, answer) = admin(&p, method, &path, role, next.key_and_cert_pem()).await;
        assert_eq!(got, status, "{method} {path}: {answer}");
        assert!(!answer.contains("PRIVATE KEY"));
    }
    let (status, answer) = admin(&p, "PUT", &ring, Some("keys"), vec![b'x'; 2 << 20]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
    let (status, answer) = admin(&p, "PUT", &ring, Some("keys"), b"not a key".to_vec()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");

    let (status, answer) = admin(&p, "PUT", &ring, Some("keys"), next.key_and_cert_pem()).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let added: KeyringAddAnswer = serde_json::from_str(&answer).unwrap();
    assert!(added.live && added.error.is_none());
    assert_eq!(added.current.serial, "601");
    let (status, answer) = admin(&p, "GET", &ring, Some("read"), Vec::new()).await;
    assert_eq!(status, StatusCode::OK);
    let view: KeyringView = serde_json::from_str(&answer).unwrap();
    assert_eq!(view.routes, vec!["inbound".to_string(), "open".to_string()]);
    assert_eq!(
        view.keys
            .iter()
            .map(|k| k.serial.as_str())
            .collect::<Vec<_>>(),
        vec!["601", "600"]
    );
    let (_, answer) = admin(&p, "GET", paths::KEYRING, Some("read"), Vec::new()).await;
    let all: Vec<KeyringView> = serde_json::from_str(&answer).unwrap();
    assert_eq!(all, vec![view]);
    // The next message is decrypted with the new key: the snapshot has it.
    let (out, _) = wss::encrypt_to_vec(
        ENVELOPE.as_bytes(),
        &next.recipient(),
        &EncryptOptions::default(),
    )
    .unwrap();
    let (status, answer) = text(p.proxy.handle(post("/inbound", out), peer()).await).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
}
