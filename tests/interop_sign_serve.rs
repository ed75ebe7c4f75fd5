//! End to end through the running daemon: a signing route in front of a
//! recording receiver, SOAP 1.1 and 1.2, both orders; what the receiver recorded
//! is verified by implementations nobody here wrote — libxmlsec1 (after
//! decrypting) and Apache WSS4J 3 (DOM and streaming, the signer's certificate
//! the one trusted) — and a message signed by a key the receiver does not trust
//! is refused by both, whichever key identifier names it. WS-Addressing headers
//! signed through serve are covered, and the recorded wire bytes, changed by one
//! byte in the Body, the Timestamp or a signed header, are refused by both.
//!
//! Without `mvn` on the PATH the WSS4J half says so and passes (see
//! tests/interop_java.rs).

mod common;

use std::path::{Path, PathBuf};

use bytes::Bytes;
use common::java::{harness, receiver_keystore};
use common::net::{Daemon, Receiver};
use common::{CertSpec, TestReceiver};
use http::Request;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};

const SOAP11: &str = r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><m:order xmlns:m="urn:m">42</m:order></soap:Body></soap:Envelope>"#;
const SOAP12: &str = r#"<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope"><env:Body><m:order xmlns:m="urn:m">42</m:order></env:Body></env:Envelope>"#;
const SOAP11_WSA: &str = r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" xmlns:wsa="http://www.w3.org/2005/08/addressing"><soap:Header><wsa:To>http://orders.example/service</wsa:To><wsa:Action>urn:submit</wsa:Action><wsa:MessageID>urn:uuid:6b1c0a52-4e0f-4f8e-9a55-0c2b9e3a1d11</wsa:MessageID></soap:Header><soap:Body><m:order xmlns:m="urn:m">42</m:order></soap:Body></soap:Envelope>"#;
const SOAP12_WSA: &str = r#"<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope"><env:Header><wsa:To xmlns:wsa="http://www.w3.org/2005/08/addressing">http://orders.example/service</wsa:To><wsa:Action xmlns:wsa="http://www.w3.org/2005/08/addressing">urn:submit</wsa:Action><wsa:MessageID xmlns:wsa="http://www.w3.org/2005/08/addressing">urn:uuid:0d5f8c3e-7a21-4c55-b1e4-93f0a6c2d8e7</wsa:MessageID></env:Header><env:Body><m:order xmlns:m="urn:m">42</m:order></env:Body></env:Envelope>"#;

/// The plain envelopes, and those with WS-Addressing headers: (version, envelope,
/// content type).
const PLAIN: [(&str, &str, &str); 2] = [
    ("soap11", SOAP11, "text/xml"),
    ("soap12", SOAP12, "application/soap+xml"),
];
const ADDRESSED: [(&str, &str, &str); 2] = [
    ("soap11-wsa", SOAP11_WSA, "text/xml"),
    ("soap12-wsa", SOAP12_WSA, "application/soap+xml"),
];

/// One recorded message: its name, the file it is in, the envelope sent, and
/// what the receivers are to find signed (local names), `None`: refused.
struct Recorded {
    name: String,
    file: PathBuf,
    original: PathBuf,
    order: String,
    signed: Option<Vec<&'static str>>,
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

/// Send `envelopes` through a daemon whose route signs with `key` in `order`
/// (`extra` more route keys); what the receiver got, written under `out`, to be
/// found signed over `signed` (`None`: refused).
async fn through_serve(
    out: &Path,
    envelopes: &[(&str, &'static str, &str)],
    order: &str,
    key: &TestReceiver,
    extra: &str,
    signed: Option<&[&'static str]>,
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
    for &(version, envelope, content_type) in envelopes {
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
        let name = format!(
            "{order} {version} {} {}",
            extra.replace('\n', " "),
            if signed.is_some() {
                "trusted"
            } else {
                "untrusted"
            }
        );
        let n = std::fs::read_dir(out).unwrap().count();
        let file = out.join(format!("m{n}.xml"));
        let original = out.join(format!("o{n}.xml"));
        std::fs::write(&file, &message.raw).unwrap();
        std::fs::write(&original, envelope).unwrap();
        recorded.push(Recorded {
            name,
            file,
            original,
            order: order.to_string(),
            signed: signed.map(<[&str]>::to_vec),
        });
    }
    recorded
}

/// The parts signed by default.
const BODY_AND_TIMESTAMP: &[&str] = &["Body", "Timestamp"];

#[tokio::test]
async fn signed_through_serve_verified_by_libxmlsec1_and_wss4j() {
    let out = tempfile::tempdir().unwrap();
    let files = out.path().join("messages");
    std::fs::create_dir_all(&files).unwrap();
    let mut recorded = Vec::new();
    let trusted = Some(BODY_AND_TIMESTAMP);
    for order in ["sign-then-encrypt", "encrypt-then-sign"] {
        for extra in ["", "signature_key_identifier = \"issuer-serial\""] {
            let signer = common::signer();
            recorded.extend(through_serve(&files, &PLAIN, order, signer, extra, trusted).await);
        }
    }
    let stranger = stranger();
    recorded.extend(through_serve(&files, &PLAIN, "sign-then-encrypt", stranger, "", None).await);
    verify_by_both(out.path(), &recorded);
}

/// The signature's KeyInfo as a Subject Key Identifier or a thumbprint: the
/// receivers find the signer's certificate among those they trust (a stranger's
/// is not there), and the WS-Addressing headers `sign_parts` names are signed,
/// both orders. Then the recorded wire bytes are changed by one byte, and the
/// receivers refuse each.
#[tokio::test]
async fn key_identifiers_addressing_and_tampering_through_serve() {
    let out = tempfile::tempdir().unwrap();
    let files = out.path().join("messages");
    std::fs::create_dir_all(&files).unwrap();
    let (signer, stranger) = (common::signer(), stranger());
    let mut recorded = Vec::new();
    for ki in ["ski", "thumbprint"] {
        let extra = format!("signature_key_identifier = \"{ki}\"");
        for order in ["sign-then-encrypt", "encrypt-then-sign"] {
            let trusted = Some(BODY_AND_TIMESTAMP);
            recorded.extend(through_serve(&files, &PLAIN, order, signer, &extra, trusted).await);
        }
        let order = "sign-then-encrypt";
        recorded.extend(through_serve(&files, &PLAIN, order, stranger, &extra, None).await);
    }
    let parts = "sign_parts = [\"Body\", \"Timestamp\", \"To\", \"Action\", \"MessageID\"]";
    let addressed: &[&str] = &["Body", "Timestamp", "To", "Action", "MessageID"];
    let mut untouched = Vec::new();
    for order in ["sign-then-encrypt", "encrypt-then-sign"] {
        let got = through_serve(&files, &ADDRESSED, order, signer, parts, Some(addressed)).await;
        untouched.extend(got.iter().map(|r| {
            (
                r.file.clone(),
                r.original.clone(),
                r.name.clone(),
                r.order.clone(),
            )
        }));
        recorded.extend(got);
    }

    // One byte changed in what the signature covers, as it is on the wire. The
    // routes always encrypt the Body (a route that signs encrypts), so the Body is
    // tampered after encrypt-then-sign only (see common::tampered_copies).
    for (file, original, name, order) in untouched {
        let bytes = std::fs::read(&file).unwrap();
        let changes = common::tampered_copies(&bytes, order == "encrypt-then-sign");
        for (what, tampered) in changes {
            let n = std::fs::read_dir(&files).unwrap().count();
            let file = files.join(format!("t{n}.xml"));
            std::fs::write(&file, tampered).unwrap();
            recorded.push(Recorded {
                name: format!("{name} tampered {what}"),
                file,
                original: original.clone(),
                order: order.clone(),
                signed: None,
            });
        }
    }
    assert_eq!(
        recorded
            .iter()
            .filter(|r| r.name.contains("tampered"))
            .count(),
        // Four addressed messages, three places each; the Body in the two
        // encrypted before signing.
        4 * 3 + 2
    );
    verify_by_both(out.path(), &recorded);
}

/// libxmlsec1 and WSS4J 3 (DOM and streaming) each verify every recorded
/// message, trusting the signer's certificate only: what is to be accepted
/// verifies with exactly the parts expected signed, the rest is refused.
fn verify_by_both(out: &Path, recorded: &[Recorded]) {
    // libxmlsec1: decrypt, then verify against the signer's certificate (or the
    // other way round after encrypt-then-sign).
    let (rx_key, _, _) = common::receiver().write_to(out, "rx");
    let (_, signer_cert, _) = common::signer().write_to(out, "signer");
    let cases: Vec<Value> = recorded
        .iter()
        .map(|r| json!({"name": r.name, "signed": r.file, "cert": signer_cert, "key": rx_key, "order": r.order}))
        .collect();
    let manifest = out.join("xmlsec.json");
    std::fs::write(&manifest, serde_json::to_vec(&cases).unwrap()).unwrap();
    let results =
        common::run_interop_script("xmlsec_interop.py", &["verify", manifest.to_str().unwrap()]);
    let results = results.as_array().unwrap();
    assert_eq!(results.len(), recorded.len());
    let mut wrong = Vec::new();
    for (r, case) in results.iter().zip(recorded) {
        let as_expected = match &case.signed {
            Some(want) => r["ok"] == json!(true) && r["signed"] == json!(want),
            // Refused for the signature, not for a broken message or a key.
            None => r["error"]
                .as_str()
                .is_some_and(|e| e.starts_with("VerificationError")),
        };
        if !as_expected {
            wrong.push(format!("libxmlsec1 {}: {r}", case.name));
        }
    }

    // WSS4J 3, DOM and streaming, trusting the signer's certificate only.
    if let Some(harness) = harness() {
        let keystore = receiver_keystore(out);
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
        let manifest_path = out.join("manifest.tsv");
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
        wrong.extend(
            common::java::unexpected_verdicts(
                &stdout,
                recorded
                    .iter()
                    .map(|c| (c.name.as_str(), c.signed.as_deref())),
            )
            .into_iter()
            .map(|line| format!("WSS4J {line}")),
        );
    }
    assert!(
        wrong.is_empty(),
        "{} not as expected:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    let refused = recorded.iter().filter(|r| r.signed.is_none()).count();
    eprintln!(
        "libxmlsec1 and WSS4J 3: {} recorded messages verified, {refused} refused, as expected",
        recorded.len() - refused
    );
}
