//! No decryption oracle, and no key material anywhere: a decrypt route answers
//! an unknown key, a bad CBC padding, a bad GCM tag, a plaintext that does not
//! parse, a bad rsa-1_5 padding and a refused rsa-1_5 with byte-identical
//! faults apart from the request id; and through `wssgate serve` as a process,
//! with debug logging, no byte of a private key reaches a log line, an answer,
//! the metrics or the audit log.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use common::net::{self, Daemon, Receiver};
use common::{CertSpec, TestReceiver, free_port};
use http_body_util::{BodyExt, Full};
use wssgate::wss::cipher::{EncryptingWriter, UnwrapParams, unwrap_key};
use wssgate::wss::keys::KeyRing;
use wssgate::wss::{
    self, AlgorithmOverrides, Algorithms, DataEncryption, EncryptOptions, KeyTransport, OaepDigest,
    Profile,
};

const ENVELOPE: &str = r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><m:transfer xmlns:m="urn:m"><m:amount>100</m:amount></m:transfer></soap:Body></soap:Envelope>"#;

fn key(serial: u32) -> TestReceiver {
    TestReceiver::new(&CertSpec {
        serial,
        ..CertSpec::default()
    })
}

fn options(data: DataEncryption, transport: KeyTransport) -> EncryptOptions {
    let overrides = AlgorithmOverrides {
        data_encryption: Some(data),
        key_transport: Some(transport),
        oaep_digest: Some(OaepDigest::Sha1),
        ..AlgorithmOverrides::default()
    };
    EncryptOptions {
        algorithms: Algorithms::resolve(Profile::Default, overrides, true).unwrap(),
        ..EncryptOptions::default()
    }
}

fn encrypt(for_key: &TestReceiver, data: DataEncryption, transport: KeyTransport) -> String {
    let (out, _) = wss::encrypt_to_vec(
        ENVELOPE.as_bytes(),
        &for_key.recipient(),
        &options(data, transport),
    )
    .unwrap();
    String::from_utf8(out).unwrap()
}

/// The text of the `nth` CipherValue (0: the EncryptedKey's, 1: the Body's).
fn cipher_value(doc: &str, nth: usize) -> (usize, usize) {
    let opening = doc
        .match_indices("CipherValue>")
        .map(|(at, m)| (at, at + m.len()))
        .filter(|(at, _)| {
            doc[..*at]
                .rfind('<')
                .is_some_and(|lt| &doc[lt + 1..lt + 2] != "/")
        });
    let (_, open) = opening.clone().nth(nth).unwrap();
    let close = doc[open..].find("</").unwrap() + open;
    (open, close)
}

fn with_cipher_value(doc: &str, nth: usize, change: impl FnOnce(Vec<u8>) -> Vec<u8>) -> String {
    let (start, end) = cipher_value(doc, nth);
    let bytes = B64.decode(doc[start..end].trim()).unwrap();
    format!(
        "{}{}{}",
        &doc[..start],
        B64.encode(change(bytes)),
        &doc[end..]
    )
}

/// A message whose key unwraps and whose data decrypts, to a plaintext that is
/// not XML that fits where the EncryptedData stood.
fn bad_plaintext(tenant: &TestReceiver) -> String {
    let doc = encrypt(
        tenant,
        DataEncryption::Aes256Gcm,
        KeyTransport::RsaOaepMgf1p,
    );
    let (start, end) = cipher_value(&doc, 0);
    let wrapped = B64.decode(doc[start..end].trim()).unwrap();
    let params = UnwrapParams {
        transport: KeyTransport::RsaOaepMgf1p,
        digest: openssl::hash::MessageDigest::sha1(),
        mgf1: openssl::hash::MessageDigest::sha1(),
        label: None,
    };
    let content_key = unwrap_key(&tenant.key, params, &wrapped).unwrap();
    let mut writer =
        EncryptingWriter::new(Vec::new(), DataEncryption::Aes256Gcm, &content_key).unwrap();
    std::io::Write::write_all(&mut writer, b"<m:transfer><unclosed").unwrap();
    let (text, _) = writer.finish().unwrap();
    let (start, end) = cipher_value(&doc, 1);
    format!(
        "{}{}{}",
        &doc[..start],
        String::from_utf8(text).unwrap(),
        &doc[end..]
    )
}

async fn answer(daemon: &Daemon, path: &str, body: &str) -> (u16, String, String) {
    let request = http::Request::post(daemon.url(path))
        .header("content-type", "text/xml")
        .header("x-request-id", "oracle-probe")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let response = net::client().request(request).await.unwrap();
    let status = response.status().as_u16();
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        content_type,
        String::from_utf8(body.to_vec()).unwrap(),
    )
}

#[tokio::test]
async fn every_cause_of_a_failed_decryption_gets_the_same_answer() {
    let (tenant, stranger) = (key(200), key(201));
    let receiver = Receiver::start(KeyRing::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    common::write_ring(dir.path(), "tenant", &tenant);
    let upstream = format!("http://{}/service", receiver.addr);
    let legacy_route = format!(
        "allow_legacy = true\n\n[[route]]\nname = \"strict\"\npath = \"/strict\"\nupstream = \"{upstream}\"\nmode = \"decrypt\"\nring = \"tenant\"\n"
    );
    let daemon =
        Daemon::start_in(dir, &net::decrypt_config(&upstream, &legacy_route, ""), &[]).await;

    // The good message decrypts on both routes (rsa-1_5 only on the legacy one).
    let good = encrypt(
        &tenant,
        DataEncryption::Aes256Cbc,
        KeyTransport::RsaOaepMgf1p,
    );
    assert_eq!(answer(&daemon, "/inbound", &good).await.0, 200);
    assert_eq!(answer(&daemon, "/strict", &good).await.0, 200);
    let legacy = encrypt(&tenant, DataEncryption::Aes128Cbc, KeyTransport::Rsa15);
    assert_eq!(answer(&daemon, "/inbound", &legacy).await.0, 200);

    let cbc = encrypt(
        &tenant,
        DataEncryption::Aes256Cbc,
        KeyTransport::RsaOaepMgf1p,
    );
    let gcm = encrypt(
        &tenant,
        DataEncryption::Aes256Gcm,
        KeyTransport::RsaOaepMgf1p,
    );
    let causes: Vec<(&str, &str, String)> = vec![
        (
            "unknown key",
            "/inbound",
            encrypt(
                &stranger,
                DataEncryption::Aes256Cbc,
                KeyTransport::RsaOaepMgf1p,
            ),
        ),
        (
            "bad CBC padding",
            "/inbound",
            with_cipher_value(&cbc, 1, |mut c| {
                // The last byte of the block before the last: the pad length
                // comes out above 128, never a valid one.
                let n = c.len();
                c[n - 17] ^= 0x80;
                c
            }),
        ),
        (
            "bad GCM tag",
            "/inbound",
            with_cipher_value(&gcm, 1, |mut c| {
                let n = c.len();
                c[n - 1] ^= 1;
                c
            }),
        ),
        ("bad plaintext", "/inbound", bad_plaintext(&tenant)),
        (
            "bad OAEP padding",
            "/inbound",
            with_cipher_value(&cbc, 0, |mut c| {
                c[5] ^= 0x55;
                c
            }),
        ),
        (
            "bad rsa-1_5 padding (implicit rejection)",
            "/inbound",
            with_cipher_value(&legacy, 0, |mut c| {
                c[5] ^= 0x55;
                c
            }),
        ),
        ("rsa-1_5 without allow_legacy", "/strict", legacy.clone()),
    ];
    let mut answers = Vec::new();
    for (cause, path, body) in &causes {
        let got = answer(&daemon, path, body).await;
        assert_eq!(
            common::fault_code(&got.2),
            "decryption-failed",
            "{cause}: {}",
            got.2
        );
        answers.push((cause, got));
    }
    let (first_cause, first) = &answers[0];
    for (cause, got) in &answers[1..] {
        assert_eq!(got, first, "{cause} is told apart from {first_cause}");
    }
    assert_eq!(first.0, 400);
    assert!(!first.2.contains("padding") && !first.2.contains("tag") && !first.2.contains("key"));
    // Nothing of a failed message reached the receiver.
    assert_eq!(receiver.received().len(), 3);

    // Not encrypted at all is the one other answer, and says so.
    let plain = answer(&daemon, "/inbound", ENVELOPE).await;
    assert_eq!(
        (plain.0, common::fault_code(&plain.2)),
        (400, "not-encrypted")
    );
}

/// A private key's PEM body lines (each 64 base64 characters of the key).
fn key_lines(pem: &[u8]) -> Vec<String> {
    String::from_utf8(pem.to_vec())
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("-----") && l.len() >= 40)
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_key_bytes_never_appear_in_logs_answers_metrics_or_the_audit_log() {
    let (tenant, next) = (key(210), key(211));
    let receiver = Receiver::start(KeyRing::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    common::write_ring(dir.path(), "tenant", &tenant);
    let (port, admin_port) = (free_port(), free_port());
    for (name, _, token) in net::TOKENS {
        common::write_secret(&dir.path().join(format!("{name}.token")), token);
    }
    let config = format!(
        "[admin]\nlisten = \"127.0.0.1:{admin_port}\"\ntokens = [ {{ name = \"keyadmin\", role = \"keys\", file = \"keyadmin.token\" }}, {{ name = \"reader\", role = \"read\", file = \"reader.token\" }} ]\n{}",
        net::decrypt_config(&format!("http://{}/s", receiver.addr), "", "")
    )
    .replace("listen = \"127.0.0.1:0\"", &format!("listen = \"127.0.0.1:{port}\""))
    .replace("{dir}", dir.path().to_str().unwrap());
    let config_path = dir.path().join("wssgate.toml");
    std::fs::write(&config_path, config).unwrap();
    let log_path = dir.path().join("serve.log");
    let child = Command::new(env!("CARGO_BIN_EXE_wssgate"))
        .args(["serve", "-c", config_path.to_str().unwrap()])
        .env("RUST_LOG", "debug")
        .stderr(Stdio::from(std::fs::File::create(&log_path).unwrap()))
        .spawn()
        .unwrap();
    let mut child = common::KillOnDrop(child);
    let admin = |token_name: &str| {
        let token = net::TOKENS.iter().find(|t| t.0 == token_name).unwrap().2;
        wssgate::admin::client::AdminClient::with_token(
            &format!("http://127.0.0.1:{admin_port}"),
            token,
        )
        .unwrap()
    };
    let reader = admin("reader");
    common::eventually(Duration::from_secs(10), async || {
        reader.ready().await.is_ok()
    })
    .await;

    let mut answers = String::new();
    // A refused key (the same key again) and a good one.
    let refused = admin("keyadmin")
        .keyring_add("tenant", Bytes::from(tenant.key_and_cert_pem()))
        .await
        .unwrap_err();
    answers.push_str(&refused.to_string());
    let added = admin("keyadmin")
        .keyring_add("tenant", Bytes::from(next.key_and_cert_pem()))
        .await
        .unwrap();
    answers.push_str(&serde_json::to_string(&added).unwrap());
    // Traffic: good and failing messages.
    let url = format!("http://127.0.0.1:{port}/inbound");
    let client = net::client();
    let good = encrypt(
        &tenant,
        DataEncryption::Aes256Gcm,
        KeyTransport::RsaOaepMgf1p,
    );
    let bad = with_cipher_value(&good, 1, |mut c| {
        let n = c.len();
        c[n - 1] ^= 1;
        c
    });
    for body in [
        &good,
        &bad,
        &bad_plaintext(&tenant),
        &encrypt(&next, DataEncryption::Aes128Cbc, KeyTransport::RsaOaep),
    ] {
        let (_, _, text) = net::post(&client, &url, "text/xml", body.as_bytes()).await;
        answers.push_str(&text);
    }
    answers.push_str(&serde_json::to_string(&reader.keyrings().await.unwrap()).unwrap());
    let (status, metrics) = reader
        .raw(http::Method::GET, "/metrics", None)
        .await
        .unwrap();
    assert_eq!(status, 200);
    let metrics = String::from_utf8(metrics.to_vec()).unwrap();
    assert!(metrics.contains("wssgate_decryptions_total{"), "{metrics}");
    let stopped = child.terminate();
    assert!(stopped.success(), "the daemon's stop: {stopped}");

    let mut logs = String::new();
    std::fs::File::open(&log_path)
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    assert!(
        logs.contains("decryption failed"),
        "the cause is logged at debug level:\n{logs}"
    );
    assert!(
        logs.contains("key added to the key ring and live"),
        "{logs}"
    );
    let audit = std::fs::read_to_string(dir.path().join("var/audit.log")).unwrap();
    assert!(audit.contains("keyring-add"), "{audit}");
    for (what, text) in [
        ("log", &logs),
        ("answer", &answers),
        ("metrics", &metrics),
        ("audit log", &audit),
    ] {
        assert!(
            !text.contains("PRIVATE KEY"),
            "a PEM key block in the {what}"
        );
        for pem in [tenant.key_pem(), next.key_pem()] {
            for line in key_lines(&pem) {
                assert!(!text.contains(&line[..40]), "key bytes in the {what}");
            }
        }
    }
}
