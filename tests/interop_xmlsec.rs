//! Interop with libxmlsec1 (Debian's python3-xmlsec), an implementation nobody here
//! wrote: it decrypts wssgate's output for every algorithm combination and for the
//! real-world corpus, and wssgate decrypts what it encrypts.

mod common;

use std::path::Path;

use serde_json::{Value, json};
use wssgate::wss::{
    self, Algorithms, DataEncryption, EncryptOptions, IssuerNameFormat, KeyIdentifier,
    KeyTransport, OaepDigest, Profile,
};

fn assert_all_ok(results: &Value, expected: usize) {
    let list = results.as_array().expect("a list");
    let failures: Vec<&Value> = list.iter().filter(|r| r["ok"] != json!(true)).collect();
    assert!(
        failures.is_empty(),
        "{} of {} failed: {:#?}",
        failures.len(),
        list.len(),
        failures
    );
    assert_eq!(list.len(), expected, "every case reported");
}

/// Runs `xmlsec_interop.py COMMAND` over `cases`, a manifest written in `dir`:
/// every case must be reported, and ok.
fn libxmlsec1_accepts_all(dir: &Path, command: &str, cases: &[Value]) {
    let manifest = dir.join(format!("{command}.json"));
    std::fs::write(&manifest, serde_json::to_vec(cases).unwrap()).unwrap();
    let results =
        common::run_interop_script("xmlsec_interop.py", &[command, manifest.to_str().unwrap()]);
    assert_all_ok(&results, cases.len());
}

/// Key transports with the OAEP digest each uses.
fn transports() -> Vec<(KeyTransport, OaepDigest)> {
    vec![
        (KeyTransport::RsaOaepMgf1p, OaepDigest::Sha1),
        (KeyTransport::RsaOaepMgf1p, OaepDigest::Sha256),
        (KeyTransport::RsaOaep, OaepDigest::Sha1),
        (KeyTransport::RsaOaep, OaepDigest::Sha256),
        (KeyTransport::RsaOaep, OaepDigest::Sha512),
        (KeyTransport::Rsa15, OaepDigest::Sha1),
    ]
}

#[test]
fn libxmlsec1_decrypts_every_combination() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = common::receiver();
    let (key, _, _) = receiver.write_to(dir.path(), "rx");
    let recipient = receiver.recipient();
    let envelopes = [
        (
            "soap11",
            common::data_dir().join("soap/node-soap__multiCall_xsi_type.xml"),
        ),
        (
            "soap12",
            common::data_dir().join("soap/axiom__xsi-type.xml"),
        ),
    ];
    let mut cases = Vec::new();
    for (version, original) in &envelopes {
        let input = std::fs::read(original).unwrap();
        for key_identifier in KeyIdentifier::ALL {
            for data_encryption in DataEncryption::ALL {
                for (key_transport, oaep_digest) in transports() {
                    let algorithms = Algorithms {
                        key_identifier: *key_identifier,
                        data_encryption: *data_encryption,
                        key_transport,
                        issuer_name_format: IssuerNameFormat::Rfc2253,
                        oaep_digest,
                    };
                    let options = EncryptOptions {
                        algorithms,
                        ..EncryptOptions::default()
                    };
                    let (out, _) = wss::encrypt_to_vec(&input, &recipient, &options).unwrap();
                    let name = format!("{version} {algorithms}");
                    let path = dir.path().join(format!("case-{}.xml", cases.len()));
                    std::fs::write(&path, &out).unwrap();
                    cases.push(json!({
                        "name": name,
                        "encrypted": path,
                        "original": original,
                        "key": key,
                    }));
                }
            }
        }
    }
    assert_eq!(cases.len(), 2 * 4 * 5 * 6);
    libxmlsec1_accepts_all(dir.path(), "decrypt", &cases);
}

/// Corpus files that are not encryptable requests, with the refusal expected.
fn expected_refusal(name: &str) -> Option<&'static str> {
    match name {
        // A Body whose only content is a comment, and an empty Body.
        "cxf__wsrm-Message1.xml" | "wss4j__SignaturePrefixListMessage.xml" => Some("empty-body"),
        _ => None,
    }
}

#[test]
fn libxmlsec1_decrypts_the_real_world_corpus() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = common::receiver();
    let (key, _, _) = receiver.write_to(dir.path(), "rx");
    let recipient = receiver.recipient();
    let mut cases = Vec::new();
    for (i, original) in common::corpus_files().iter().enumerate() {
        let name = original.file_name().unwrap().to_str().unwrap().to_string();
        let input = std::fs::read(original).unwrap();
        for profile in [Profile::Default, Profile::Basic128, Profile::Modern] {
            let options = EncryptOptions {
                algorithms: profile.algorithms(),
                ..EncryptOptions::default()
            };
            match (
                wss::encrypt_to_vec(&input, &recipient, &options),
                expected_refusal(&name),
            ) {
                (Ok((out, _)), None) => {
                    let path = dir.path().join(format!("{i}-{profile}.xml"));
                    std::fs::write(&path, &out).unwrap();
                    // Exactly one Security header, well-formed: our own parser agrees.
                    let (plain, _) = wss::decrypt::decrypt_document(&out, &receiver.key_ring())
                        .unwrap_or_else(|e| panic!("{name}: own decryptor: {e}"));
                    assert!(!plain.is_empty());
                    cases.push(json!({
                        "name": format!("{name} {profile}"),
                        "encrypted": path,
                        "original": original,
                        "key": key,
                    }));
                }
                (Err(e), Some(code)) => assert_eq!(
                    wssgate::proxy::fault::Fault::from_encrypt(&e).code(),
                    code,
                    "{name}: {e}"
                ),
                (Ok(_), Some(code)) => panic!("{name}: expected {code}"),
                (Err(e), None) => panic!("{name}: {e}"),
            }
        }
    }
    assert!(cases.len() >= 70, "most of the corpus is encryptable");
    libxmlsec1_accepts_all(dir.path(), "decrypt", &cases);
}

#[test]
fn wssgate_decrypts_what_libxmlsec1_encrypted() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = common::receiver();
    let (_, cert, _) = receiver.write_to(dir.path(), "rx");
    let originals = [
        common::data_dir().join("soap/node-soap__multiCall_xsi_type.xml"),
        common::data_dir().join("soap/axiom__xsi-type.xml"),
        common::data_dir().join("soap/cxf__greetMeWSAReq.xml"),
    ];
    let mut cases = Vec::new();
    for original in &originals {
        for data in [
            "aes128-cbc",
            "aes256-cbc",
            "aes128-gcm",
            "aes256-gcm",
            "tripledes-cbc",
        ] {
            for transport in ["rsa-oaep-mgf1p", "rsa-1_5"] {
                for reference in ["issuer-serial", "certificate"] {
                    let output = dir.path().join(format!("x{}.xml", cases.len()));
                    cases.push(json!({
                        "name": format!("{} {data} {transport} {reference}", original.file_name().unwrap().to_str().unwrap()),
                        "original": original, "cert": cert, "output": output,
                        "data": data, "transport": transport, "reference": reference,
                    }));
                }
            }
        }
    }
    libxmlsec1_accepts_all(dir.path(), "encrypt", &cases);
    let keys = receiver.key_ring();
    let mut compare = Vec::new();
    for case in &cases {
        let encrypted = std::fs::read(case["output"].as_str().unwrap()).unwrap();
        let (plain, summary) = wss::decrypt::decrypt_document(&encrypted, &keys)
            .unwrap_or_else(|e| panic!("{}: {e}", case["name"]));
        assert_eq!(summary.decrypted, 1);
        let decrypted = Path::new(case["output"].as_str().unwrap()).with_extension("dec.xml");
        std::fs::write(&decrypted, plain).unwrap();
        compare.push(
            json!({"name": case["name"], "original": case["original"], "decrypted": decrypted}),
        );
    }
    assert_eq!(compare.len(), cases.len());
    libxmlsec1_accepts_all(dir.path(), "compare", &compare);
}

#[test]
fn libxmlsec1_decrypts_large_bodies_encrypted_beside_the_scan() {
    // With AES-CBC the Body's blocks are encrypted one at a time between the
    // scanner's tokens, and OpenSSL takes over for large writes, a full queue
    // and the end, chained on from the last block: bodies dense with markup,
    // text-heavy ones, and one large comment cover each hand-over. The content
    // must come out the same in an independent implementation.
    let dir = tempfile::tempdir().unwrap();
    let receiver = common::receiver();
    let (key, _, _) = receiver.write_to(dir.path(), "rx");
    let recipient = receiver.recipient();
    let envelope = |body: String| {
        format!(
            r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soap:Body>{body}</soap:Body></soap:Envelope>"#
        )
    };
    let dense = (0..1800)
        .map(|i| format!(r#"<o:line no="{i}" xsi:type="o:L"><o:sku>SKU-{i:08}</o:sku><o:note>caf&#233; &amp; more</o:note></o:line>"#))
        .collect::<String>();
    let text = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=".repeat(9000);
    let comment = "x".repeat(40_000);
    let bodies = [
        (
            "dense",
            format!(r#"<o:submit xmlns:o="urn:o">{dense}</o:submit>"#),
        ),
        (
            "text",
            format!(r#"<o:doc xmlns:o="urn:o"><o:a>{text}</o:a><o:b>{text}</o:b></o:doc>"#),
        ),
        (
            "comment",
            format!(
                r#"<o:c xmlns:o="urn:o">{dense}<!--{comment}-->{dense}</o:c><o:d xmlns:o="urn:o"/>"#
            ),
        ),
    ];
    let mut cases = Vec::new();
    for (shape, body) in &bodies {
        let input = envelope(body.clone());
        let original = dir.path().join(format!("{shape}.xml"));
        std::fs::write(&original, &input).unwrap();
        for data_encryption in [
            DataEncryption::Aes128Cbc,
            DataEncryption::Aes256Cbc,
            DataEncryption::Aes256Gcm,
        ] {
            let options = EncryptOptions {
                algorithms: Algorithms {
                    data_encryption,
                    ..Profile::Default.algorithms()
                },
                ..EncryptOptions::default()
            };
            // Held in memory, and read as a slow client sends it.
            let (whole, _) = wss::encrypt_to_vec(input.as_bytes(), &recipient, &options).unwrap();
            let mut trickled = Vec::new();
            let reader = common::Trickle {
                data: input.as_bytes(),
                step: 1000,
            };
            wss::encrypt_envelope(reader, &mut trickled, &recipient, &options).unwrap();
            for (how, out) in [("whole", whole), ("trickled", trickled)] {
                let path = dir.path().join(format!("case-{}.xml", cases.len()));
                std::fs::write(&path, &out).unwrap();
                cases.push(json!({
                    "name": format!("{shape} {data_encryption} {how}"),
                    "encrypted": path,
                    "original": original,
                    "key": key,
                }));
            }
        }
    }
    libxmlsec1_accepts_all(dir.path(), "decrypt", &cases);
}
