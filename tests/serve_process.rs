//! `wssgate serve` as an operator runs it: a real process, a real SIGHUP after a
//! certificate exchange with `wssgate keystore exchange`, and SIGTERM to stop.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::net::{self, Receiver};
use common::{CertSpec, TestReceiver, free_port};

const BODY: &str = r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><m:ping xmlns:m="urn:m">1</m:ping></soap:Body></soap:Envelope>"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_picks_up_an_exchanged_certificate_and_sigterm_stops() {
    let old = common::receiver();
    let new = TestReceiver::new(&CertSpec {
        serial: 99,
        common_name: "receiver-next".into(),
        ..CertSpec::default()
    });
    let mut keys = old.key_ring();
    keys.push(wssgate::wss::keys::from_pem(&new.key_and_cert_pem(), "new").unwrap());
    let receiver = Receiver::start(keys).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    common::write_keystore(dir.path(), &[("orders-receiver", old.cert_pem())]);
    std::fs::write(dir.path().join("new.pem"), new.cert_pem()).unwrap();
    let port = free_port();
    let admin_port = free_port();
    common::write_secret(&dir.path().join("keys.token"), "keys-token-0123456789\n");
    let config = format!(
        "[admin]\nlisten = \"127.0.0.1:{admin_port}\"\ntokens = [ {{ name = \"keyadmin\", role = \"keys\", file = \"keys.token\" }} ]\n{}",
        net::config(&format!("http://{}/s", receiver.addr), "", "")
    )
    .replace(
        "listen = \"127.0.0.1:0\"",
        &format!("listen = \"127.0.0.1:{port}\""),
    )
    .replace("{dir}", dir.path().to_str().unwrap());
    let config_path = dir.path().join("wssgate.toml");
    std::fs::write(&config_path, config).unwrap();

    let mut child = Command::new(env!("CARGO_BIN_EXE_wssgate"))
        .args([
            "serve",
            "-c",
            config_path.to_str().unwrap(),
            "--log-format",
            "json",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (lines_tx, lines) = mpsc::channel::<String>();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let wait_for = |needle: &str| -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if let Ok(line) = lines.recv_timeout(Duration::from_millis(100))
                && line.contains(needle)
            {
                return line;
            }
        }
        panic!("no log line with {needle:?}");
    };
    let startup = wait_for("\"route\"");
    let startup: serde_json::Value = serde_json::from_str(&startup).unwrap();
    assert_eq!(startup["alias"], "orders-receiver");
    assert_eq!(
        startup["serial"], "4711",
        "startup logs each route's certificate"
    );
    wait_for("proxy listening");

    let client = net::client();
    let url = format!("http://127.0.0.1:{port}/orders");
    let (status, _, _) = net::post(&client, &url, "text/xml", BODY.as_bytes()).await;
    assert_eq!(status, 200);
    let access: serde_json::Value = serde_json::from_str(&wait_for("\"request\"")).unwrap();
    assert_eq!(access["status"], 200);
    assert_eq!(access["certificate_sha256"], old.recipient().info().sha256);
    assert!(
        access["client"].as_str().unwrap().starts_with("127.0.0.1:"),
        "the access line names the client: {access}"
    );

    // A refused exchange is the daemon's to log, not only the audit log's.
    let refused = wssgate::admin::client::AdminClient::with_token(
        &format!("http://127.0.0.1:{admin_port}"),
        "keys-token-0123456789",
    )
    .unwrap()
    .exchange(
        "orders-receiver",
        bytes::Bytes::from_static(
            b"-----BEGIN CERTIFICATE-----\nnot one\n-----END CERTIFICATE-----\n",
        ),
    )
    .await;
    assert!(refused.is_err());
    let line: serde_json::Value =
        serde_json::from_str(&wait_for("certificate exchange refused")).unwrap();
    assert_eq!(line["alias"], "orders-receiver");
    assert_eq!(line["by"], "keyadmin");

    let exchange = Command::new(env!("CARGO_BIN_EXE_wssgate"))
        .args([
            "keystore",
            "-c",
            config_path.to_str().unwrap(),
            "exchange",
            "orders-receiver",
        ])
        .arg(dir.path().join("new.pem"))
        .output()
        .unwrap();
    assert!(
        exchange.status.success(),
        "{}",
        String::from_utf8_lossy(&exchange.stderr)
    );
    // The command line's audit actor is the user it runs as.
    let user = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout).unwrap();
    let records = wssgate::keystore::audit::read(&dir.path().join("var")).unwrap();
    let by_cli = records
        .iter()
        .find(|r| r.action == "exchange" && r.result == "ok")
        .unwrap();
    assert_eq!(by_cli.actor, format!("cli:{}", user.trim()));
    common::signal("HUP", child.id());
    let reloaded: serde_json::Value = serde_json::from_str(&wait_for("reloaded")).unwrap();
    assert_eq!(reloaded["generation"], 2);

    let (status, _, _) = net::post(&client, &url, "text/xml", BODY.as_bytes()).await;
    assert_eq!(status, 200);
    let last = receiver.received().pop().unwrap();
    assert_eq!(
        last.certificate.as_deref(),
        Some(new.recipient().info().sha256.as_str())
    );

    common::signal("TERM", child.id());
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(
        status.success(),
        "SIGTERM ends the daemon with exit 0: {status}"
    );
}

#[test]
fn logs_are_plain_in_a_pipe_and_json_to_the_last_line() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.toml");
    // A fatal error of `serve --log-format json` is a JSON line too.
    let out = Command::new(env!("CARGO_BIN_EXE_wssgate"))
        .args(["serve", "--log-format", "json", "-c"])
        .arg(&missing)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.trim().is_empty());
    for line in stderr.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_eq!(v["level"], "ERROR");
        assert!(
            v["error"].as_str().unwrap().contains("missing.toml"),
            "{line}"
        );
    }
    // Text logs written to a pipe (a journal, a file) carry no colour codes.
    common::write_keystore(
        dir.path(),
        &[("orders-receiver", common::receiver().cert_pem())],
    );
    let config = dir.path().join("wssgate.toml");
    std::fs::write(
        &config,
        format!(
            "[admin]\nlisten = \"127.0.0.1:0\"\n{}",
            net::config("http://127.0.0.1:9/s", "", "")
        )
        .replace("{dir}", dir.path().to_str().unwrap()),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_wssgate"))
        .args(["serve", "-c"])
        .arg(&config)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut text = String::new();
    let mut reader = BufReader::new(child.stderr.take().unwrap());
    while !text.contains("proxy listening") {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap() == 0 {
            break;
        }
        text.push_str(&line);
    }
    common::signal("TERM", child.id());
    let _ = child.wait();
    assert!(text.contains("proxy listening"), "{text}");
    assert!(!text.contains('\x1b'), "{text:?}");
}
