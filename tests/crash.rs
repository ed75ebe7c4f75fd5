//! Crash safety with real processes and SIGKILL: a keystore exchange killed at
//! any moment leaves the old or the new certificate (never a torn file) and can
//! be repeated; a daemon killed inside a pause restarts paused; a daemon killed
//! while exchanging certificates under load restarts and serves.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::net::{self, Receiver};
use common::{CertSpec, KillOnDrop, TestReceiver, free_port};
use http_body_util::{BodyExt, Full};

const BODY: &str = r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><m:ping xmlns:m="urn:m">1</m:ping></soap:Body></soap:Envelope>"#;
const TOKEN: &str = "crash-test-admin-token-0123456789";

/// A small deterministic sequence of pseudo-random delays.
struct Jitter(u64);

impl Jitter {
    fn next_micros(&mut self, max: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % max
    }
}

struct Setup {
    dir: tempfile::TempDir,
    config: PathBuf,
    proxy: u16,
    admin: u16,
}

fn setup(upstream: &str, old: &TestReceiver, new: &TestReceiver) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    common::write_keystore(dir.path(), &[("orders-receiver", old.cert_pem())]);
    std::fs::write(dir.path().join("old.pem"), old.cert_pem()).unwrap();
    std::fs::write(dir.path().join("new.pem"), new.cert_pem()).unwrap();
    common::write_secret(&dir.path().join("admin.token"), TOKEN);
    let (proxy, admin) = (free_port(), free_port());
    let config = format!(
        r#"[proxy]
listen = "127.0.0.1:{proxy}"
upstream_timeout = "5s"

[admin]
listen = "127.0.0.1:{admin}"
tokens = [ {{ name = "ops", role = "admin", file = "admin.token" }} ]

[keystore]
dir = "keystore"
state_dir = "var"

[[route]]
name = "orders"
path = "/orders"
upstream = "{upstream}"
alias = "orders-receiver"
on_pause = "reject"
"#
    );
    let path = dir.path().join("wssgate.toml");
    std::fs::write(&path, config).unwrap();
    Setup {
        dir,
        config: path,
        proxy,
        admin,
    }
}

fn wssgate(args: &[&str], config: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_wssgate"));
    c.args(args).arg("-c").arg(config);
    c
}

/// `wssgate keystore -c CONFIG exchange orders-receiver FILE`.
fn keystore_exchange(s: &Setup, file: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_wssgate"));
    c.args(["keystore", "-c"])
        .arg(&s.config)
        .args(["exchange", "orders-receiver"])
        .arg(s.dir.path().join(file));
    c
}

/// A daemon process, killed with SIGKILL when dropped.
fn serve(s: &Setup) -> KillOnDrop {
    KillOnDrop(
        wssgate(&["serve"], &s.config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// SIGKILL (what the guard's drop does), spelled out where the test means it.
fn sigkill(daemon: KillOnDrop) {
    drop(daemon);
}

async fn admin(s: &Setup, method: &str, path: &str, body: &[u8]) -> (u16, serde_json::Value) {
    let request = http::Request::builder()
        .method(method)
        .uri(format!("http://127.0.0.1:{}{path}", s.admin))
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Full::new(Bytes::copy_from_slice(body)))
        .unwrap();
    match net::client().request(request).await {
        Ok(response) => {
            let status = response.status().as_u16();
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            (status, serde_json::from_slice(&bytes).unwrap_or_default())
        }
        Err(_) => (0, serde_json::Value::Null),
    }
}

async fn wait_ready(s: &Setup) {
    common::eventually(Duration::from_secs(10), async || {
        admin(s, "GET", "/readyz", b"").await.0 == 200
    })
    .await;
    assert_eq!(admin(s, "GET", "/readyz", b"").await.0, 200, "daemon ready");
}

/// The active certificate on disk, which must be one of `candidates` whole.
fn active_is_one_of(s: &Setup, candidates: &[&TestReceiver]) -> usize {
    let pem = std::fs::read(s.dir.path().join("keystore/orders-receiver.pem")).unwrap();
    let cert = openssl::x509::X509::from_pem(&pem)
        .unwrap_or_else(|e| panic!("the active certificate is torn: {e}"));
    let der = cert.to_der().unwrap();
    candidates
        .iter()
        .position(|c| c.cert.to_der().unwrap() == der)
        .expect("the active certificate is the old or the new one")
}

fn two_receivers() -> (&'static TestReceiver, TestReceiver) {
    let new = TestReceiver::new(&CertSpec {
        serial: 77,
        common_name: "receiver-next".into(),
        ..CertSpec::default()
    });
    (common::receiver(), new)
}

#[test]
fn a_keystore_exchange_killed_at_any_moment_leaves_old_or_new_and_can_be_repeated() {
    let (old, new) = two_receivers();
    let s = setup("http://127.0.0.1:9/", old, &new);
    let mut jitter = Jitter(0x5eed);
    let mut outcomes = [0usize; 2];
    let kills = 40;
    for round in 0..kills {
        let target = if round % 2 == 0 { "new.pem" } else { "old.pem" };
        let mut child = keystore_exchange(&s, target)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // An exchange (process start, checks, four fsynced steps) takes 10-20 ms
        // here: kill anywhere in it, or after it.
        std::thread::sleep(Duration::from_micros(jitter.next_micros(30_000)));
        let _ = child.kill();
        child.wait().unwrap();
        outcomes[active_is_one_of(&s, &[old, &new])] += 1;
        // The keystore loads: `check` accepts it.
        let check = wssgate(&["check"], &s.config).output().unwrap();
        assert!(
            check.status.success(),
            "round {round}: {}",
            String::from_utf8_lossy(&check.stderr)
        );
    }
    // A completed exchange after all of that works.
    let done = keystore_exchange(&s, "new.pem").output().unwrap();
    let active = active_is_one_of(&s, &[old, &new]);
    // Exchanging to the certificate already active may be refused as a no-op.
    assert!(
        done.status.success() || active == 1,
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert_eq!(active, 1);
    println!(
        "{kills} exchanges killed: old active {}×, new active {}×",
        outcomes[0], outcomes[1]
    );
    assert!(
        outcomes[0] > 0 && outcomes[1] > 0,
        "kills landed both before and after the switch: {outcomes:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_killed_inside_a_pause_restarts_paused() {
    let (old, new) = two_receivers();
    let receiver = Receiver::start(old.key_ring()).await.unwrap();
    let s = setup(&format!("http://{}/s", receiver.addr), old, &new);
    let child = serve(&s);
    wait_ready(&s).await;
    let url = format!("http://127.0.0.1:{}/orders", s.proxy);
    let client = net::client();
    assert_eq!(
        net::post(&client, &url, "text/xml", BODY.as_bytes())
            .await
            .0,
        200
    );
    assert_eq!(
        admin(&s, "POST", "/v1/routes/orders/pause", b"").await.0,
        200
    );
    sigkill(child);

    let child = serve(&s);
    wait_ready(&s).await;
    let (status, routes) = admin(&s, "GET", "/v1/routes", b"").await;
    assert_eq!(status, 200);
    assert!(routes.to_string().contains("paused"), "{routes}");
    let (status, _, answer) = net::post(&client, &url, "text/xml", BODY.as_bytes()).await;
    assert_eq!(status, 503, "still paused after kill -9: {answer}");
    assert_eq!(
        receiver.received().len(),
        1,
        "nothing sent during the pause"
    );
    assert_eq!(
        admin(&s, "POST", "/v1/routes/orders/resume", b"").await.0,
        200
    );
    assert_eq!(
        net::post(&client, &url, "text/xml", BODY.as_bytes())
            .await
            .0,
        200
    );
    sigkill(child);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_killed_while_exchanging_under_load_restarts_and_serves() {
    let (old, new) = two_receivers();
    let mut keys = old.key_ring();
    keys.push(wssgate::wss::keys::from_pem(&new.key_and_cert_pem(), "new").unwrap());
    let receiver = Receiver::start(keys).await.unwrap();
    let s = setup(&format!("http://{}/s", receiver.addr), old, &new);
    let certs = [old.cert_pem(), new.cert_pem()];
    let url = format!("http://127.0.0.1:{}/orders", s.proxy);
    let mut jitter = Jitter(42);
    let mut exchanged = 0;
    for round in 0..5 {
        let child = serve(&s);
        wait_ready(&s).await;
        let deadline =
            Instant::now() + Duration::from_millis(300 + jitter.next_micros(700_000) / 1000);
        let load = {
            let url = url.clone();
            tokio::spawn(async move {
                let client = net::client();
                while Instant::now() < deadline {
                    let request = http::Request::post(url.as_str())
                        .header("content-type", "text/xml")
                        .body(Full::new(Bytes::from_static(BODY.as_bytes())))
                        .unwrap();
                    let _ = client.request(request).await;
                }
            })
        };
        let mut n = 0;
        while Instant::now() < deadline {
            if admin(&s, "PUT", "/v1/keystore/orders-receiver", &certs[n % 2])
                .await
                .0
                == 200
            {
                exchanged += 1;
            }
            n += 1;
        }
        sigkill(child);
        load.await.unwrap();
        active_is_one_of(&s, &[old, &new]);
        // Restart: the keystore loads and requests are encrypted for a
        // certificate the receiver holds.
        let child = serve(&s);
        wait_ready(&s).await;
        let before = receiver.received().len();
        let (status, _, answer) =
            net::post(&net::client(), &url, "text/xml", BODY.as_bytes()).await;
        assert_eq!(status, 200, "round {round}: {answer}");
        let got = receiver.received();
        assert_eq!(got.len(), before + 1);
        assert!(
            got.iter().all(|r| !r.complete || r.decrypted.is_ok()),
            "every complete message decrypts"
        );
        sigkill(child);
    }
    println!("5 kills; {exchanged} exchanges completed before them");
    assert!(
        exchanged > 0,
        "exchanges were under way when the daemon was killed"
    );
}
