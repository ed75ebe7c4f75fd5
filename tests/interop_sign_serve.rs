//! End to end through the running daemon: a signing route in front of a
//! recording receiver, SOAP 1.1 and 1.2, both orders; what the receiver recorded
//! is verified by implementations nobody here wrote — libxmlsec1 (after
//! decrypting) and Apache WSS4J 3 (DOM and streaming, the signer's certificate
//! the one trusted) — and a message signed by a key the receiver does not trust
//! is refused by both.
//!
//! Without `mvn` on the PATH the WSS4J half says so and passes (see
//! tests/interop_java.rs).

mod common;

use std::path::{Path, PathBuf};

use bytes::Bytes;
use common::java::{KEYSTORE_PASSWORD, harness};
use common::net::{Daemon, Receiver};
use common::{CertSpec, TestReceiver};
use http::Request;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};

const SOAP11: &str = r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><m:order xmlns:m="urn:m">42</m:order></soap:Body></soap:Envelope>"#;
const SOAP12: &str = r#"<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope"><env:Body><m:order xmlns:m="urn:m">42</m:order></env:Body></env:Envelope>"#;

/// One recorded message: its name, the file it is in, the envelope sent, and
/// whether the receivers are to accept it.
struct Recorded {
    name: String,
    file: PathBuf,
    original: PathBuf,
    trusted: bool,
}

fn stranger() -> &'static TestReceiver {
    static S: std::sync::OnceLock<TestReceiver> = std::sync::OnceLock::new();
    S.get_or_init(|| {
        TestReceiver::new(&CertSpec {
            common_name: "not trusted".into(),
            serial: 667,
            ..CertSpec::default()
        })
    })
}

/// Send both SOAP versions through a daemon whose route signs with `key` in
/// `order` (`extra` more route keys); what the receiver got, written under `out`.
async fn through_serve(
    out: &Path,
    order: &str,
    key: &TestReceiver,
    extra: &str,
    trusted: bool,
) -> Vec<Recorded> {
    let receiver = Receiver::start(common::receiver().key_ring())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    common::write_ring(dir.path(), "tenant", key);
    let upstream = format!("http://{}/service", receiver.addr);
    let route = format!("sign = true\nsigning_ring = \"tenant\"\norder = \"{order}\"\n{extra}");
    let config = common::net::config(&upstream, &route, "").replace(
        "[keystore]\n",
        "[keystore]\nprivate_dir = \"{dir}/private\"\n",
    );
    let daemon = Daemon::start_in(
        dir,
        &config,
        &[("orders-receiver", common::receiver().cert_pem())],
    )
    .await;
    let mut recorded = Vec::new();
    for (version, envelope, content_type) in [
        ("soap11", SOAP11, "text/xml"),
        ("soap12", SOAP12, "application/soap+xml"),
    ] {
        let request = Request::post(daemon.url("/orders"))
            .header("content-type", content_type)
            .body(Full::new(Bytes::from_static(envelope.as_bytes())))
            .unwrap();
        let answer = common::net::client().request(request).await.unwrap();
        let status = answer.status();
        let body = answer.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(
            status,
            200,
            "{order} {version}: {}",
            String::from_utf8_lossy(&body)
        );
        let message = receiver.received.lock().unwrap().pop().unwrap();
        let name = format!("{order} {version} {extra} trusted:{trusted}");
        let n = std::fs::read_dir(out).unwrap().count();
        let file = out.join(format!("m{n}.xml"));
        let original = out.join(format!("o{n}.xml"));
        std::fs::write(&file, &message.raw).unwrap();
        std::fs::write(&original, envelope).unwrap();
        recorded.push(Recorded {
            name,
            file,
            original,
            trusted,
        });
    }
    recorded
}

fn receiver_keystore(dir: &Path) -> PathBuf {
    let rx = common::receiver();
    let p12 = openssl::pkcs12::Pkcs12::builder()
        .name("receiver")
        .pkey(&rx.key)
        .cert(&rx.cert)
        .build2(KEYSTORE_PASSWORD)
        .unwrap();
    let path = dir.join("receiver.p12");
    std::fs::write(&path, p12.to_der().unwrap()).unwrap();
    path
}

#[tokio::test]
async fn signed_through_serve_verified_by_libxmlsec1_and_wss4j() {
    let out = tempfile::tempdir().unwrap();
    let files = out.path().join("messages");
    std::fs::create_dir_all(&files).unwrap();
    let mut recorded = Vec::new();
    for order in ["sign-then-encrypt", "encrypt-then-sign"] {
        for extra in ["", "signature_key_identifier = \"issuer-serial\""] {
            recorded.extend(through_serve(&files, order, common::signer(), extra, true).await);
        }
    }
    recorded.extend(through_serve(&files, "sign-then-encrypt", stranger(), "", false).await);

    // libxmlsec1: decrypt, then verify against the signer's certificate.
    let (rx_key, _, _) = common::receiver().write_to(out.path(), "rx");
    let (_, signer_cert, _) = common::signer().write_to(out.path(), "signer");
    let cases: Vec<Value> = recorded
        .iter()
        .map(|r| {
            let order = r.name.split(' ').next().unwrap_or_default();
            json!({"name": r.name, "signed": r.file, "cert": signer_cert, "key": rx_key, "order": order})
        })
        .collect();
    let manifest = out.path().join("xmlsec.json");
    std::fs::write(&manifest, serde_json::to_vec(&cases).unwrap()).unwrap();
    let results =
        common::run_interop_script("xmlsec_interop.py", &["verify", manifest.to_str().unwrap()]);
    let results = results.as_array().unwrap();
    assert_eq!(results.len(), recorded.len());
    for (r, case) in results.iter().zip(&recorded) {
        assert_eq!(r["ok"] == json!(true), case.trusted, "libxmlsec1: {r}");
    }

    // WSS4J 3, DOM and streaming, trusting the signer's certificate only.
    let Some(harness) = harness() else { return };
    let keystore = receiver_keystore(out.path());
    let manifest: String = recorded
        .iter()
        .map(|c| {
            format!(
                "{}\t{}\t{}\n",
                c.name,
                c.file.display(),
                c.original.display()
            )
        })
        .collect();
    let manifest_path = out.path().join("manifest.tsv");
    std::fs::write(&manifest_path, manifest).unwrap();
    let run = harness
        .java("verify", &keystore)
        .arg(&manifest_path)
        .arg(&signer_cert)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let stdout = String::from_utf8_lossy(&run.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2 * recorded.len(), "every case reported twice");
    let mut wrong = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let case = &recorded[i / 2];
        let f: Vec<&str> = line.splitn(4, '\t').collect();
        assert_eq!(f[1], case.name);
        let as_expected = if case.trusted {
            let mut got: Vec<&str> = f.get(3).unwrap_or(&"").split(',').collect();
            got.sort_unstable();
            f[2] == "ok" && got == ["Body", "Timestamp"]
        } else {
            f[2] == "refused"
        };
        if !as_expected {
            wrong.push(line.to_string());
        }
    }
    assert!(wrong.is_empty(), "not as expected:\n{}", wrong.join("\n"));
}
