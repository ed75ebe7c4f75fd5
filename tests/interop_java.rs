//! Interop with the receivers people run today, in their current versions: Apache
//! WSS4J 3 (its DOM `WSSecurityEngine` and its streaming `InboundWSSec`, the Basic
//! Security Profile enforced) and Apache CXF 4 JAX-WS services behind
//! WS-SecurityPolicy, called through a real `wssgate serve`. The receivers live in the
//! Maven project tests/interop/java (versions in its pom.xml); one JVM runs all the
//! cases of a test.
//!
//! Maven resolves the artifacts once into target/interop-java/m2 and works offline
//! after that. Without `mvn` on the PATH the tests say so and pass; CI has it
//! (scripts/install-test-deps).
//!
//! What a receiver refuses by design is asserted as refused, with the reason it gives.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use wssgate::wss::{
    self, Algorithms, DataEncryption, EncryptOptions, IssuerNameFormat, KeyIdentifier,
    KeyTransport, OaepDigest, Profile,
};

use common::gateway::{Gateway, post};
use common::java::{
    CxfServices, PAYLOAD, ServiceKey, envelope, fault_text, harness, manifest_dir, received,
};

fn corpus(name: &str) -> PathBuf {
    manifest_dir().join("tests/data/soap").join(name)
}

fn algorithms(
    key_identifier: KeyIdentifier,
    issuer_name_format: IssuerNameFormat,
    data_encryption: DataEncryption,
    (key_transport, oaep_digest): (KeyTransport, OaepDigest),
) -> Algorithms {
    Algorithms {
        key_identifier,
        issuer_name_format,
        data_encryption,
        key_transport,
        oaep_digest,
    }
}

// ---- WSS4J 3: DOM and streaming receivers ------------------------------------------

/// A SOAP 1.2 request whose Security header holds a Timestamp valid for ten minutes.
fn envelope_with_timestamp() -> String {
    let now = std::time::SystemTime::now();
    format!(
        r#"<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope"><env:Header><wsse:Security xmlns:wsse="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd" xmlns:wsu="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd" env:mustUnderstand="true"><wsu:Timestamp wsu:Id="TS-1"><wsu:Created>{}</wsu:Created><wsu:Expires>{}</wsu:Expires></wsu:Timestamp></wsse:Security></env:Header><env:Body><ord:submit xmlns:ord="urn:orders"><ord:id>42</ord:id></ord:submit></env:Body></env:Envelope>"#,
        humantime::format_rfc3339_seconds(now),
        humantime::format_rfc3339_seconds(now + Duration::from_secs(600)),
    )
}

/// One line of the harness's `decrypt` output.
#[derive(Debug)]
struct Outcome {
    receiver: String,
    name: String,
    result: String,
    reason: String,
}

fn parse_outcomes(stdout: &str) -> Vec<Outcome> {
    stdout
        .lines()
        .map(|line| {
            let mut f = line.splitn(4, '\t');
            let mut next = || f.next().unwrap_or_default().to_string();
            Outcome {
                receiver: next(),
                name: next(),
                result: next(),
                reason: next(),
            }
        })
        .collect()
}

#[test]
fn wss4j3_dom_and_streaming_receivers_decrypt_every_combination() {
    let Some(harness) = harness() else { return };
    let dir = tempfile::tempdir().unwrap();
    let service = ServiceKey::new();
    let keystore = service.write_keystore(dir.path());
    let recipient = service.recipient();
    // The third message already has a Security header with a fresh Timestamp (WSS4J
    // checks it): the key goes into that header, and both must be accepted.
    let with_timestamp = dir.path().join("with-timestamp.xml");
    std::fs::write(&with_timestamp, envelope_with_timestamp()).unwrap();
    let envelopes = [
        ("soap11", corpus("node-soap__multiCall_xsi_type.xml")),
        ("soap12", corpus("axiom__xsi-type.xml")),
        ("soap12+timestamp", with_timestamp),
    ];
    // (name, encrypted, original, refusal expected)
    let mut cases: Vec<(String, PathBuf, PathBuf, Option<Refusal>)> = Vec::new();
    let mut add = |name: String, encrypted: Vec<u8>, original: &Path, refusal| {
        let path = dir.path().join(format!("case-{}.xml", cases.len()));
        std::fs::write(&path, encrypted).unwrap();
        cases.push((name, path, original.to_path_buf(), refusal));
    };
    let identifiers = [
        (KeyIdentifier::IssuerSerial, IssuerNameFormat::Rfc2253),
        (KeyIdentifier::IssuerSerial, IssuerNameFormat::Wcf),
        (KeyIdentifier::Bst, IssuerNameFormat::Rfc2253),
        (KeyIdentifier::Ski, IssuerNameFormat::Rfc2253),
        (KeyIdentifier::Thumbprint, IssuerNameFormat::Rfc2253),
    ];
    let aes = [
        DataEncryption::Aes128Cbc,
        DataEncryption::Aes256Cbc,
        DataEncryption::Aes128Gcm,
        DataEncryption::Aes256Gcm,
    ];
    let transports = [
        (KeyTransport::RsaOaepMgf1p, OaepDigest::Sha1),
        (KeyTransport::RsaOaepMgf1p, OaepDigest::Sha256),
        (KeyTransport::RsaOaep, OaepDigest::Sha1),
        (KeyTransport::RsaOaep, OaepDigest::Sha256),
    ];
    for (version, original) in &envelopes {
        let input = std::fs::read(original).unwrap();
        for (key_identifier, format) in identifiers {
            for data_encryption in aes {
                for transport in transports {
                    let algorithms = algorithms(key_identifier, format, data_encryption, transport);
                    let options = EncryptOptions {
                        algorithms,
                        ..EncryptOptions::default()
                    };
                    let (out, _) = wss::encrypt_to_vec(&input, &recipient, &options).unwrap();
                    add(format!("{version} {algorithms}"), out, original, None);
                }
            }
        }
        // RSA-1.5 is refused by WSS4J 3 by default (the Bleichenbacher attack).
        let legacy = algorithms(
            KeyIdentifier::IssuerSerial,
            IssuerNameFormat::Rfc2253,
            DataEncryption::Aes256Cbc,
            (KeyTransport::Rsa15, OaepDigest::Sha1),
        );
        let options = EncryptOptions {
            algorithms: legacy,
            ..EncryptOptions::default()
        };
        let (out, _) = wss::encrypt_to_vec(&input, &recipient, &options).unwrap();
        add(
            format!("{version} {legacy}"),
            out,
            original,
            Some(Refusal::Rsa15),
        );
    }
    // A large Body dense with markup, whose CBC blocks are encrypted between the
    // scanner's tokens and by OpenSSL where the steps fall behind.
    let large = dir.path().join("large.xml");
    let lines: String = (0..1500)
        .map(|i| format!(r#"<ord:line no="{i}"><ord:sku>SKU-{i:08}</ord:sku><ord:note>caf&#233; &amp; more</ord:note></ord:line>"#))
        .collect();
    std::fs::write(
        &large,
        format!(
            r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><ord:submit xmlns:ord="urn:orders">{lines}<!--{}--></ord:submit></soap:Body></soap:Envelope>"#,
            "x".repeat(20_000)
        ),
    )
    .unwrap();
    let input = std::fs::read(&large).unwrap();
    for data_encryption in [DataEncryption::Aes128Cbc, DataEncryption::Aes256Cbc] {
        let algorithms = algorithms(
            KeyIdentifier::IssuerSerial,
            IssuerNameFormat::Rfc2253,
            data_encryption,
            transports[0],
        );
        let options = EncryptOptions {
            algorithms,
            ..EncryptOptions::default()
        };
        let (out, _) = wss::encrypt_to_vec(&input, &recipient, &options).unwrap();
        add(format!("large {algorithms}"), out, &large, None);
    }
    // Every profile through the command line, as an operator would try one.
    let cert_path = dir.path().join("service.pem");
    std::fs::write(&cert_path, service.cert().to_pem().unwrap()).unwrap();
    for (version, original) in &envelopes {
        for profile in Profile::ALL {
            let mut args: Vec<String> = vec!["--profile".into(), profile.to_string()];
            if *profile == Profile::Basic256Sha256 {
                args.extend(["--oaep-digest".into(), "sha256".into()]);
            }
            if matches!(profile, Profile::WcfBasic256 | Profile::WcfBasic128) {
                args.extend(["--key-id".into(), "issuer-serial".into()]);
            }
            let out = Command::new(env!("CARGO_BIN_EXE_wssgate"))
                .arg("encrypt")
                .arg("--cert")
                .arg(&cert_path)
                .args(&args)
                .arg("-i")
                .arg(original)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            add(
                format!("{version} wssgate encrypt {}", args.join(" ")),
                out.stdout,
                original,
                None,
            );
        }
    }

    let manifest: String = cases
        .iter()
        .map(|(name, enc, orig, _)| format!("{name}\t{}\t{}\n", enc.display(), orig.display()))
        .collect();
    let manifest_path = dir.path().join("manifest.tsv");
    std::fs::write(&manifest_path, manifest).unwrap();
    let run = harness
        .java("decrypt", &keystore)
        .arg(&manifest_path)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let outcomes = parse_outcomes(&String::from_utf8_lossy(&run.stdout));
    assert_eq!(outcomes.len(), 2 * cases.len(), "every case reported twice");
    let mut wrong = Vec::new();
    for (i, o) in outcomes.iter().enumerate() {
        let (name, _, _, refusal) = &cases[i / 2];
        assert_eq!(&o.name, name);
        let as_expected = match refusal {
            None => o.result == "ok",
            Some(r) => o.result == "refused" && o.reason.contains(&r.reason(&o.receiver)),
        };
        if !as_expected {
            wrong.push(format!(
                "{} {}: {} {} (expected {})",
                o.receiver,
                o.name,
                o.result,
                o.reason,
                refusal.map_or("ok".to_string(), |r| format!("refused: {r:?}"))
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} not as expected:\n{}",
        wrong.len(),
        outcomes.len(),
        wrong.join("\n")
    );
    eprintln!(
        "WSS4J 3 DOM and StAX: {} cases each, as expected",
        cases.len()
    );
}

// ---- CXF 4 with WS-SecurityPolicy, through wssgate serve -----------------------------

/// Why a receiver refuses a message by design, as each receiver says it. WSS4J's
/// DOM receiver names the reason only in its log (the harness appends what it logged).
#[derive(Debug, Clone, Copy)]
enum Refusal {
    /// RSA-1.5 key transport, refused by WSS4J 3 unless allowed explicitly.
    Rsa15,
    /// xmlenc11 `rsa-oaep` where the suite names `rsa-oaep-mgf1p`.
    KeyTransport,
    /// Data encryption other than the suite's (GCM under a CBC suite, a key size).
    Encryption(&'static str),
}

impl Refusal {
    fn reason(self, receiver: &str) -> String {
        let dom = receiver == "dom" || receiver.ends_with("/dom");
        match (self, dom) {
            (Refusal::Rsa15, true) => {
                "The Key transport method does not match the requirement".into()
            }
            (Refusal::Rsa15, false) => "A security error was encountered".into(),
            (Refusal::KeyTransport, true) => {
                "The Key transport method does not match the requirement".into()
            }
            (Refusal::KeyTransport, false) => "Asymmetric key wrap algorithm \
                 http://www.w3.org/2009/xmlenc11#rsa-oaep does not meet policy"
                .into(),
            (Refusal::Encryption(_), true) => {
                "The encryption algorithm does not match the requirement".into()
            }
            (Refusal::Encryption(alg), false) => {
                format!("Encryption algorithm {} does not meet policy", alg_uri(alg))
            }
        }
    }
}

fn alg_uri(name: &str) -> &'static str {
    name.parse::<DataEncryption>()
        .expect("a data encryption name")
        .uri()
}

/// What a receiver is expected to do with a message.
#[derive(Debug, Clone, Copy)]
enum Expect {
    Accepted,
    Refused(Refusal),
}

/// One variant of the route's algorithm settings: TOML lines and the outcome.
struct Variant {
    name: &'static str,
    route: &'static str,
    expect: Expect,
}

/// What each policy suite's services must accept and refuse.
fn variants(suite: &str) -> Vec<Variant> {
    use Expect::{Accepted, Refused};
    use Refusal::{Encryption, KeyTransport};
    let v = |name, route, expect| Variant {
        name,
        route,
        expect,
    };
    match suite {
        "basic256" | "basic256sha256" => vec![
            v("basic256", "profile = \"basic256\"", Accepted),
            v("basic256sha256", "profile = \"basic256sha256\"", Accepted),
            v(
                "basic256sha256 + mgf1p DigestMethod sha256",
                "profile = \"basic256sha256\"\noaep_digest = \"sha256\"",
                Accepted,
            ),
            v(
                "basic256 + bst",
                "profile = \"basic256\"\nkey_identifier = \"bst\"",
                Accepted,
            ),
            v(
                "basic256 + ski",
                "profile = \"basic256\"\nkey_identifier = \"ski\"",
                Accepted,
            ),
            v(
                "wcf-basic256 (thumbprint)",
                "profile = \"wcf-basic256\"",
                Accepted,
            ),
            v(
                "basic256 + issuer-serial(wcf)",
                "profile = \"basic256\"\nissuer_name_format = \"wcf\"",
                Accepted,
            ),
            v("default", "profile = \"default\"", Accepted),
            v("modern", "profile = \"modern\"", Refused(KeyTransport)),
            v(
                "basic256 + aes256-gcm",
                "profile = \"basic256\"\ndata_encryption = \"aes256-gcm\"",
                Refused(Encryption("aes256-gcm")),
            ),
            v(
                "basic256 + xmlenc11 rsa-oaep",
                "profile = \"basic256\"\nkey_transport = \"rsa-oaep\"",
                Refused(KeyTransport),
            ),
            v(
                "basic128",
                "profile = \"basic128\"",
                Refused(Encryption("aes128-cbc")),
            ),
        ],
        "basic128" => vec![
            v("basic128", "profile = \"basic128\"", Accepted),
            v(
                "basic128 + bst",
                "profile = \"basic128\"\nkey_identifier = \"bst\"",
                Accepted,
            ),
            v(
                "basic128 + ski",
                "profile = \"basic128\"\nkey_identifier = \"ski\"",
                Accepted,
            ),
            v(
                "wcf-basic128 (thumbprint)",
                "profile = \"wcf-basic128\"",
                Accepted,
            ),
            v("modern", "profile = \"modern\"", Refused(KeyTransport)),
            v(
                "basic128 + aes128-gcm",
                "profile = \"basic128\"\ndata_encryption = \"aes128-gcm\"",
                Refused(Encryption("aes128-gcm")),
            ),
            v(
                "basic128 + xmlenc11 rsa-oaep",
                "profile = \"basic128\"\nkey_transport = \"rsa-oaep\"",
                Refused(KeyTransport),
            ),
            v(
                "basic256",
                "profile = \"basic256\"",
                Refused(Encryption("aes256-cbc")),
            ),
        ],
        "cxf-basic256gcm" => vec![
            v(
                "basic256 + aes256-gcm",
                "profile = \"basic256\"\ndata_encryption = \"aes256-gcm\"",
                Accepted,
            ),
            v("modern", "profile = \"modern\"", Refused(KeyTransport)),
            v(
                "basic256",
                "profile = \"basic256\"",
                Refused(Encryption("aes256-cbc")),
            ),
        ],
        other => panic!("no variants for suite {other}"),
    }
}

#[test]
fn cxf4_policy_services_through_wssgate_serve() {
    let Some(harness) = harness() else { return };
    let dir = tempfile::tempdir().unwrap();
    let service = ServiceKey::new();
    let keystore = service.write_keystore(dir.path());
    let cxf = CxfServices::start(harness, &keystore, None, &dir.path().join("cxf.log"));

    // One route per (service, variant): the route's settings are the variant.
    let mut cases = Vec::new();
    let mut config = String::from(
        "[proxy]\nlisten = \"127.0.0.1:0\"\nupstream_timeout = \"30s\"\nshutdown_grace = \"1s\"\n\
         [keystore]\ndir = \"keystore\"\nstate_dir = \"var\"\n",
    );
    for path in &cxf.paths {
        let suite = path.split('/').nth(1).unwrap();
        for variant in variants(suite) {
            let route = format!("/c{}", cases.len());
            config.push_str(&format!(
                // One route per case: hold_max small, so that every route's holds
                // fit the descriptor budget together.
                "\n[[route]]\nname = \"c{n}\"\npath = \"{route}\"\nupstream = \"http://127.0.0.1:{port}{path}\"\nalias = \"orders-service\"\nhold_max = 10\n{settings}\n",
                n = cases.len(),
                port = cxf.port,
                settings = variant.route,
            ));
            cases.push((path.clone(), route, variant));
        }
    }
    std::fs::create_dir_all(dir.path().join("keystore")).unwrap();
    std::fs::write(
        dir.path().join("keystore/orders-service.pem"),
        service.cert().to_pem().unwrap(),
    )
    .unwrap();
    let config_path = dir.path().join("wssgate.toml");
    std::fs::write(&config_path, config).unwrap();
    let gateway = Gateway::start(&config_path, &dir.path().join("wssgate.log"));

    let mut wrong = Vec::new();
    let mut tally = std::collections::BTreeMap::<String, (usize, usize)>::new();
    for (service_path, route, variant) in &cases {
        let soap12 = service_path.contains("soap12");
        let (status, body) = post(&gateway.addr, route, soap12, envelope(soap12).as_bytes());
        let received = received(&body);
        let ok = match variant.expect {
            Expect::Accepted => status == 200 && received.as_deref() == Some(PAYLOAD),
            Expect::Refused(refusal) => {
                status == 500
                    && received.is_none()
                    && body.contains("Fault")
                    && body.contains(&refusal.reason(service_path))
            }
        };
        let entry = tally.entry(service_path.clone()).or_default();
        if matches!(variant.expect, Expect::Accepted) {
            entry.0 += 1;
        } else {
            entry.1 += 1;
        }
        if !ok {
            wrong.push(format!(
                "{service_path} {}: expected {:?}, got {status} {}",
                variant.name,
                variant.expect,
                fault_text(&body)
            ));
        }
        eprintln!(
            "{service_path} {}: {status} {}",
            variant.name,
            if status == 200 {
                "accepted".to_string()
            } else {
                fault_text(&body)
            }
        );
    }
    // A plaintext request straight to each service is refused: the policy is enforced.
    for path in &cxf.paths {
        let soap12 = path.contains("soap12");
        let (status, body) = post(
            &format!("127.0.0.1:{}", cxf.port),
            path,
            soap12,
            envelope(soap12).as_bytes(),
        );
        // CXF's DOM receiver and its streaming one word it differently.
        if status != 500
            || !(body.contains("Soap Body is not ENCRYPTED")
                || body.contains("SOAP-Body must be encrypted"))
        {
            wrong.push(format!(
                "{path} plaintext: expected a refusal, got {status} {}",
                fault_text(&body)
            ));
        }
    }
    drop(gateway);
    assert!(
        wrong.is_empty(),
        "{} of {} not as expected:\n{}\n(CXF log: {})",
        wrong.len(),
        cases.len() + cxf.paths.len(),
        wrong.join("\n"),
        std::fs::read_to_string(dir.path().join("cxf.log")).unwrap_or_default()
    );
    for (path, (accepted, refused)) in tally {
        eprintln!("{path}: {accepted} accepted, {refused} refused, as expected");
    }
}
