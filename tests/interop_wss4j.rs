//! Interop with Apache WSS4J, the engine behind CXF and SAP Cloud Integration
//! (Debian's libwss4j-java 1.6.19 with Santuario 2.1): a WSS4J receiver processes the
//! Security header of wssgate's output and must find the original Body.
//!
//! WSS4J 1.6 predates XML Encryption 1.1's `rsa-oaep`; that transport is checked by
//! libxmlsec1 (tests/interop_xmlsec.rs) and WSS4J 3 (tests/interop_java.rs), the others
//! by all three. `rsa-oaep-mgf1p` with a SHA-256 DigestMethod and the WCF form of the
//! issuer are read by WSS4J 1.6 as well.

mod common;

use std::path::Path;
use std::process::Command;

use wssgate::wss::{
    self, Algorithms, DataEncryption, EncryptOptions, IssuerNameFormat, KeyIdentifier,
    KeyTransport, OaepDigest,
};

const CLASSPATH: [&str; 5] = [
    "/usr/share/java/wss4j.jar",
    "/usr/share/java/xmlsec.jar",
    "/usr/share/java/commons-logging.jar",
    "/usr/share/java/slf4j-api.jar",
    "/usr/share/java/slf4j-nop.jar",
];

/// Every key identifier, and issuer-serial in the WCF form too (WSS4J reads quoted values).
fn key_identifiers() -> Vec<(KeyIdentifier, IssuerNameFormat)> {
    let mut v: Vec<_> = KeyIdentifier::ALL
        .iter()
        .map(|k| (*k, IssuerNameFormat::Rfc2253))
        .collect();
    v.push((KeyIdentifier::IssuerSerial, IssuerNameFormat::Wcf));
    v
}

/// Compile the receivers of tests/interop into `dir`; the classpath to run them.
fn compile(dir: &Path) -> String {
    for jar in CLASSPATH {
        assert!(
            Path::new(jar).exists(),
            "{jar} missing: install libwss4j-java (scripts/install-test-deps)"
        );
    }
    let classpath = CLASSPATH.join(":");
    let sources = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop");
    let javac = Command::new("javac")
        .args(["-d", dir.to_str().unwrap(), "-cp", &classpath])
        .arg(sources.join("Wss4jDecrypt.java"))
        .arg(sources.join("Wss4j16Verify.java"))
        .output()
        .expect("javac (a JDK) is needed for the WSS4J interop test");
    assert!(
        javac.status.success(),
        "{}",
        String::from_utf8_lossy(&javac.stderr)
    );
    format!("{}:{classpath}", dir.display())
}

#[test]
fn wss4j_decrypts_every_supported_combination() {
    let dir = tempfile::tempdir().unwrap();
    let classpath = compile(dir.path());

    let rx = common::receiver();
    let p12 = openssl::pkcs12::Pkcs12::builder()
        .name("receiver")
        .pkey(&rx.key)
        .cert(&rx.cert)
        .build2("changeit")
        .unwrap();
    let keystore = dir.path().join("receiver.p12");
    std::fs::write(&keystore, p12.to_der().unwrap()).unwrap();

    // A message with a Security header already holding a fresh Timestamp (the
    // corpus ones have long expired, and WSS4J rightly refuses them): the key must
    // go into that header, and WSS4J must accept both.
    let now = std::time::SystemTime::now();
    let fresh = dir.path().join("with-timestamp.xml");
    std::fs::write(
        &fresh,
        format!(
            r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Header><wsse:Security xmlns:wsse="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd" xmlns:wsu="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd" soap:mustUnderstand="1"><wsu:Timestamp wsu:Id="TS-1"><wsu:Created>{}</wsu:Created><wsu:Expires>{}</wsu:Expires></wsu:Timestamp></wsse:Security></soap:Header><soap:Body><ord:submit xmlns:ord="urn:orders" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="ord:Order"><ord:id>42</ord:id></ord:submit></soap:Body></soap:Envelope>"#,
            humantime::format_rfc3339_seconds(now),
            humantime::format_rfc3339_seconds(now + std::time::Duration::from_secs(600)),
        ),
    )
    .unwrap();
    let originals = [
        common::data_dir().join("soap/cxf__greetMeWSAReq.xml"),
        common::data_dir().join("soap/wss4j__plain-soap-1.2.xml"),
        fresh,
    ];
    let mut manifest = String::new();
    let mut n = 0;
    for original in &originals {
        let input = std::fs::read(original).unwrap();
        for (key_identifier, issuer_name_format) in key_identifiers() {
            for data_encryption in DataEncryption::ALL {
                for (key_transport, oaep_digest) in [
                    (KeyTransport::RsaOaepMgf1p, OaepDigest::Sha1),
                    (KeyTransport::RsaOaepMgf1p, OaepDigest::Sha256),
                    (KeyTransport::Rsa15, OaepDigest::Sha1),
                ] {
                    let algorithms = Algorithms {
                        key_identifier,
                        data_encryption: *data_encryption,
                        key_transport,
                        issuer_name_format,
                        oaep_digest,
                    };
                    let options = EncryptOptions {
                        algorithms,
                        ..EncryptOptions::default()
                    };
                    let (out, _) = wss::encrypt_to_vec(&input, &rx.recipient(), &options).unwrap();
                    let path = dir.path().join(format!("m{n}.xml"));
                    std::fs::write(&path, out).unwrap();
                    let name = format!(
                        "{} {algorithms}",
                        original.file_name().unwrap().to_str().unwrap()
                    );
                    manifest.push_str(&format!(
                        "{name}\t{}\t{}\n",
                        path.display(),
                        original.display()
                    ));
                    n += 1;
                }
            }
        }
    }
    let manifest_path = dir.path().join("manifest.tsv");
    std::fs::write(&manifest_path, manifest).unwrap();
    let run = Command::new("java")
        .arg("-cp")
        .arg(&classpath)
        .arg("Wss4jDecrypt")
        .arg(&keystore)
        .arg("changeit")
        .arg(&manifest_path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let failures: Vec<&str> = stdout.lines().filter(|l| !l.starts_with("ok\t")).collect();
    assert!(
        failures.is_empty(),
        "{} of {n} rejected by WSS4J:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(stdout.lines().count(), n, "every case reported");
}

/// WSS4J 1.6 verifies what the engine signs, with the signer's certificate as the
/// trusted one: SOAP 1.1 and 1.2, every order, every key identifier for the
/// signature (the encryption ones are covered above), RSA-SHA1/256/512; a
/// tampered Body or Timestamp and an untrusted signer are refused.
#[test]
fn wss4j_verifies_signed_messages() {
    use wssgate::wss::{DigestAlgorithm, SignPlan, SignatureAlgorithm};
    let dir = tempfile::tempdir().unwrap();
    let classpath = compile(dir.path());
    let rx = common::receiver();
    let p12 = openssl::pkcs12::Pkcs12::builder()
        .name("receiver")
        .pkey(&rx.key)
        .cert(&rx.cert)
        .build2("changeit")
        .unwrap();
    let keystore = dir.path().join("receiver.p12");
    std::fs::write(&keystore, p12.to_der().unwrap()).unwrap();
    let (_, signer_cert, _) = common::signer().write_to(dir.path(), "signer");
    let key = common::signing_key();
    let stranger = common::TestReceiver::new(&common::CertSpec {
        common_name: "not trusted".into(),
        ..common::CertSpec::default()
    });
    let stranger = wss::SigningKey::new(stranger.key.clone(), stranger.cert.clone()).unwrap();
    let originals = [
        common::data_dir().join("soap/node-soap__multiCall_xsi_type.xml"),
        common::data_dir().join("soap/axiom__xsi-type.xml"),
    ];
    // (name, file, original, accepted)
    let mut cases = Vec::new();
    let mut write = |name: String, bytes: &[u8], original: &Path, accepted: bool| {
        let path = dir.path().join(format!("s{}.xml", cases.len()));
        std::fs::write(&path, bytes).unwrap();
        cases.push((name, path, original.to_path_buf(), accepted));
    };
    for original in &originals {
        let input = std::fs::read(original).unwrap();
        let file = original.file_name().unwrap().to_str().unwrap();
        for (order_name, order, encrypt_signature) in common::sign_orders() {
            for ki in KeyIdentifier::ALL {
                for (sa, da) in [
                    (SignatureAlgorithm::RsaSha256, DigestAlgorithm::Sha256),
                    (SignatureAlgorithm::RsaSha1, DigestAlgorithm::Sha1),
                    (SignatureAlgorithm::RsaSha512, DigestAlgorithm::Sha512),
                ] {
                    let plan = SignPlan {
                        signature_algorithm: sa,
                        digest_algorithm: da,
                        key_identifier: *ki,
                        order: order.unwrap_or(wss::SignOrder::SignThenEncrypt),
                        encrypt_signature,
                        ..SignPlan::default()
                    };
                    let recipient = rx.recipient();
                    let target = order.map(|_| &recipient);
                    let options = EncryptOptions::default();
                    let signed =
                        wss::sign_envelope(&input[..], &key, &plan, target, &options).unwrap();
                    let name = format!("{file} {order_name} {ki} {sa} {da}");
                    write(name.clone(), &signed.bytes, original, true);
                    if sa != SignatureAlgorithm::RsaSha256 {
                        continue;
                    }
                    let text = String::from_utf8_lossy(&signed.bytes).into_owned();
                    let at = text.find("<wsu:Expires>").unwrap();
                    let mut bytes = signed.bytes[..at].to_vec();
                    bytes.extend(common::tamper_after(&signed.bytes[at..], "<wsu:").unwrap());
                    write(
                        format!("{name} tampered Timestamp"),
                        &bytes,
                        original,
                        false,
                    );
                    if order.is_none() {
                        let at = text.find(":Body ").unwrap();
                        let mut bytes = signed.bytes[..at].to_vec();
                        bytes.extend(common::tamper_after(&signed.bytes[at..], ":Body").unwrap());
                        write(format!("{name} tampered Body"), &bytes, original, false);
                    }
                    let signed =
                        wss::sign_envelope(&input[..], &stranger, &plan, target, &options).unwrap();
                    write(
                        format!("{name} untrusted signer"),
                        &signed.bytes,
                        original,
                        false,
                    );
                }
            }
        }
    }
    let manifest: String = cases
        .iter()
        .map(|(name, file, original, _)| {
            format!("{name}\t{}\t{}\n", file.display(), original.display())
        })
        .collect();
    let manifest_path = dir.path().join("manifest.tsv");
    std::fs::write(&manifest_path, manifest).unwrap();
    let run = Command::new("java")
        .arg("-cp")
        .arg(&classpath)
        .arg("Wss4j16Verify")
        .arg(&keystore)
        .arg("changeit")
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
    assert_eq!(lines.len(), cases.len(), "every case reported");
    let mut wrong = Vec::new();
    for ((name, _, _, accepted), line) in cases.iter().zip(&lines) {
        let f: Vec<&str> = line.splitn(3, '\t').collect();
        assert_eq!(f[1], name);
        let ok = if *accepted {
            f[0] == "ok" && f[2] == "Body,Timestamp"
        } else {
            f[0] == "refused"
        };
        if !ok {
            wrong.push(*line);
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} not as expected:\n{}",
        wrong.len(),
        lines.len(),
        wrong.join("\n")
    );
}
