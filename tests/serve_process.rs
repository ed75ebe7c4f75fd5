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

fn kill(signal: &str, pid: u32) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

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
    let config = format!(
        "[admin]\nlisten = \"127.0.0.1:{admin_port}\"\n{}",
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
    kill("HUP", child.id());
    let reloaded: serde_json::Value = serde_json::from_str(&wait_for("reloaded")).unwrap();
    assert_eq!(reloaded["generation"], 2);

    let (status, _, _) = net::post(&client, &url, "text/xml", BODY.as_bytes()).await;
    assert_eq!(status, 200);
    let last = receiver.received().pop().unwrap();
    assert_eq!(
        last.certificate.as_deref(),
        Some(new.recipient().info().sha256.as_str())
    );

    kill("TERM", child.id());
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(
        status.success(),
        "SIGTERM ends the daemon with exit 0: {status}"
    );
}
