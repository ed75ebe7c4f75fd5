//! Apache WSS4J 3, nobody here wrote it, verifies what the engine signs: its DOM
//! `WSSecurityEngine` and its streaming `InboundWSSec`, the Basic Security Profile
//! enforced, with the signer's certificate as the one trusted certificate, check the
//! signature (and the trust in the certificate it names), the Timestamp, and decrypt;
//! SOAP 1.1 and 1.2, every order, every key identifier for the signature and for
//! the encryption, every signature algorithm. Tampered wire bytes in the Body, the
//! Timestamp or a signed WS-Addressing header are refused by both.
//!
//! Without `mvn` on the PATH the test says so and passes (see tests/interop_java.rs).

mod common;

use std::path::{Path, PathBuf};

use common::java::{harness, receiver_keystore};
use wssgate::wss::{
    self, Algorithms, DigestAlgorithm, EncryptOptions, KeyIdentifier, Profile, SignOrder, SignPart,
    SignPlan, SignatureAlgorithm,
};

struct Case {
    name: String,
    file: PathBuf,
    original: PathBuf,
    /// What the signature must cover (local names, SignedInfo order); `None`:
    /// refused.
    signed: Option<Vec<&'static str>>,
}

#[test]
fn wss4j3_dom_and_streaming_verify_signatures_and_refuse_tampering() {
    let Some(harness) = harness() else { return };
    let dir = tempfile::tempdir().unwrap();
    let keystore = receiver_keystore(dir.path());
    let (_, signer_cert, _) = common::signer().write_to(dir.path(), "signer");
    let recipient = common::receiver().recipient();
    let key = common::signing_key();
    let d = common::data_dir().join("soap");
    let envelopes = [
        ("soap11", d.join("node-soap__multiCall_xsi_type.xml"), false),
        ("soap12", d.join("axiom__xsi-type.xml"), false),
        ("soap11-wsa", d.join("cxf__greetMeWSAReq.xml"), true),
        ("soap12-wsa", d.join("axiom__wsa.xml"), true),
    ];
    let mut cases: Vec<Case> = Vec::new();
    let mut add = |name: String, bytes: &[u8], original: &Path, signed| {
        let file = dir.path().join(format!("c{}.xml", cases.len()));
        std::fs::write(&file, bytes).unwrap();
        cases.push(Case {
            name,
            file,
            original: original.to_path_buf(),
            signed,
        });
    };
    for (version, original, wsa) in &envelopes {
        let input = std::fs::read(original).unwrap();
        let mut parts = vec![SignPart::Body, SignPart::Timestamp];
        let mut want = vec!["Body", "Timestamp"];
        if *wsa {
            parts.extend([
                SignPart::Addressing("To".into()),
                SignPart::Addressing("Action".into()),
            ]);
            want.extend(["To", "Action"]);
        }
        for (order_name, order, encrypt_signature) in common::sign_orders() {
            for signature_ki in KeyIdentifier::ALL {
                // Every encryption key identifier with each signature one (the
                // plain envelope has none).
                let encryption_kis: &[KeyIdentifier] = if order.is_some() {
                    KeyIdentifier::ALL
                } else {
                    &[KeyIdentifier::IssuerSerial]
                };
                for encryption_ki in encryption_kis {
                    let plan = SignPlan {
                        key_identifier: *signature_ki,
                        parts: parts.clone(),
                        order: order.unwrap_or(SignOrder::SignThenEncrypt),
                        encrypt_signature,
                        ..SignPlan::default()
                    };
                    let options = EncryptOptions {
                        algorithms: Algorithms {
                            key_identifier: *encryption_ki,
                            ..Profile::Basic256Sha256.algorithms()
                        },
                        ..EncryptOptions::default()
                    };
                    let rx = order.map(|_| &recipient);
                    let signed = wss::sign_envelope(&input[..], &key, &plan, rx, &options)
                        .unwrap_or_else(|e| panic!("{version} {order_name}: {e}"));
                    let name = format!(
                        "{version} {order_name} signature:{signature_ki} encryption:{encryption_ki}"
                    );
                    add(name.clone(), &signed.bytes, original, Some(want.clone()));
                    if *signature_ki != KeyIdentifier::Bst
                        || *encryption_ki != KeyIdentifier::IssuerSerial
                    {
                        continue;
                    }
                    // Tampered wire bytes: the Timestamp always; the Body when
                    // what is signed is on the wire as is (its CipherValue after
                    // encrypt-then-sign); a signed header.
                    let text = String::from_utf8_lossy(&signed.bytes).into_owned();
                    let mut markers = vec![("Timestamp", text.find("<wsu:Expires>"))];
                    match order {
                        None => markers.push(("Body", text.find(":Body "))),
                        Some(SignOrder::EncryptThenSign) => {
                            markers.push(("Body", text.rfind("<xenc:CipherValue>")))
                        }
                        Some(SignOrder::SignThenEncrypt) => {}
                    }
                    if *wsa {
                        markers.push(("To", text.find("To xmlns")));
                    }
                    for (what, at) in markers {
                        let at = at.unwrap_or_else(|| panic!("{name}: no {what}"));
                        let changed = common::tamper_after(&signed.bytes[at..], &text[at..at + 4])
                            .unwrap_or_else(|| panic!("{name}: nothing to tamper in {what}"));
                        let mut bytes = signed.bytes[..at].to_vec();
                        bytes.extend_from_slice(&changed);
                        add(format!("{name} tampered {what}"), &bytes, original, None);
                    }
                }
            }
        }
        // The other signature algorithms, with the profiles that name them.
        for (sa, da, profile) in [
            (
                SignatureAlgorithm::RsaSha1,
                DigestAlgorithm::Sha1,
                Profile::WcfBasic256Sign,
            ),
            (
                SignatureAlgorithm::RsaSha512,
                DigestAlgorithm::Sha512,
                Profile::Basic256Sha256,
            ),
            (
                SignatureAlgorithm::RsaSha256,
                DigestAlgorithm::Sha256,
                Profile::Basic256Sha256,
            ),
        ] {
            let plan = SignPlan {
                signature_algorithm: sa,
                digest_algorithm: da,
                parts: parts.clone(),
                ..SignPlan::for_profile(profile)
            };
            let options = EncryptOptions {
                algorithms: profile.algorithms(),
                ..EncryptOptions::default()
            };
            let signed =
                wss::sign_envelope(&input[..], &key, &plan, Some(&recipient), &options).unwrap();
            add(
                format!("{version} profile {profile} {sa} {da}"),
                &signed.bytes,
                original,
                Some(want.clone()),
            );
        }
    }
    // Signed by a key the receivers do not trust: refused, whichever way the
    // certificate is named (carried in a token, or looked up and not found).
    let stranger = common::TestReceiver::new(&common::CertSpec {
        common_name: "not trusted".into(),
        serial: 666,
        ..common::CertSpec::default()
    });
    let stranger = wss::SigningKey::new(stranger.key.clone(), stranger.cert.clone()).unwrap();
    let (_, original, _) = &envelopes[0];
    let input = std::fs::read(original).unwrap();
    for ki in KeyIdentifier::ALL {
        let plan = SignPlan {
            key_identifier: *ki,
            ..SignPlan::default()
        };
        let signed = wss::sign_envelope(
            &input[..],
            &stranger,
            &plan,
            Some(&recipient),
            &EncryptOptions::default(),
        )
        .unwrap();
        add(
            format!("untrusted signer {ki}"),
            &signed.bytes,
            original,
            None,
        );
    }

    let manifest: String = cases
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
    let manifest_path = dir.path().join("manifest.tsv");
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
    let wrong = common::java::unexpected_verdicts(
        &stdout,
        cases.iter().map(|c| (c.name.as_str(), c.signed.as_deref())),
    );
    assert!(
        wrong.is_empty(),
        "{} of {} not as expected:\n{}",
        wrong.len(),
        2 * cases.len(),
        wrong.join("\n")
    );
    let tampered = cases.iter().filter(|c| c.signed.is_none()).count();
    eprintln!(
        "WSS4J 3 DOM and StAX: {} signed cases verified and {tampered} tampered ones refused, each",
        cases.len() - tampered
    );
}
