//! A daemon under a small open-file limit: a `hold_max` that cannot fit is refused
//! at start, and a burst of requests against a paused route never loses a held
//! request to EMFILE — connections beyond the budget wait in the backlog, the
//! admin API still answers, and every request is answered.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::net::{self, Receiver};
use common::{KillOnDrop, free_port};

const BODY: &str = r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><m:x xmlns:m="urn:m">1</m:x></soap:Body></soap:Envelope>"#;

/// `wssgate serve` under `ulimit -n 128` (soft and hard).
fn serve(dir: &std::path::Path) -> (KillOnDrop, mpsc::Receiver<String>) {
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "ulimit -n 128 && exec {} serve -c {}/wssgate.toml",
            env!("CARGO_BIN_EXE_wssgate"),
            dir.display()
        ))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (KillOnDrop(child), rx)
}

fn wait_for(lines: &mpsc::Receiver<String>, needle: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut seen = String::new();
    while std::time::Instant::now() < deadline {
        if let Ok(line) = lines.recv_timeout(Duration::from_millis(100)) {
            if line.contains(needle) {
                return line;
            }
            seen.push_str(&line);
            seen.push('\n');
        }
    }
    panic!("no line with {needle:?} in:\n{seen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_requests_are_never_lost_to_the_descriptor_limit() {
    let rx = common::receiver();
    let receiver = Receiver::start(rx.key_ring()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    common::write_keystore(dir.path(), &[("orders-receiver", rx.cert_pem())]);
    common::write_secret(&dir.path().join("ops.token"), "operator-token-0123456789");
    let (port, admin_port) = (free_port(), free_port());
    let config = |hold_max: usize| {
        format!(
            "[admin]\nlisten = \"127.0.0.1:{admin_port}\"\ntokens = [ {{ name = \"ops\", role = \"operator\", file = \"ops.token\" }} ]\n{}",
            net::config(
                &format!("http://{}/s", receiver.addr),
                &format!("hold_max = {hold_max}\nhold_timeout = \"30s\""),
                ""
            )
        )
        .replace("listen = \"127.0.0.1:0\"", &format!("listen = \"127.0.0.1:{port}\""))
        .replace("{dir}", dir.path().to_str().unwrap())
    };

    // 128 descriptors admit 37 connections (after 32 kept, 16 admin places and 5
    // for idle upstream connections): the default hold_max cannot fit.
    std::fs::write(dir.path().join("wssgate.toml"), config(1000)).unwrap();
    let (mut refused, lines) = serve(dir.path());
    let line = wait_for(&lines, "hold_max");
    assert!(line.contains("LimitNOFILE"), "{line}");
    let status = refused.0.wait().unwrap();
    assert!(!status.success());

    std::fs::write(dir.path().join("wssgate.toml"), config(20)).unwrap();
    let (daemon, lines) = serve(dir.path());
    let budget = wait_for(&lines, "descriptor budget");
    assert!(budget.contains("idle_upstream=5"), "{budget}");
    wait_for(&lines, "proxy listening");
    let admin = wssgate::admin::client::AdminClient::with_token(
        &format!("http://127.0.0.1:{admin_port}"),
        "operator-token-0123456789",
    )
    .unwrap();
    admin.pause("orders", None).await.unwrap();
    let open_files = || {
        std::fs::read_dir(format!("/proc/{}/fd", daemon.0.id()))
            .expect("the daemon's descriptors in /proc")
            .count()
    };
    let before = open_files();

    // 100 clients at once, each on its own connection.
    let url = format!("http://127.0.0.1:{port}/orders");
    let mut clients = Vec::new();
    for i in 0..100 {
        let url = url.clone();
        clients.push(tokio::spawn(async move {
            let client = net::client();
            let request = http::Request::post(url)
                .header("content-type", "text/xml")
                .header("x-request-id", format!("burst-{i}"))
                .body(http_body_util::Full::new(bytes::Bytes::from_static(
                    BODY.as_bytes(),
                )))
                .unwrap();
            match tokio::time::timeout(Duration::from_secs(60), client.request(request)).await {
                Ok(Ok(r)) => r.status().as_u16(),
                Ok(Err(_)) => 0,
                Err(_) => 1,
            }
        }));
    }
    common::eventually(Duration::from_secs(20), async || {
        admin.route("orders").await.is_ok_and(|r| r.held == 20)
    })
    .await;
    // The admin API answers while the proxy is at its budget.
    let view = admin.route("orders").await.unwrap();
    assert_eq!(view.held, 20);
    assert!(receiver.received().is_empty(), "nothing sent while paused");
    admin.resume("orders").await.unwrap();
    let mut statuses = Vec::new();
    for c in clients {
        statuses.push(c.await.unwrap());
    }
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let paused = statuses.iter().filter(|s| **s == 503).count();
    assert_eq!(
        ok + paused,
        100,
        "every request answered 200 or route-paused: {statuses:?}"
    );
    assert!(ok >= 20, "the held requests went out: {statuses:?}");
    assert_eq!(
        receiver.received().len(),
        ok,
        "what was answered 200 arrived, once"
    );
    // The released requests went out on upstream connections at once; with
    // their clients gone, the pool keeps no more of them than its places.
    common::eventually(Duration::from_secs(20), async || open_files() <= before + 5).await;
    let after = open_files();
    assert!(
        after <= before + 5,
        "{before} descriptors open before the burst, {after} after it"
    );
}
