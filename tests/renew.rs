//! `wssgate ctl` and `wssgate renew`, scripted, against a running daemon.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::net::{self, Daemon, Receiver};
use common::{CertSpec, TestReceiver};
use wssgate::admin::contract::{RouteState, RouteView};

const BODY: &str = r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><m:x xmlns:m="urn:m"/></soap:Body></soap:Envelope>"#;

fn wssgate(daemon: &Daemon, role_token: &str, args: &[&str]) -> std::process::Output {
    let token = daemon.dir.path().join(format!("{role_token}.token"));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wssgate"));
    cmd.arg(args[0])
        .args([
            "--admin",
            &daemon.admin_url(""),
            "--token-file",
            token.to_str().unwrap(),
        ])
        .args(&args[1..]);
    cmd.output().unwrap()
}

async fn run(
    daemon: &Arc<Daemon>,
    role_token: &'static str,
    args: Vec<String>,
) -> std::process::Output {
    let daemon = daemon.clone();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        wssgate(&daemon, role_token, &args)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renew_exclusive_and_overlap_scripted() {
    let (c1, c2, c3) = (
        TestReceiver::new(&CertSpec {
            serial: 1,
            ..CertSpec::default()
        }),
        TestReceiver::new(&CertSpec {
            serial: 2,
            ..CertSpec::default()
        }),
        TestReceiver::new(&CertSpec {
            serial: 3,
            ..CertSpec::default()
        }),
    );
    let mut keys = wssgate::wss::keys::KeyRing::default();
    for c in [&c1, &c2, &c3] {
        keys.push(wssgate::wss::keys::from_pem(&c.key_and_cert_pem(), "k").unwrap());
    }
    let receiver = Receiver::start(keys).await.unwrap();
    let daemon = Arc::new(
        Daemon::start(
            &net::config(&format!("http://{}/s", receiver.addr), "", ""),
            &[("orders-receiver", c1.cert_pem())],
        )
        .await,
    );
    for (i, c) in [&c2, &c3].iter().enumerate() {
        std::fs::write(daemon.dir.path().join(format!("new{i}.pem")), c.cert_pem()).unwrap();
    }
    let new0 = daemon.dir.path().join("new0.pem").display().to_string();
    let new1 = daemon.dir.path().join("new1.pem").display().to_string();

    // Requests arrive throughout the exclusive renewal.
    let d = daemon.clone();
    let traffic = tokio::spawn(async move {
        let client = net::client();
        let mut statuses = Vec::new();
        for _ in 0..40 {
            statuses.push(
                net::post(&client, &d.url("/orders"), "text/xml", BODY.as_bytes())
                    .await
                    .0,
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        statuses
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let args = [
        "renew",
        "exclusive",
        "--alias",
        "orders-receiver",
        "--cert",
        &new0,
        "--receiver-ready",
        "--wait",
        "10",
    ];
    let out = run(
        &daemon,
        "root",
        args.iter().map(|s| s.to_string()).collect(),
    )
    .await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for step in [
        "1.  keystore administrator: staging",
        "2.  operator: pausing route orders",
        "3.  receiver administrator: swap",
        "4.  operator: resumed route orders; serial 2 is live",
        "done",
    ] {
        assert!(text.contains(step), "{step} missing in:\n{text}");
    }
    let statuses = traffic.await.unwrap();
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(
        receiver.received().len(),
        40,
        "every request delivered once"
    );

    let args = [
        "renew",
        "overlap",
        "--alias",
        "orders-receiver",
        "--cert",
        &new1,
        "--receiver-ready",
    ];
    let out = run(
        &daemon,
        "root",
        args.iter().map(|s| s.to_string()).collect(),
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (status, _, _) = net::post(
        &net::client(),
        &daemon.url("/orders"),
        "text/xml",
        BODY.as_bytes(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        receiver.received().last().unwrap().certificate.as_deref(),
        Some(c3.recipient().info().sha256.as_str())
    );

    // ctl: routes as a table and as JSON, pause and resume.
    let out = run(&daemon, "reader", vec!["ctl".into(), "routes".into()]).await;
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("orders") && table.contains("active") && table.contains(" 3 "),
        "{table}"
    );
    let out = run(
        &daemon,
        "ops",
        vec![
            "ctl".into(),
            "pause".into(),
            "orders".into(),
            "--wait".into(),
            "5".into(),
        ],
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(
        &daemon,
        "reader",
        vec!["ctl".into(), "--json".into(), "routes".into()],
    )
    .await;
    let routes: Vec<RouteView> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(routes[0].state, RouteState::Paused);
    let out = run(
        &daemon,
        "reader",
        vec!["ctl".into(), "resume".into(), "orders".into()],
    )
    .await;
    assert!(!out.status.success(), "a read token may not resume");
    let out = run(
        &daemon,
        "ops",
        vec!["ctl".into(), "resume".into(), "orders".into()],
    )
    .await;
    assert!(out.status.success());
}

/// `renew exclusive` with `args` added, the operator answering `answer` when asked.
async fn renew_exclusive(
    daemon: &Arc<Daemon>,
    cert: &Path,
    extra: &[&str],
    answer: &str,
) -> Output {
    let (daemon, cert) = (daemon.clone(), cert.to_path_buf());
    let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    let answer = answer.to_string();
    tokio::task::spawn_blocking(move || {
        let token = daemon.dir.path().join("root.token");
        let mut child = Command::new(env!("CARGO_BIN_EXE_wssgate"))
            .args(["renew", "--admin", &daemon.admin_url(""), "--token-file"])
            .arg(&token)
            .args(["exclusive", "--alias", "orders-receiver", "--cert"])
            .arg(&cert)
            .args(&extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let _ = child.stdin.take().unwrap().write_all(answer.as_bytes());
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renew_exclusive_validates_before_it_pauses() {
    let rx = common::receiver();
    let receiver = Receiver::start(rx.key_ring()).await.unwrap();
    // Routes identify the key by SKI: a certificate without one cannot be used.
    let config = net::config(
        &format!("http://{}/s", receiver.addr),
        "key_identifier = \"ski\"",
        "",
    );
    let daemon = Arc::new(Daemon::start(&config, &[("orders-receiver", rx.cert_pem())]).await);
    let no_ski = TestReceiver::new(&CertSpec {
        serial: 9,
        ski: false,
        ..CertSpec::default()
    });
    let (same, unusable) = (
        daemon.dir.path().join("same.pem"),
        daemon.dir.path().join("no-ski.pem"),
    );
    std::fs::write(&same, rx.cert_pem()).unwrap();
    std::fs::write(&unusable, no_ski.cert_pem()).unwrap();
    for (cert, why) in [
        (&same, "already the certificate in use"),
        (&unusable, "refused"),
    ] {
        let out = renew_exclusive(&daemon, cert, &["--receiver-ready"], "").await;
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(why) && err.contains("nothing was changed"),
            "{err}"
        );
        let view = daemon.client("read").route("orders").await.unwrap();
        assert_eq!(
            view.state,
            RouteState::Active,
            "{}: not paused",
            cert.display()
        );
        let staged = daemon
            .client("read")
            .keystore_alias("orders-receiver")
            .await
            .unwrap();
        assert!(staged.pending.is_none());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renew_stopped_after_the_pause_says_what_is_left_and_how_to_go_on() {
    let rx = common::receiver();
    let next = TestReceiver::new(&CertSpec {
        serial: 9,
        ..CertSpec::default()
    });
    let mut keys = rx.key_ring();
    keys.push(wssgate::wss::keys::from_pem(&next.key_and_cert_pem(), "next").unwrap());
    let receiver = Receiver::start(keys).await.unwrap();
    let config = net::config(&format!("http://{}/s", receiver.addr), "", "");
    let daemon = Arc::new(Daemon::start(&config, &[("orders-receiver", rx.cert_pem())]).await);
    let new = daemon.dir.path().join("new.pem");
    std::fs::write(&new, next.cert_pem()).unwrap();
    // The receiver administrator is not ready: the operator answers no.
    let out = renew_exclusive(&daemon, &new, &[], "no\n").await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let resume = format!(
        "wssgate ctl --admin {} --token-file {} resume orders",
        daemon.admin_url(""),
        daemon.dir.path().join("root.token").display()
    );
    assert!(
        err.contains("left paused") && err.contains("serial 9") && err.contains(&resume),
        "{err}"
    );
    let view = daemon.client("read").route("orders").await.unwrap();
    assert_eq!(view.state, RouteState::Paused, "nothing is sent meanwhile");
    assert_eq!(
        view.certificate.serial, "4711",
        "the running certificate is unchanged"
    );
    assert!(receiver.received().is_empty());
    // The command it names finishes the renewal: the staged certificate first.
    let words: Vec<String> = resume.split(' ').skip(1).map(str::to_string).collect();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_wssgate"))
            .args(&words)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let view = daemon.client("read").route("orders").await.unwrap();
    assert_eq!(view.state, RouteState::Active);
    assert_eq!(view.certificate.serial, "9");
}

/// A daemon whose route signs with key ring `tenant` (serial 1919), its
/// receiver trusting both signing certificates, and the next key (serial
/// 1920) written to `new-signing.pem`.
async fn signing_daemon() -> (Receiver, Arc<Daemon>, String) {
    let receiver = Receiver::start(common::receiver().key_ring())
        .await
        .unwrap();
    receiver.trust(vec![
        common::signer().cert.clone(),
        common::next_signer().cert.clone(),
    ]);
    let daemon = Arc::new(
        net::start_signing(&format!("http://{}/s", receiver.addr), common::signer()).await,
    );
    let file = daemon.dir.path().join("new-signing.pem");
    common::write_secret(&file, common::next_signer().key_and_cert_pem());
    (receiver, daemon, file.display().to_string())
}

/// `n` requests through the signing route, each answered 200.
async fn send_signed(daemon: &Daemon, n: usize) {
    let client = net::client();
    for _ in 0..n {
        let (status, _, body) =
            net::post(&client, &daemon.url("/orders"), "text/xml", BODY.as_bytes()).await;
        assert_eq!(status, 200, "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renew_overlap_of_the_signing_key_shows_the_next_signatures_by_the_new_key() {
    let (receiver, daemon, file) = signing_daemon().await;
    send_signed(&daemon, 3).await;
    // Traffic goes on while the operator renews, until the renewal is done.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let traffic = net::clients(&daemon, &stop, 2, "v", Duration::from_millis(20), BODY);
    let args = [
        "renew",
        "overlap",
        "--ring",
        "tenant",
        "--add",
        &file,
        "--receiver-ready",
        "--wait",
        "30",
    ];
    let out = run(
        &daemon,
        "root",
        args.iter().map(|s| s.to_string()).collect(),
    )
    .await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for step in [
        "signing key renewal (overlap) of key ring tenant: routes orders; serial 1919 signs now, serial 1920 is new",
        "1.  receiver administrator: make the receiver trust the new signing certificate (serial 1920)",
        "2.  keystore administrator: adding the key to key ring tenant",
        "live: serial 1920 is the active key of tenant",
        "serial 1919 retained until",
        "3.  the next messages are signed by the new key",
        "4.  receiver administrator: the receiver may drop its trust in the old signing certificate (serial 1919)",
        "done",
    ] {
        assert!(text.contains(step), "{step:?} missing from:\n{text}");
    }
    let active = text
        .lines()
        .find(|l| l.trim_start().starts_with("active") && l.contains("serial 1920"))
        .unwrap_or_else(|| panic!("no use of serial 1920:\n{text}"));
    assert!(active.contains("messages signed"), "{active}");
    assert!(!active.contains("not used"), "{active}");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in traffic {
        assert!(t.await.unwrap().iter().all(|s| s.status == 200));
    }
    // The receiver's records agree: the last message is signed by the new key.
    let last = receiver.received().pop().unwrap();
    assert_eq!(
        last.signature
            .as_ref()
            .and_then(|s| s.signer())
            .map(|s| s.serial.clone()),
        Some("1920".to_string())
    );

    // The same key again: nothing to do, and said so.
    let out = run(
        &daemon,
        "root",
        args.iter().map(|s| s.to_string()).collect(),
    )
    .await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("serial 1920 is already the active key of tenant; nothing was changed"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renew_keyring_on_a_signing_ring_reports_signatures() {
    let (_receiver, daemon, file) = signing_daemon().await;
    send_signed(&daemon, 4).await;
    let out = run(
        &daemon,
        "root",
        ["renew", "keyring", "tenant", "--add", &file]
            .iter()
            .map(|s| s.to_string())
            .collect(),
    )
    .await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let retained = text
        .lines()
        .find(|l| l.trim_start().starts_with("retained") && l.contains("serial 1919"))
        .unwrap_or_else(|| panic!("no line for serial 1919:\n{text}"));
    assert!(
        retained.contains("still used: 4 messages signed"),
        "{retained}"
    );
    assert!(
        text.contains("routes orders sign with serial 1920 from now on"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renew_of_the_signing_key_refuses_mixed_or_bad_arguments_before_any_change() {
    let (_receiver, daemon, file) = signing_daemon().await;
    let mixed = run(
        &daemon,
        "root",
        [
            "renew",
            "exclusive",
            "--ring",
            "tenant",
            "--add",
            &file,
            "--alias",
            "orders-receiver",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
    )
    .await;
    assert_eq!(mixed.status.code(), Some(2), "{mixed:?}");
    // A certificate that is not the key's: refused before anything is paused.
    let bad = daemon.dir.path().join("bad.pem");
    let mut pem = common::next_signer().key_pem();
    pem.extend_from_slice(&common::signer().cert_pem());
    common::write_secret(&bad, pem);
    let out = run(
        &daemon,
        "root",
        [
            "renew",
            "exclusive",
            "--ring",
            "tenant",
            "--add",
            bad.to_str().unwrap(),
            "--receiver-ready",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
    )
    .await;
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    let routes: Vec<RouteView> = daemon.client("read").routes().await.unwrap();
    assert!(routes.iter().all(|r| r.state == RouteState::Active));
    let view = daemon.client("read").keyring("tenant").await.unwrap();
    assert_eq!(view.keys.len(), 1);
    assert_eq!(view.keys[0].serial, "1919");
    assert_eq!(view.signing_routes, ["orders"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renew_exclusive_of_the_signing_key_unconfirmed_leaves_the_routes_paused() {
    let (receiver, daemon, file) = signing_daemon().await;
    send_signed(&daemon, 2).await;
    // No answer to the prompt (stdin closed): the receiver is not confirmed.
    let out = run(
        &daemon,
        "root",
        [
            "renew",
            "exclusive",
            "--ring",
            "tenant",
            "--add",
            &file,
            "--wait",
            "10",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
    )
    .await;
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("1.  operator: pausing route orders"),
        "{text}"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    for part in [
        "the receiver is not confirmed ready",
        "routes orders are left paused (nothing is sent)",
        "serial 1920 is the active key of tenant",
        "resume orders",
    ] {
        assert!(err.contains(part), "{part:?} missing from: {err}");
    }
    let read = daemon.client("read");
    assert_eq!(
        read.route("orders").await.unwrap().state,
        RouteState::Paused
    );
    assert_eq!(read.keyring("tenant").await.unwrap().keys[0].serial, "1920");
    let before = receiver.received().len();
    // Resumed as the message says: signed by the new key.
    daemon.client("operator").resume("orders").await.unwrap();
    send_signed(&daemon, 1).await;
    let received = receiver.received();
    assert_eq!(received.len(), before + 1);
    assert!(common::carries_token_of(
        &received[before].raw,
        common::next_signer()
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renew_exclusive_of_the_signing_key_with_json_prints_the_outcome_only() {
    let (receiver, daemon, file) = signing_daemon().await;
    // Traffic until the renewal is done, so that the new key signs after the resume.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let traffic = net::clients(&daemon, &stop, 2, "j", Duration::from_millis(10), BODY);
    let args = [
        "renew",
        "exclusive",
        "--json",
        "--ring",
        "tenant",
        "--add",
        &file,
        "--receiver-ready",
        "--wait",
        "30",
    ];
    let out = run(
        &daemon,
        "root",
        args.iter().map(|s| s.to_string()).collect(),
    )
    .await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let outcome: wssgate::command::renew::SigningKeyRenewal = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| {
            panic!("{e}: {}", String::from_utf8_lossy(&out.stdout));
        });
    assert_eq!(outcome.procedure, "exclusive");
    assert_eq!(outcome.ring, "tenant");
    assert_eq!(outcome.routes, ["orders"]);
    assert_eq!(outcome.previous.map(|p| p.serial).as_deref(), Some("1919"));
    assert_eq!(outcome.current.serial, "1920");
    assert_eq!(outcome.keys[0].serial, "1920");
    assert!(outcome.keys[0].signatures > 0, "{:?}", outcome.keys);
    // The steps went to stderr.
    assert!(err.contains("1.  operator: pausing route orders"), "{err}");
    assert!(err.contains("done"), "{err}");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in traffic {
        assert!(t.await.unwrap().iter().all(|s| s.status == 200));
    }
    assert!(
        receiver
            .received()
            .last()
            .is_some_and(|r| common::carries_token_of(&r.raw, common::next_signer()))
    );
}
