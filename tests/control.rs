//! Concurrent operations through `Control` — exchanges, stagings, timed and
//! on-resume activations, pauses and resumes of several routes at once — leave
//! the keystore, the archive, the audit log, the pause file and the published
//! snapshot consistent with each other.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use wssgate::control::{Actor, Control, PauseFile};
use wssgate::daemon::Daemon;
use wssgate::keystore::{Activation, Keystore, audit};

const ROUTES: [&str; 3] = ["a", "b", "c"];

async fn daemon(dir: &std::path::Path) -> Daemon {
    common::write_keystore(dir, &[("shared", common::receiver().cert_pem())]);
    let mut config = format!(
        "[proxy]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[keystore]\ndir = \"{d}/keystore\"\nstate_dir = \"{d}/var\"\n",
        d = dir.display()
    );
    for r in ROUTES {
        config.push_str(&format!(
            "[[route]]\nname = \"{r}\"\npath = \"/{r}\"\nupstream = \"http://127.0.0.1:9/{r}\"\nalias = \"shared\"\n"
        ));
    }
    let path = dir.join("wssgate.toml");
    std::fs::write(&path, config).unwrap();
    Daemon::load(&path).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_operations_leave_every_record_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = daemon(dir.path()).await;
    let control: Arc<Control> = daemon.control.clone();
    let certificates: Vec<Bytes> = (0..12)
        .map(|i| {
            Bytes::from(
                common::TestReceiver::new(&common::CertSpec {
                    serial: 5000 + i,
                    bits: 2048,
                    ..Default::default()
                })
                .cert_pem(),
            )
        })
        .collect();
    // Each task returns how many staged certificates it activated.
    let mut tasks = Vec::new();
    // Exchanges.
    for (i, pem) in certificates[..6].iter().cloned().enumerate() {
        let control = control.clone();
        tasks.push(tokio::spawn(async move {
            let actor = format!("exchanger-{i}");
            control
                .exchange("shared", pem, Actor(&actor))
                .await
                .unwrap();
            0
        }));
    }
    // Stagings, activated on resume or at a time already past.
    for (i, pem) in certificates[6..].iter().cloned().enumerate() {
        let control = control.clone();
        tasks.push(tokio::spawn(async move {
            let activation = if i % 2 == 0 {
                Activation::OnResume
            } else {
                Activation::At {
                    at: SystemTime::now() - Duration::from_secs(1),
                }
            };
            let actor = format!("stager-{i}");
            let _ = control
                .stage("shared", pem, activation, Actor(&actor))
                .await;
            control
                .activate_due(SystemTime::now())
                .await
                .into_iter()
                .filter(Result::is_ok)
                .count()
        }));
    }
    // Pauses and resumes of every route, interleaved.
    for round in 0..4 {
        for route in ROUTES {
            let control = control.clone();
            tasks.push(tokio::spawn(async move {
                let actor = format!("operator-{round}");
                control
                    .pause(route, Actor(&actor), Some(Duration::from_millis(50)))
                    .await
                    .unwrap();
                tokio::task::yield_now().await;
                let resumed = control.resume(route, Actor(&actor)).await.unwrap();
                resumed.activated.is_some() as usize
            }));
        }
    }
    let mut activations = 0;
    for t in tasks {
        activations += t.await.unwrap();
    }
    // Whatever is still staged for on-resume comes in with one last pause/resume.
    control.pause("a", Actor("closer"), None).await.unwrap();
    let last = control.resume("a", Actor("closer")).await.unwrap();
    activations += last.activated.is_some() as usize;
    // A route paused and left paused, to check the pause file agrees.
    control.pause("c", Actor("closer"), None).await.unwrap();

    let snapshot = daemon.shared.load();
    let store = Keystore::new(snapshot.config.keystore.clone());
    let on_disk = store.load().unwrap()["shared"].certificate.clone().unwrap();
    // The snapshot serves what the keystore holds.
    assert_eq!(
        snapshot.aliases["shared"].info().sha256,
        on_disk.info().sha256
    );
    // Every change retired one certificate into the archive, each exactly once.
    let records = audit::read(&snapshot.config.keystore.state_dir).unwrap();
    let changes = records
        .iter()
        .filter(|r| r.action == "exchange" && r.result == "ok")
        .count();
    let archived = store.archived("shared").unwrap();
    assert_eq!(
        archived.len(),
        changes,
        "archive entries vs audited changes"
    );
    let distinct: BTreeSet<&str> = archived.iter().map(|a| a.sha256.as_str()).collect();
    assert_eq!(
        distinct.len(),
        archived.len(),
        "a certificate archived twice"
    );
    // The history is one unbroken chain: every retired certificate was active
    // once, the current one is the last.
    let history = store.history("shared").unwrap();
    assert_eq!(history.len(), changes + 1);
    assert!(history.last().unwrap().retired_at.is_none());
    // Staged certificates that became active were audited as exchanges too:
    // the six direct exchanges plus each activation.
    assert_eq!(changes, 6 + activations, "{records:#?}");
    assert!(activations >= 1);
    assert!(store.pending("shared").unwrap().is_none());
    // Pauses and resumes: audited one for one, and the pause file says what the
    // gates say.
    let pauses = records.iter().filter(|r| r.action == "pause").count();
    let resumes = records.iter().filter(|r| r.action == "resume").count();
    assert_eq!(pauses, 12 + 2);
    assert_eq!(resumes, 12 + 1);
    let paused: Vec<String> = PauseFile::new(&snapshot.config.keystore.state_dir)
        .load()
        .unwrap()
        .into_keys()
        .collect();
    assert_eq!(paused, daemon.gates.paused());
    assert_eq!(paused, ["c"]);
}

#[tokio::test]
async fn a_damaged_pause_file_keeps_what_it_names_paused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("var")).unwrap();
    // Torn in the middle of b's record (a crash, a full disk, an edit).
    std::fs::write(
        dir.path().join("var/paused.json"),
        r#"{"paused": {"b": {"by": "ops", "since": "2026-12-0"#,
    )
    .unwrap();
    let first = daemon(dir.path()).await;
    assert_eq!(first.gates.paused(), ["b"]);
    // Written anew, so pausing and resuming work again.
    let file = PauseFile::new(&dir.path().join("var"));
    assert_eq!(file.load().unwrap().keys().collect::<Vec<_>>(), ["b"]);
    first.control.pause("a", Actor("ops"), None).await.unwrap();
    first.control.resume("b", Actor("ops")).await.unwrap();
    assert_eq!(file.load().unwrap().keys().collect::<Vec<_>>(), ["a"]);
    drop(first);

    // Unreadable: every route stays paused.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("var/paused.json")).unwrap();
    let second = daemon(dir.path()).await;
    assert_eq!(second.gates.paused(), ["a", "b", "c"]);
}

#[tokio::test]
async fn a_certificate_replaced_on_disk_is_archived_and_audited_once() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = daemon(dir.path()).await;
    let next = common::TestReceiver::new(&common::CertSpec {
        serial: 6000,
        ..Default::default()
    });
    // As a Secret update or an operator's `cp` would: no exchange, just a file.
    std::fs::write(dir.path().join("keystore/shared.pem"), next.cert_pem()).unwrap();
    let reload = |daemon: &Daemon| {
        let control = daemon.control.clone();
        async move {
            control
                .reload(wssgate::state::ReloadTrigger::Signal, None)
                .await
                .unwrap()
        }
    };
    reload(&daemon).await;
    let snapshot = daemon.shared.load();
    assert_eq!(snapshot.aliases["shared"].info().serial, "6000");
    let store = Keystore::new(snapshot.config.keystore.clone());
    let archived = store.archived("shared").unwrap();
    assert_eq!(archived.len(), 1);
    assert_eq!(archived[0].serial, "4711");
    assert!(archived[0].retain_until > archived[0].retired_at);
    let records = audit::read(&snapshot.config.keystore.state_dir).unwrap();
    let changes: Vec<_> = records.iter().filter(|r| r.action == "exchange").collect();
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].actor, "file");
    assert_eq!(changes[0].after.as_ref().unwrap().serial, "6000");
    // Reloading again changes nothing; an exchange through Control is archived
    // by the keystore itself, not a second time.
    reload(&daemon).await;
    let third = common::TestReceiver::new(&common::CertSpec {
        serial: 6001,
        ..Default::default()
    });
    daemon
        .control
        .exchange("shared", Bytes::from(third.cert_pem()), Actor("keys"))
        .await
        .unwrap();
    reload(&daemon).await;
    assert_eq!(store.archived("shared").unwrap().len(), 2);
    assert_eq!(store.history("shared").unwrap().len(), 3);
}

#[tokio::test]
async fn a_staged_certificate_is_live_before_the_first_route_releases() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = daemon(dir.path()).await;
    let next = common::TestReceiver::new(&common::CertSpec {
        serial: 7000,
        ..Default::default()
    });
    for route in ["a", "b"] {
        daemon
            .control
            .pause(route, Actor("ops"), None)
            .await
            .unwrap();
    }
    daemon
        .control
        .stage(
            "shared",
            Bytes::from(next.cert_pem()),
            Activation::OnResume,
            Actor("keys"),
        )
        .await
        .unwrap();
    // What route a holds was sent for the receiver's new key: it must go out
    // under the new certificate although route b is still paused.
    let resumed = daemon.control.resume("a", Actor("ops")).await.unwrap();
    assert_eq!(resumed.activated.unwrap().serial, "7000");
    assert_eq!(daemon.shared.load().aliases["shared"].info().serial, "7000");
    let resumed = daemon.control.resume("b", Actor("ops")).await.unwrap();
    assert!(resumed.activated.is_none());
}

#[tokio::test]
async fn a_resume_never_releases_under_a_certificate_the_keystore_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = daemon(dir.path()).await;
    daemon.control.pause("a", Actor("ops"), None).await.unwrap();
    // The keystore changes (an exchange whose reload did not happen, the command
    // line without SIGHUP): the snapshot still serves the old certificate.
    let next = common::TestReceiver::new(&common::CertSpec {
        serial: 8000,
        ..Default::default()
    });
    let snapshot = daemon.shared.load();
    Keystore::new(snapshot.config.keystore.clone())
        .exchange(
            "shared",
            &next.cert_pem(),
            "cli:test",
            &snapshot.config.certificate_policy("shared"),
            SystemTime::now(),
        )
        .unwrap();
    assert_eq!(daemon.shared.load().aliases["shared"].info().serial, "4711");
    // If it cannot be made live, the route stays paused.
    let config = dir.path().join("wssgate.toml");
    let good = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("{good}\n[[route]]\nname = 1\n")).unwrap();
    assert!(daemon.control.resume("a", Actor("ops")).await.is_err());
    assert_eq!(daemon.gates.paused(), ["a"]);
    // Once it can, the resume makes it live first.
    std::fs::write(&config, good).unwrap();
    daemon.control.resume("a", Actor("ops")).await.unwrap();
    assert_eq!(daemon.shared.load().aliases["shared"].info().serial, "8000");
}
