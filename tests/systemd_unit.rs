//! The systemd unit's commands as written in `deploy/systemd/wssgate.service`,
//! with the installed configuration `deploy/systemd/wssgate.toml`, run under a
//! notification socket as systemd would provide one: READY=1 once serving,
//! RELOADING=1/READY=1 around `ExecReload`, STOPPING=1 at SIGTERM, in that order;
//! `ExecReload` fails when the daemon refuses the reload; a certificate close to
//! expiry does not keep the service from starting.
//!
//! The unit's absolute paths are mapped under a temporary root (`/etc/wssgate`,
//! `/var/lib/wssgate`) and its binary to the one under test; nothing else of the
//! command lines is changed.

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::net::{self, Receiver};
use common::{CertSpec, KillOnDrop, TestReceiver, free_port};

const BODY: &str = r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><m:x xmlns:m="urn:m">1</m:x></soap:Body></soap:Envelope>"#;

fn deploy(file: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("deploy/systemd")
            .join(file),
    )
    .unwrap()
}

/// `Key=value` lines of the unit's `[Service]` section.
fn service_setting(unit: &str, key: &str) -> Vec<String> {
    unit.lines()
        .filter_map(|l| l.trim().strip_prefix(&format!("{key}=")))
        .map(str::to_string)
        .collect()
}

/// A unit command line with the paths mapped under `root`, split as systemd
/// splits it (the unit uses no quoting).
fn command(line: &str, root: &Path) -> Command {
    let line =
        map_paths(line, root).replace("/usr/local/bin/wssgate", env!("CARGO_BIN_EXE_wssgate"));
    let mut words = line.split_whitespace();
    let mut command = Command::new(words.next().unwrap());
    command.args(words);
    command
}

fn map_paths(text: &str, root: &Path) -> String {
    let root = root.to_str().unwrap();
    text.replace("/etc/wssgate", &format!("{root}/etc/wssgate"))
        .replace("/var/lib/wssgate", &format!("{root}/var/lib/wssgate"))
}

/// The next notification's first line, within a generous bound.
fn next_state(socket: &UnixDatagram) -> String {
    let mut buf = [0u8; 1024];
    match socket.recv(&mut buf) {
        Ok(n) => String::from_utf8_lossy(&buf[..n])
            .lines()
            .next()
            .unwrap_or("")
            .to_string(),
        Err(e) => panic!("no notification: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_units_commands_notify_ready_reloading_and_stopping() {
    let unit = deploy("wssgate.service");
    assert_eq!(service_setting(&unit, "Type"), ["notify"]);
    assert!(
        service_setting(&unit, "ExecStartPre").is_empty(),
        "no pre-start check that a near-expiry warning could fail"
    );
    let [exec_start] = &service_setting(&unit, "ExecStart")[..] else {
        panic!("one ExecStart")
    };
    let [exec_reload] = &service_setting(&unit, "ExecReload")[..] else {
        panic!("one ExecReload")
    };

    // The installed layout: configuration and token in /etc/wssgate, keystore and
    // state in /var/lib/wssgate.
    let root = tempfile::tempdir().unwrap();
    let etc = root.path().join("etc/wssgate");
    let state = root.path().join("var/lib/wssgate");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::create_dir_all(state.join("keystore")).unwrap();
    // Five days left: serve warns, and starts.
    let near_expiry = TestReceiver::new(&CertSpec {
        not_after_days: 5,
        ..CertSpec::default()
    });
    std::fs::write(
        state.join("keystore/orders-receiver.pem"),
        near_expiry.cert_pem(),
    )
    .unwrap();
    common::write_secret(&etc.join("admin.token"), "systemd-admin-token-0123456789\n");
    let receiver = Receiver::start(near_expiry.key_ring()).await.unwrap();
    let (port, admin_port) = (free_port(), free_port());
    let config = map_paths(&deploy("wssgate.toml"), root.path())
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{port}"))
        .replace("127.0.0.1:9090", &format!("127.0.0.1:{admin_port}"))
        + &format!(
            "\n[[route]]\nname = \"orders\"\npath = \"/orders\"\nupstream = \"http://{}/s\"\nalias = \"orders-receiver\"\n",
            receiver.addr
        );
    let config_path = etc.join("wssgate.toml");
    std::fs::write(&config_path, &config).unwrap();

    let notify_path = root.path().join("notify");
    let manager = UnixDatagram::bind(&notify_path).unwrap();
    manager
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let child = command(exec_start, root.path())
        .env("NOTIFY_SOCKET", &notify_path)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let child = KillOnDrop(child);
    assert_eq!(next_state(&manager), "READY=1");
    // Ready means serving.
    let url = format!("http://127.0.0.1:{port}/orders");
    let (status, _, answer) = net::post(&net::client(), &url, "text/xml", BODY.as_bytes()).await;
    assert_eq!(status, 200, "{answer}");

    // ExecReload as written: succeeds, and the daemon says it was reloading.
    let reload = command(exec_reload, root.path()).output().unwrap();
    assert!(
        reload.status.success(),
        "{}",
        String::from_utf8_lossy(&reload.stderr)
    );
    assert_eq!(next_state(&manager), "RELOADING=1");
    assert_eq!(next_state(&manager), "READY=1");

    // A configuration the daemon refuses: ExecReload fails, the daemon serves on.
    std::fs::write(
        &config_path,
        config.replace("retention_days = 90", "retention_days = 9"),
    )
    .unwrap();
    let refused = command(exec_reload, root.path()).output().unwrap();
    assert!(
        !refused.status.success(),
        "a refused reload must fail systemctl reload"
    );
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("retention_days"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert_eq!(next_state(&manager), "RELOADING=1");
    assert_eq!(next_state(&manager), "READY=1");
    let (status, _, _) = net::post(&net::client(), &url, "text/xml", BODY.as_bytes()).await;
    assert_eq!(status, 200);

    // KillSignal=SIGTERM: STOPPING=1 first, then a clean exit.
    common::signal("TERM", child.0.id());
    assert_eq!(next_state(&manager), "STOPPING=1");
    let mut child = child;
    let status = child.0.wait().unwrap();
    assert!(status.success(), "{status}");
}

#[test]
fn the_installed_configuration_is_valid_with_its_token_in_place() {
    let root = tempfile::tempdir().unwrap();
    let etc = root.path().join("etc/wssgate");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::create_dir_all(root.path().join("var/lib/wssgate/keystore")).unwrap();
    common::write_secret(&etc.join("admin.token"), "systemd-admin-token-0123456789\n");
    let path = etc.join("wssgate.toml");
    std::fs::write(&path, map_paths(&deploy("wssgate.toml"), root.path())).unwrap();
    let check = Command::new(env!("CARGO_BIN_EXE_wssgate"))
        .args(["check", "-c", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
}
