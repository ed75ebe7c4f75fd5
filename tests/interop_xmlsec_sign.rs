//! libxmlsec1 (Debian's python3-xmlsec), an implementation nobody here wrote,
//! verifies the engine's signatures: SignatureValue and every Reference, after
//! decrypting what the EncryptedKey lists, for SOAP 1.1 and 1.2, every order,
//! every signature and digest algorithm and every key identifier; and it rejects
//! the messages once a wire byte of the Body, the Timestamp or a signed
//! WS-Addressing header is changed.

mod common;

use serde_json::{Value, json};
use wssgate::wss::{
    self, DigestAlgorithm, EncryptOptions, KeyIdentifier, SignPart, SignPlan, SignatureAlgorithm,
};

fn plan(
    sa: SignatureAlgorithm,
    da: DigestAlgorithm,
    ki: KeyIdentifier,
    order: Option<wss::SignOrder>,
    encrypt_signature: bool,
) -> SignPlan {
    SignPlan {
        signature_algorithm: sa,
        digest_algorithm: da,
        key_identifier: ki,
        parts: vec![
            SignPart::Body,
            SignPart::Timestamp,
            SignPart::Addressing("To".into()),
            SignPart::Addressing("Action".into()),
        ],
        order: order.unwrap_or(wss::SignOrder::SignThenEncrypt),
        encrypt_signature,
        ..SignPlan::default()
    }
}

fn envelopes() -> Vec<(&'static str, std::path::PathBuf)> {
    let d = common::data_dir().join("soap");
    vec![
        ("soap11", d.join("node-soap__multiCall_xsi_type.xml")),
        ("soap12", d.join("axiom__xsi-type.xml")),
        ("soap11-wsa", d.join("cxf__greetMeWSAReq.xml")),
        ("soap12-wsa", d.join("axiom__wsa.xml")),
    ]
}

fn run_verify(cases: &[Value], dir: &std::path::Path, name: &str) -> Vec<Value> {
    let manifest = dir.join(format!("{name}.json"));
    std::fs::write(&manifest, serde_json::to_vec(cases).unwrap()).unwrap();
    let results =
        common::run_interop_script("xmlsec_interop.py", &["verify", manifest.to_str().unwrap()]);
    let results = results.as_array().unwrap().clone();
    assert_eq!(results.len(), cases.len(), "every case reported");
    results
}

#[test]
fn libxmlsec1_verifies_every_combination_and_rejects_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = common::receiver();
    let (rx_key, _, _) = receiver.write_to(dir.path(), "rx");
    let (_, signer_cert, _) = common::signer().write_to(dir.path(), "signer");
    let recipient = receiver.recipient();
    let key = common::signing_key();
    let options = EncryptOptions::default();
    let algorithms = [
        (SignatureAlgorithm::RsaSha256, DigestAlgorithm::Sha256),
        (SignatureAlgorithm::RsaSha1, DigestAlgorithm::Sha1),
        (SignatureAlgorithm::RsaSha512, DigestAlgorithm::Sha512),
    ];
    let mut good = Vec::new();
    let mut tampered = Vec::new();
    for (version, path) in envelopes() {
        let input = std::fs::read(&path).unwrap();
        for (order_name, order, encrypt_signature) in common::sign_orders() {
            for (sa, da) in algorithms {
                for ki in KeyIdentifier::ALL {
                    let plan = plan(sa, da, *ki, order, encrypt_signature);
                    let rx = order.map(|_| &recipient);
                    let signed = wss::sign_envelope(&input[..], &key, &plan, rx, &options)
                        .unwrap_or_else(|e| panic!("{version} {order_name}: {e}"));
                    let name = format!("{version} {order_name} {sa} {da} {ki}");
                    let file = dir.path().join(format!("s{}.xml", good.len()));
                    std::fs::write(&file, &signed.bytes).unwrap();
                    let key_path = order.map(|_| rx_key.clone());
                    good.push(json!({"name": name, "signed": file, "cert": signer_cert, "key": key_path, "order": order_name}));
                    // Tamper once per envelope and order: the Body (plaintext, or
                    // its CipherValue once encrypted), the Timestamp, a signed header.
                    if sa != SignatureAlgorithm::RsaSha256 || *ki != KeyIdentifier::Bst {
                        continue;
                    }
                    let body_marker = if order == Some(wss::SignOrder::SignThenEncrypt) {
                        None // the encrypted Body is not what is signed
                    } else if order.is_some() {
                        Some("<xenc:CipherValue>")
                    } else {
                        Some("Body")
                    };
                    let mut markers = vec![("Timestamp", "<wsu:Expires>")];
                    if let Some(m) = body_marker {
                        // The first element in the Body (or the EncryptedData's
                        // CipherValue after the EncryptedKey's).
                        let marker = if m == "Body" { ":Body" } else { m };
                        markers.push(("Body", marker));
                    }
                    if version.ends_with("wsa") && order != Some(wss::SignOrder::SignThenEncrypt) {
                        markers.push(("To", "To xmlns"));
                    }
                    for (what, marker) in markers {
                        let text = String::from_utf8_lossy(&signed.bytes);
                        // After encryption the EncryptedKey's CipherValue comes
                        // first; the Body's EncryptedData is the last one.
                        let at = if marker == "<xenc:CipherValue>" {
                            text.rfind(marker)
                        } else {
                            text.find(marker)
                        };
                        let Some(at) = at else {
                            panic!("{name}: no {marker} to tamper with");
                        };
                        let mut bytes = signed.bytes.clone();
                        let Some(changed) = common::tamper_after(&bytes[at..], marker) else {
                            panic!("{name}: nothing to change after {marker}");
                        };
                        bytes.truncate(at);
                        bytes.extend_from_slice(&changed);
                        let file = dir.path().join(format!("t{}.xml", tampered.len()));
                        std::fs::write(&file, &bytes).unwrap();
                        tampered.push(json!({"name": format!("{name} tampered {what}"), "signed": file, "cert": signer_cert, "key": order.map(|_| rx_key.clone()), "order": order_name}));
                    }
                }
            }
        }
    }
    assert_eq!(good.len(), 4 * 4 * 3 * 4);
    let results = run_verify(&good, dir.path(), "good");
    let failures: Vec<&Value> = results.iter().filter(|r| r["ok"] != json!(true)).collect();
    assert!(
        failures.is_empty(),
        "{} failed: {failures:#?}",
        failures.len()
    );
    for (case, result) in good.iter().zip(&results) {
        let signed: Vec<&str> = result["signed"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let name = case["name"].as_str().unwrap();
        let mut want = vec!["Body", "Timestamp"];
        if name.contains("-wsa") {
            want.extend(["To", "Action"]);
        }
        assert_eq!(signed, want, "{name}");
    }
    assert!(tampered.len() >= 20, "{}", tampered.len());
    let results = run_verify(&tampered, dir.path(), "tampered");
    let accepted: Vec<&Value> = results.iter().filter(|r| r["ok"] == json!(true)).collect();
    assert!(
        accepted.is_empty(),
        "tampered messages accepted: {accepted:#?}"
    );
    // Refused for the signature, not for anything else (a parse error, a key).
    for r in &results {
        let error = r["error"].as_str().unwrap_or_default();
        assert!(error.starts_with("VerificationError"), "{r:#}");
    }
}

/// Corpus envelopes that cannot be signed as asked: their Security header
/// already holds a Timestamp (one per header), or, to be encrypted too, their
/// Body is empty.
fn corpus_refusal(name: &str, input: &[u8], encrypted: bool, error: &wss::SignError) -> bool {
    let has_timestamp = input.windows(10).any(|w| w == b"Timestamp>");
    match error {
        wss::SignError::TimestampPresent => has_timestamp,
        wss::SignError::Encrypt(wss::EncryptError::EmptyBody) => {
            encrypted
                && [
                    "cxf__wsrm-Message1.xml",
                    "wss4j__SignaturePrefixListMessage.xml",
                ]
                .contains(&name)
        }
        _ => false,
    }
}

#[test]
fn libxmlsec1_verifies_signatures_on_the_whole_corpus() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = common::receiver();
    let (rx_key, _, _) = receiver.write_to(dir.path(), "rx");
    let (_, signer_cert, _) = common::signer().write_to(dir.path(), "signer");
    let recipient = receiver.recipient();
    let key = common::signing_key();
    let mut cases = Vec::new();
    let mut refused = Vec::new();
    for path in common::corpus_files() {
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let input = std::fs::read(&path).unwrap();
        for encrypted in [false, true] {
            let rx = encrypted.then_some(&recipient);
            let plan = SignPlan::default();
            match wss::sign_to_vec(&input, &key, &plan, rx, &EncryptOptions::default()) {
                Ok(signed) => {
                    let file = dir.path().join(format!("c{}.xml", cases.len()));
                    std::fs::write(&file, &signed.bytes).unwrap();
                    cases.push(json!({
                        "name": format!("{name} encrypted:{encrypted}"),
                        "signed": file, "cert": signer_cert,
                        "key": encrypted.then(|| rx_key.clone()),
                        "order": "sign-then-encrypt",
                        "signature_id": signed.summary.signature_id,
                    }));
                }
                Err(e) if corpus_refusal(&name, &input, encrypted, &e) => {
                    refused.push(name.clone())
                }
                Err(e) => panic!("{name} encrypted:{encrypted}: {e}"),
            }
        }
    }
    assert!(
        cases.len() >= 70,
        "{} signed, refused: {refused:?}",
        cases.len()
    );
    let results = run_verify(&cases, dir.path(), "corpus");
    let failures: Vec<&Value> = results.iter().filter(|r| r["ok"] != json!(true)).collect();
    assert!(
        failures.is_empty(),
        "{} failed: {failures:#?}",
        failures.len()
    );
}
