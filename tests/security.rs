//! Admin API security with the real binary and its logs at debug level: every
//! refusal, and no log line or answer ever carries a token or private key
//! material — not even when a private key is uploaded by mistake.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::net::{self, Receiver};
use common::{CertSpec, KillOnDrop, TestReceiver, free_port};
use http_body_util::{BodyExt, Full};

const BODY: &str = r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><m:ping xmlns:m="urn:m">1</m:ping></soap:Body></soap:Envelope>"#;
const TOKENS: [(&str, &str, &str); 3] = [
    ("reader", "read", "reader-secret-token-4f1c2a9e"),
    ("ops", "operator", "operator-secret-token-77b0d3"),
    ("root", "admin", "admin-secret-token-c81e5f42a"),
];

async fn call(
    admin: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    host: Option<&str>,
    body: &[u8],
) -> (u16, String) {
    let mut request = http::Request::builder()
        .method(method)
        .uri(format!("http://127.0.0.1:{admin}{path}"));
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    if let Some(host) = host {
        request = request.header("host", host);
    }
    let request = request
        .body(Full::new(Bytes::copy_from_slice(body)))
        .unwrap();
    let response = net::client().request(request).await.unwrap();
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_and_no_secret_in_any_log_line_or_answer() {
    let old = common::receiver();
    let new = TestReceiver::new(&CertSpec {
        serial: 515,
        common_name: "receiver-next".into(),
        ..CertSpec::default()
    });
    let receiver = Receiver::start(old.key_ring()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    common::write_keystore(dir.path(), &[("orders-receiver", old.cert_pem())]);
    let mut token_lines = String::new();
    for (name, role, token) in TOKENS {
        common::write_secret(&dir.path().join(format!("{name}.token")), token);
        token_lines.push_str(&format!(
            "{{ name = \"{name}\", role = \"{role}\", file = \"{name}.token\" }},"
        ));
    }
    let (proxy, admin) = (free_port(), free_port());
    let config = format!(
        r#"[proxy]
listen = "127.0.0.1:{proxy}"
drain_delay = "0s"

[admin]
listen = "127.0.0.1:{admin}"
tokens = [ {token_lines} ]

[keystore]
dir = "keystore"
state_dir = "var"

[[route]]
name = "orders"
path = "/orders"
upstream = "http://{}/s"
alias = "orders-receiver"
"#,
        receiver.addr
    );
    let config_path = dir.path().join("wssgate.toml");
    std::fs::write(&config_path, config).unwrap();
    let mut child = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_wssgate"))
            .args(["serve", "--log-format", "json", "-c"])
            .arg(&config_path)
            .env("RUST_LOG", "debug")
            .stderr(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let log = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut readers = Vec::new();
    for stream in [
        Box::new(child.0.stderr.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.0.stdout.take().unwrap()),
    ] {
        let log = log.clone();
        readers.push(std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                log.lock().unwrap().push(line);
            }
        }));
    }
    common::eventually(Duration::from_secs(10), async || {
        std::net::TcpStream::connect(("127.0.0.1", admin)).is_ok()
    })
    .await;

    let (reader, operator, root) = (TOKENS[0].2, TOKENS[1].2, TOKENS[2].2);
    let mut answers = Vec::new();
    // Refusals.
    /// Method, path, token, Host header, expected status.
    type Refusal<'a> = (&'a str, &'a str, Option<&'a str>, Option<&'a str>, u16);
    let refusals: [Refusal; 8] = [
        ("GET", "/v1/status", None, None, 401),
        (
            "GET",
            "/v1/status",
            Some("not-a-token-at-all-000000"),
            None,
            401,
        ),
        (
            "GET",
            "/v1/status",
            Some(&reader[..reader.len() - 1]),
            None,
            401,
        ),
        ("POST", "/v1/routes/orders/pause", Some(reader), None, 403),
        (
            "PUT",
            "/v1/keystore/orders-receiver",
            Some(operator),
            None,
            403,
        ),
        ("DELETE", "/v1/status", Some(root), None, 405),
        (
            "GET",
            "/v1/status",
            Some(root),
            Some("attacker.example:80"),
            403,
        ),
        ("GET", "/v1/nothing-here", Some(root), None, 404),
    ];
    for (method, path, token, host, want) in refusals {
        let (status, answer) = call(admin, method, path, token, host, b"").await;
        assert_eq!(
            status, want,
            "{method} {path} token={token:?} host={host:?}: {answer}"
        );
        answers.push(answer);
    }
    // What an operator does, including mistakes with key material.
    let mut key_and_cert = new.key_pem();
    key_and_cert.extend(new.cert_pem());
    let steps: [(&str, &str, &str, Vec<u8>); 8] = [
        ("GET", "/v1/status", reader, Vec::new()),
        ("GET", "/metrics", reader, Vec::new()),
        ("POST", "/v1/routes/orders/pause", operator, Vec::new()),
        ("POST", "/v1/routes/orders/resume", operator, Vec::new()),
        ("PUT", "/v1/keystore/orders-receiver", root, new.key_pem()),
        ("PUT", "/v1/keystore/orders-receiver", root, key_and_cert),
        ("PUT", "/v1/keystore/orders-receiver", root, new.cert_pem()),
        ("POST", "/v1/reload", operator, Vec::new()),
    ];
    for (method, path, token, body) in steps {
        let (status, answer) = call(admin, method, path, Some(token), None, &body).await;
        if body.starts_with(b"-----BEGIN PRIVATE KEY") {
            assert_eq!(
                status, 422,
                "an upload holding a private key is refused: {answer}"
            );
        } else {
            assert!(status < 500, "{method} {path}: {status} {answer}");
        }
        answers.push(answer);
    }
    let (status, _, _) = net::post(
        &net::client(),
        &format!("http://127.0.0.1:{proxy}/orders"),
        "text/xml",
        BODY.as_bytes(),
    )
    .await;
    assert_eq!(status, 200);
    // Only a certificate ever lands in the keystore.
    let stored = std::fs::read_to_string(dir.path().join("keystore/orders-receiver.pem")).unwrap();
    assert!(!stored.contains("PRIVATE KEY"), "{stored}");

    let stopped = child.terminate();
    assert!(stopped.success(), "the daemon's stop: {stopped}");
    // The pipes end with the daemon: every line it wrote is read.
    for reader in readers {
        reader.join().unwrap();
    }
    let log = log.lock().unwrap().clone();
    assert!(log.len() > 10, "the daemon logged at debug level: {log:?}");
    let key_text = String::from_utf8(new.key_pem()).unwrap();
    // A line of the key's base64, long enough to be unique.
    let key_fragment = key_text.lines().nth(3).unwrap();
    let audit = std::fs::read_to_string(dir.path().join("var/audit.log")).unwrap_or_default();
    for (what, text) in log
        .iter()
        .map(|l| ("log", l.as_str()))
        .chain(answers.iter().map(|a| ("answer", a.as_str())))
        .chain(audit.lines().map(|l| ("audit", l)))
    {
        for (_, _, token) in TOKENS {
            assert!(!text.contains(token), "a token in a {what}: {text}");
            assert!(
                !text.contains(&token[..12]),
                "part of a token in a {what}: {text}"
            );
        }
        assert!(
            !text.contains("PRIVATE KEY"),
            "key material in a {what}: {text}"
        );
        assert!(
            !text.contains(key_fragment),
            "key material in a {what}: {text}"
        );
    }
    println!(
        "{} log lines, {} answers, {} audit lines checked",
        log.len(),
        answers.len(),
        audit.lines().count()
    );
}

#[test]
fn a_non_loopback_admin_listener_without_tls_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    common::write_keystore(
        dir.path(),
        &[("orders-receiver", common::receiver().cert_pem())],
    );
    let config = dir.path().join("wssgate.toml");
    std::fs::write(
        &config,
        "[admin]\nlisten = \"0.0.0.0:9090\"\n[keystore]\ndir = \"keystore\"\nstate_dir = \"var\"\n\
         [[route]]\nname = \"orders\"\npath = \"/orders\"\nupstream = \"http://127.0.0.1:9/\"\nalias = \"orders-receiver\"\n",
    )
    .unwrap();
    for command in ["check", "serve"] {
        let out = Command::new(env!("CARGO_BIN_EXE_wssgate"))
            .args([command, "-c"])
            .arg(&config)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(64), "{command}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("admin.listen") && stderr.contains("tls"),
            "{command}: {stderr}"
        );
    }
}
