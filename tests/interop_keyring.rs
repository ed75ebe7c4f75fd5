//! The receiver-side gateway against senders nobody here wrote: libxmlsec1
//! (python3-xmlsec) and Apache WSS4J 1.6 (Debian's libwss4j-java) encrypt for
//! the ring's old key and for a new key added through the admin API, across key
//! identifiers, data encryption and key transport algorithms. Each message goes
//! through the daemon's decrypt route to a plain receiver that records it; the
//! recorded Body must equal the original after exclusive C14N (compared by
//! lxml). Once the old key is past its retain_until, its messages get
//! `decryption-failed` and the new key's still pass.
//! (WSS4J 3 is the sender of tests/interop_java.rs's key ring test.)

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use bytes::Bytes;
use common::net::{self, Daemon, Receiver};
use common::{CertSpec, TestReceiver};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use wssgate::wss::keys::KeyRing;

const WSS4J_CLASSPATH: [&str; 5] = [
    "/usr/share/java/wss4j.jar",
    "/usr/share/java/xmlsec.jar",
    "/usr/share/java/commons-logging.jar",
    "/usr/share/java/slf4j-api.jar",
    "/usr/share/java/slf4j-nop.jar",
];

const DATA: [(&str, &str); 5] = [
    ("aes128-cbc", "http://www.w3.org/2001/04/xmlenc#aes128-cbc"),
    ("aes256-cbc", "http://www.w3.org/2001/04/xmlenc#aes256-cbc"),
    ("aes128-gcm", "http://www.w3.org/2009/xmlenc11#aes128-gcm"),
    ("aes256-gcm", "http://www.w3.org/2009/xmlenc11#aes256-gcm"),
    (
        "tripledes-cbc",
        "http://www.w3.org/2001/04/xmlenc#tripledes-cbc",
    ),
];

const TRANSPORTS: [(&str, &str); 2] = [
    (
        "rsa-oaep-mgf1p",
        "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p",
    ),
    ("rsa-1_5", "http://www.w3.org/2001/04/xmlenc#rsa-1_5"),
];

fn key(serial: u32) -> TestReceiver {
    TestReceiver::new(&CertSpec {
        serial,
        common_name: format!("tenant-{serial}"),
        ..CertSpec::default()
    })
}

/// One message a sender encrypted: its name, file, original, and key.
struct Case {
    name: String,
    encrypted: PathBuf,
    original: PathBuf,
    old_key: bool,
}

/// libxmlsec1 encrypts `original` for each key, every data algorithm,
/// transport and certificate reference it writes.
fn xmlsec_cases(dir: &Path, original: &Path, certs: &[(&str, &Path)]) -> Vec<Case> {
    let mut manifest = Vec::new();
    let mut cases = Vec::new();
    for (which, cert) in certs {
        for (data, _) in DATA {
            for (transport, _) in TRANSPORTS {
                for reference in ["issuer-serial", "certificate"] {
                    let output = dir.join(format!("xmlsec-{}.xml", cases.len()));
                    let name = format!("libxmlsec1 {which} {data} {transport} {reference}");
                    manifest.push(json!({
                        "name": name, "original": original, "cert": cert, "output": output,
                        "data": data, "transport": transport, "reference": reference,
                    }));
                    cases.push(Case {
                        name,
                        encrypted: output,
                        original: original.to_path_buf(),
                        old_key: *which == "old",
                    });
                }
            }
        }
    }
    let path = dir.join("xmlsec-encrypt.json");
    std::fs::write(&path, serde_json::to_vec(&manifest).unwrap()).unwrap();
    assert_all_ok(
        &common::run_interop_script("xmlsec_interop.py", &["encrypt", path.to_str().unwrap()]),
        cases.len(),
    );
    cases
}

/// WSS4J 1.6 encrypts `original` for each key with every key identifier it
/// writes, every data algorithm and transport.
fn wss4j_cases(dir: &Path, original: &Path, certs: &[(&str, &Path)]) -> Vec<Case> {
    for jar in WSS4J_CLASSPATH {
        assert!(
            Path::new(jar).exists(),
            "{jar} missing: install libwss4j-java (scripts/install-test-deps)"
        );
    }
    let classpath = WSS4J_CLASSPATH.join(":");
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/Wss4jEncrypt.java");
    let javac = Command::new("javac")
        .args(["-d", dir.to_str().unwrap(), "-cp", &classpath])
        .arg(&source)
        .output()
        .expect("javac (a JDK) is needed for the WSS4J interop test");
    assert!(
        javac.status.success(),
        "{}",
        String::from_utf8_lossy(&javac.stderr)
    );
    let mut manifest = String::new();
    let mut cases = Vec::new();
    for (which, cert) in certs {
        for identifier in ["issuer-serial", "bst", "ski", "thumbprint", "x509"] {
            for (data, data_uri) in DATA {
                for (transport, transport_uri) in TRANSPORTS {
                    let output = dir.join(format!("wss4j-{}.xml", cases.len()));
                    let name = format!("WSS4J 1.6 {which} {identifier} {data} {transport}");
                    manifest.push_str(&format!(
                        "{name}\t{}\t{}\t{identifier}\t{data_uri}\t{transport_uri}\t{}\n",
                        original.display(),
                        cert.display(),
                        output.display()
                    ));
                    cases.push(Case {
                        name,
                        encrypted: output,
                        original: original.to_path_buf(),
                        old_key: *which == "old",
                    });
                }
            }
        }
    }
    let path = dir.join("wss4j-encrypt.tsv");
    std::fs::write(&path, manifest).unwrap();
    let run = Command::new("java")
        .arg("-cp")
        .arg(format!("{}:{classpath}", dir.display()))
        .arg("Wss4jEncrypt")
        .arg(&path)
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
        "WSS4J could not encrypt:\n{}",
        failures.join("\n")
    );
    assert_eq!(stdout.lines().count(), cases.len());
    cases
}

fn assert_all_ok(results: &Value, expected: usize) {
    let list = results.as_array().expect("a list");
    let failures: Vec<&Value> = list.iter().filter(|r| r["ok"] != json!(true)).collect();
    assert!(
        failures.is_empty(),
        "{} of {} failed: {failures:#?}",
        failures.len(),
        list.len()
    );
    assert_eq!(list.len(), expected, "every case reported");
}

/// POST `body` with request id `id`; the status and the answer.
async fn send(daemon: &Daemon, id: &str, body: Vec<u8>) -> (u16, String) {
    let request = http::Request::post(daemon.url("/inbound"))
        .header("content-type", "text/xml; charset=utf-8")
        .header("x-request-id", id)
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let response = net::client().request(request).await.unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Send every case through the decrypt route; each must arrive without
/// encryption, its Body equal to the original's after exclusive C14N.
async fn through_gateway(daemon: &Daemon, receiver: &Receiver, cases: &[Case], dir: &Path) {
    let mut compare = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let id = format!("case-{i}");
        let (status, answer) = send(daemon, &id, std::fs::read(&case.encrypted).unwrap()).await;
        assert_eq!(status, 200, "{}: {answer}", case.name);
        let got = receiver
            .received()
            .into_iter()
            .find(|r| r.request_id == id)
            .unwrap_or_else(|| panic!("{} did not arrive", case.name));
        let text = String::from_utf8(got.raw).unwrap();
        assert!(
            !text.contains("EncryptedData") && !text.contains("EncryptedKey"),
            "{}: {text}",
            case.name
        );
        let decrypted = case.encrypted.with_extension("received.xml");
        std::fs::write(&decrypted, text).unwrap();
        compare.push(json!({"name": case.name, "original": case.original, "decrypted": decrypted}));
    }
    let manifest = dir.join("compare.json");
    std::fs::write(&manifest, serde_json::to_vec(&compare).unwrap()).unwrap();
    assert_all_ok(
        &common::run_interop_script(
            "xmlsec_interop.py",
            &["compare", manifest.to_str().unwrap()],
        ),
        cases.len(),
    );
}

/// A gateway on port 0 whose ring `tenant` holds `new`, with `old` retained.
async fn gateway(old: &TestReceiver, new: &TestReceiver) -> (Daemon, Receiver) {
    let receiver = Receiver::start(KeyRing::default()).await.unwrap();
    let state = tempfile::tempdir().unwrap();
    common::write_ring(state.path(), "tenant", old);
    let upstream = format!("http://{}/service", receiver.addr);
    let config = net::decrypt_config(&upstream, "allow_legacy = true", "");
    let daemon = Daemon::start_in(state, &config, &[]).await;
    daemon
        .client("keys")
        .keyring_add("tenant", Bytes::from(new.key_and_cert_pem()))
        .await
        .unwrap();
    (daemon, receiver)
}

#[tokio::test]
async fn messages_of_wss4j3_for_old_and_new_keys_arrive_decrypted() {
    let Some(harness) = common::java::harness() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (key(310), key(311));
    let (_, old_cert, _) = old.write_to(dir.path(), "old");
    let (_, new_cert, _) = new.write_to(dir.path(), "new");
    let (daemon, receiver) = gateway(&old, &new).await;
    let keystore = dir.path().join("sender.p12");
    let p12 = openssl::pkcs12::Pkcs12::builder()
        .name("receiver")
        .pkey(&old.key)
        .cert(&old.cert)
        .build2(common::java::KEYSTORE_PASSWORD)
        .unwrap();
    std::fs::write(&keystore, p12.to_der().unwrap()).unwrap();
    let original = common::data_dir().join("soap/cxf__greetMeWSAReq.xml");
    let transports = [
        TRANSPORTS[0],
        TRANSPORTS[1],
        ("rsa-oaep", "http://www.w3.org/2009/xmlenc11#rsa-oaep"),
    ];
    let mut manifest = String::new();
    let mut cases = Vec::new();
    for (which, cert) in [("old", &old_cert), ("new", &new_cert)] {
        for identifier in ["issuer-serial", "bst", "ski", "thumbprint", "x509"] {
            for (data, data_uri) in DATA {
                for (transport, transport_uri) in transports {
                    let output = dir.path().join(format!("wss4j3-{}.xml", cases.len()));
                    let name = format!("WSS4J 3 {which} {identifier} {data} {transport}");
                    manifest.push_str(&format!(
                        "{name}\t{}\t{}\t{identifier}\t{data_uri}\t{transport_uri}\t{}\n",
                        original.display(),
                        cert.display(),
                        output.display()
                    ));
                    cases.push(Case {
                        name,
                        encrypted: output,
                        original: original.clone(),
                        old_key: which == "old",
                    });
                }
            }
        }
    }
    let path = dir.path().join("wss4j3-encrypt.tsv");
    std::fs::write(&path, manifest).unwrap();
    let run = harness
        .java("encrypt", &keystore)
        .arg(&path)
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
        "WSS4J 3 could not encrypt:\n{}",
        failures.join("\n")
    );
    assert_eq!(stdout.lines().count(), cases.len());
    through_gateway(&daemon, &receiver, &cases, dir.path()).await;
    let view = daemon.client("read").keyring("tenant").await.unwrap();
    let per_key = cases.iter().filter(|c| c.old_key).count() as u64;
    assert_eq!(
        (view.keys[0].decryptions, view.keys[1].decryptions),
        (per_key, per_key)
    );
}

#[tokio::test]
async fn messages_of_independent_senders_for_old_and_new_keys_arrive_decrypted() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (key(300), key(301));
    let (_, old_cert, _) = old.write_to(dir.path(), "old");
    let (_, new_cert, _) = new.write_to(dir.path(), "new");
    let (daemon, receiver) = gateway(&old, &new).await;

    let original = common::data_dir().join("soap/cxf__greetMeWSAReq.xml");
    let certs = [("old", old_cert.as_path()), ("new", new_cert.as_path())];
    let mut cases = xmlsec_cases(dir.path(), &original, &certs);
    cases.extend(wss4j_cases(dir.path(), &original, &certs));

    through_gateway(&daemon, &receiver, &cases, dir.path()).await;
    let view = daemon.client("read").keyring("tenant").await.unwrap();
    let per_key = cases.iter().filter(|c| c.old_key).count() as u64;
    assert_eq!(
        view.keys[0].decryptions,
        cases.len() as u64 - per_key,
        "new key"
    );
    assert_eq!(view.keys[1].decryptions, per_key, "old key");

    // Past retain_until: the old key's messages fail, the new key's pass.
    let archive = daemon.dir.path().join("var/private-archive/tenant");
    for entry in std::fs::read_dir(&archive).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let mut record: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            record["retain_until"] = "2001-01-01T00:00:00.000Z".into();
            std::fs::write(&path, serde_json::to_vec(&record).unwrap()).unwrap();
        }
    }
    daemon.reload().await.unwrap();
    for (i, case) in cases.iter().enumerate().step_by(7) {
        let (status, answer) = send(
            &daemon,
            &format!("after-{i}"),
            std::fs::read(&case.encrypted).unwrap(),
        )
        .await;
        if case.old_key {
            assert_eq!(
                (status, common::fault_code(&answer)),
                (400, "decryption-failed"),
                "{}",
                case.name
            );
        } else {
            assert_eq!(status, 200, "{}: {answer}", case.name);
        }
    }
}
