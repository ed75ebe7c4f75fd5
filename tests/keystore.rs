//! The keystore: refusals, exchange with archive and history, retention, crash
//! safety between every step, concurrent readers, and the audit log.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use common::{CertSpec, TestReceiver};
use wssgate::config::KeystoreConfig;
use wssgate::keystore::{ExchangeStep, Keystore, KeystoreError, audit, policy};
use wssgate::wss::CertificateError;
use wssgate::wss::certificate::CertificatePolicy;

fn config(root: &Path) -> KeystoreConfig {
    KeystoreConfig {
        dir: root.join("keystore"),
        private_dir: root.join("private"),
        state_dir: root.join("var"),
        retention_days: 90,
        min_rsa_bits: 2048,
        expiry_warning_days: 30,
        min_days_left: None,
        watch: false,
    }
}

fn certs(n: u32) -> Vec<TestReceiver> {
    (0..n)
        .map(|i| {
            TestReceiver::with_key(
                common::receiver().key.clone(),
                &CertSpec {
                    serial: 100 + i,
                    ..CertSpec::default()
                },
            )
        })
        .collect()
}

fn pol() -> CertificatePolicy {
    CertificatePolicy::default()
}

fn import(store: &Keystore, alias: &str, cert: &TestReceiver) {
    store
        .import(
            alias,
            "test.pem",
            &cert.cert_pem(),
            None,
            None,
            "test",
            &pol(),
            SystemTime::now(),
        )
        .unwrap();
}

fn active_serial(store: &Keystore, alias: &str) -> String {
    store.active(alias, &pol()).unwrap().info().serial.clone()
}

#[test]
fn each_refusal_names_alias_file_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let store = Keystore::new(config(dir.path()));
    type Case = (CertSpec, fn(&CertificateError) -> bool);
    let cases: Vec<Case> = vec![
        (
            CertSpec {
                not_before_days: -30,
                not_after_days: -1,
                ..CertSpec::default()
            },
            |e| matches!(e, CertificateError::Expired { .. }),
        ),
        (
            CertSpec {
                not_before_days: 5,
                not_after_days: 50,
                ..CertSpec::default()
            },
            |e| matches!(e, CertificateError::NotYetValid { .. }),
        ),
        (
            CertSpec {
                bits: 1024,
                ..CertSpec::default()
            },
            |e| matches!(e, CertificateError::KeyTooSmall { .. }),
        ),
        (
            CertSpec {
                key_encipherment: Some(false),
                ..CertSpec::default()
            },
            |e| *e == CertificateError::NoKeyEncipherment,
        ),
    ];
    for (spec, expected) in cases {
        let cert = TestReceiver::new(&spec);
        let err = store
            .import(
                "orders",
                "new.pem",
                &cert.cert_pem(),
                None,
                None,
                "test",
                &pol(),
                SystemTime::now(),
            )
            .unwrap_err();
        match &err {
            KeystoreError::Refused {
                alias,
                file,
                reason,
            } => {
                assert_eq!(alias, "orders");
                assert!(file.ends_with("orders.pem"), "{file}");
                assert!(expected(reason), "{reason}");
            }
            other => panic!("expected a refusal, got {other}"),
        }
    }
    let no_ski = TestReceiver::new(&CertSpec {
        ski: false,
        ..CertSpec::default()
    });
    let ski_policy = policy(store.config(), true);
    let err = store
        .import(
            "orders",
            "x.pem",
            &no_ski.cert_pem(),
            None,
            None,
            "t",
            &ski_policy,
            SystemTime::now(),
        )
        .unwrap_err();
    assert!(err.to_string().contains("SubjectKeyIdentifier"), "{err}");
    let err = store
        .import(
            "orders",
            "x.pem",
            b"garbage",
            None,
            None,
            "t",
            &pol(),
            SystemTime::now(),
        )
        .unwrap_err();
    assert!(err.to_string().contains("x.pem"), "{err}");
    assert!(matches!(
        store.import(
            "../x",
            "x.pem",
            &no_ski.cert_pem(),
            None,
            None,
            "t",
            &pol(),
            SystemTime::now()
        ),
        Err(KeystoreError::InvalidAlias(_))
    ));
    assert!(matches!(
        store.active("missing", &pol()),
        Err(KeystoreError::UnknownAlias(_))
    ));
    assert!(
        store.load().unwrap().is_empty(),
        "nothing refused was written"
    );
}

#[test]
fn exchange_archives_and_history_lists_every_period() {
    let dir = tempfile::tempdir().unwrap();
    let store = Keystore::new(config(dir.path()));
    let c = certs(3);
    import(&store, "orders", &c[0]);
    let out = store
        .exchange(
            "orders",
            &c[1].cert_pem(),
            "alice",
            &pol(),
            SystemTime::now(),
        )
        .unwrap();
    assert_eq!(out.previous.unwrap().serial, "100");
    assert_eq!(out.current.serial, "101");
    assert_eq!(active_serial(&store, "orders"), "101");
    let err = store
        .exchange(
            "orders",
            &c[1].cert_pem(),
            "alice",
            &pol(),
            SystemTime::now(),
        )
        .unwrap_err();
    assert!(
        matches!(err, KeystoreError::SameCertificate { .. }),
        "{err}"
    );
    store
        .exchange("orders", &c[2].cert_pem(), "bob", &pol(), SystemTime::now())
        .unwrap();

    let archived = store.archived("orders").unwrap();
    assert_eq!(
        archived
            .iter()
            .map(|a| a.serial.as_str())
            .collect::<Vec<_>>(),
        ["100", "101"]
    );
    for a in &archived {
        let retired = humantime::parse_rfc3339(&a.retired_at).unwrap();
        let until = humantime::parse_rfc3339(&a.retain_until).unwrap();
        assert_eq!(
            until.duration_since(retired).unwrap(),
            Duration::from_secs(90 * 86_400)
        );
        assert!(!a.issuer.is_empty() && a.sha256.len() == 64 && !a.not_after.is_empty());
    }
    // The archived PEM files are there to decrypt old messages with.
    let files: Vec<_> = std::fs::read_dir(dir.path().join("var/archive/orders"))
        .unwrap()
        .collect();
    assert_eq!(
        files.len(),
        4,
        "a .pem and a .json per archived certificate"
    );

    let history = store.history("orders").unwrap();
    let serials: Vec<&str> = history
        .iter()
        .map(|h| h.certificate.serial.as_str())
        .collect();
    assert_eq!(serials, ["100", "101", "102"]);
    assert!(history[2].retired_at.is_none(), "the last one is active");
    assert_eq!(
        history[1].active_from, history[0].retired_at,
        "periods join up"
    );
    assert_eq!(history[2].active_from, history[1].retired_at);

    assert!(matches!(
        store.exchange("unknown", &c[0].cert_pem(), "a", &pol(), SystemTime::now()),
        Err(KeystoreError::UnknownAlias(_))
    ));
}

#[test]
fn purge_honours_retention() {
    let dir = tempfile::tempdir().unwrap();
    let store = Keystore::new(config(dir.path()));
    let c = certs(2);
    import(&store, "orders", &c[0]);
    store
        .exchange("orders", &c[1].cert_pem(), "a", &pol(), SystemTime::now())
        .unwrap();
    let day = Duration::from_secs(86_400);
    let report = store.purge("a", SystemTime::now() + 89 * day).unwrap();
    assert_eq!((report.deleted.len(), report.kept.len()), (0, 1));
    assert_eq!(store.archived("orders").unwrap().len(), 1);
    let report = store.purge("a", SystemTime::now() + 91 * day).unwrap();
    assert_eq!((report.deleted.len(), report.kept.len()), (1, 0));
    assert_eq!(report.deleted[0].serial, "100");
    assert!(store.archived("orders").unwrap().is_empty());
    assert_eq!(
        active_serial(&store, "orders"),
        "101",
        "purge never touches the active certificate"
    );
}

#[test]
fn a_crash_between_any_two_steps_leaves_old_or_new_active() {
    let c = certs(2);
    for (step, expect_new) in [
        (ExchangeStep::Validated, false),
        (ExchangeStep::Archived, false),
        (ExchangeStep::Replaced, true),
        (ExchangeStep::Recorded, true),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let store = Keystore::new(config(dir.path()));
        import(&store, "orders", &c[0]);
        let crashing = store.clone().fail_after(step);
        let err = crashing
            .exchange("orders", &c[1].cert_pem(), "a", &pol(), SystemTime::now())
            .unwrap_err();
        assert!(matches!(err, KeystoreError::SimulatedCrash(s) if s == step));
        // What a restarted process finds: a valid keystore with one of the two.
        let entries = store.load().unwrap();
        assert_eq!(
            entries.len(),
            1,
            "{step:?}: no temporary file is taken for an alias"
        );
        let serial = active_serial(&store, "orders");
        assert_eq!(serial, if expect_new { "101" } else { "100" }, "{step:?}");
        // History stays consistent, and the exchange can be completed or repeated.
        let history = store.history("orders").unwrap();
        assert_eq!(history.last().unwrap().certificate.serial, serial);
        assert_eq!(history.iter().filter(|h| h.retired_at.is_none()).count(), 1);
        match store.exchange("orders", &c[1].cert_pem(), "a", &pol(), SystemTime::now()) {
            Ok(_) => assert!(!expect_new),
            Err(KeystoreError::SameCertificate { .. }) => assert!(expect_new),
            Err(e) => panic!("{step:?}: {e}"),
        }
        assert_eq!(active_serial(&store, "orders"), "101");
    }
}

#[test]
fn readers_never_see_a_missing_or_partial_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let store = Keystore::new(config(dir.path()));
    let c = certs(2);
    import(&store, "orders", &c[0]);
    let file = dir.path().join("keystore/orders.pem");
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicUsize::new(0));
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let (file, stop, reads) = (file.clone(), stop.clone(), reads.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let bytes = std::fs::read(&file).expect("the certificate file is always there");
                    let r = wssgate::wss::Recipient::from_bytes(&bytes).expect("and always whole");
                    assert!(["100", "101"].contains(&r.info().serial.as_str()));
                    reads.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for i in 0..40 {
        store
            .exchange(
                "orders",
                &c[(i + 1) % 2].cert_pem(),
                "a",
                &pol(),
                SystemTime::now(),
            )
            .unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.join().unwrap();
    }
    assert!(
        reads.load(Ordering::Relaxed) > 40,
        "the readers ran during the exchanges"
    );
}

#[test]
fn concurrent_exchanges_are_serialized() {
    let dir = tempfile::tempdir().unwrap();
    let store = Keystore::new(config(dir.path()));
    let c = Arc::new(certs(9));
    import(&store, "orders", &c[0]);
    let handles: Vec<_> = (1..9)
        .map(|i| {
            let (store, c) = (store.clone(), c.clone());
            std::thread::spawn(move || {
                store
                    .exchange("orders", &c[i].cert_pem(), "t", &pol(), SystemTime::now())
                    .unwrap()
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let history = store.history("orders").unwrap();
    assert_eq!(
        history.len(),
        9,
        "every exchange archived its predecessor exactly once"
    );
    let mut serials: Vec<String> = history
        .iter()
        .map(|h| h.certificate.serial.clone())
        .collect();
    serials.sort();
    serials.dedup();
    assert_eq!(serials.len(), 9);
}

#[test]
fn audit_log_after_import_exchange_exchange_purge() {
    let dir = tempfile::tempdir().unwrap();
    let store = Keystore::new(config(dir.path()));
    let c = certs(3);
    store
        .import(
            "orders",
            "a.pem",
            &c[0].cert_pem(),
            None,
            None,
            "cli:alice",
            &pol(),
            SystemTime::now(),
        )
        .unwrap();
    store
        .exchange(
            "orders",
            &c[1].cert_pem(),
            "ops-token",
            &pol(),
            SystemTime::now(),
        )
        .unwrap();
    store
        .exchange(
            "orders",
            &c[2].cert_pem(),
            "ops-token",
            &pol(),
            SystemTime::now(),
        )
        .unwrap();
    store.purge("cli:alice", SystemTime::now()).unwrap();
    let log = audit::read(&dir.path().join("var")).unwrap();
    type Line = (String, String, Option<String>, Option<String>, String);
    let summary: Vec<Line> = log
        .iter()
        .map(|r| {
            (
                r.actor.clone(),
                r.action.clone(),
                r.before.as_ref().map(|b| b.serial.clone()),
                r.after.as_ref().map(|a| a.serial.clone()),
                r.result.clone(),
            )
        })
        .collect();
    let s = |x: &str| Some(x.to_string());
    assert_eq!(
        summary,
        vec![
            (
                "cli:alice".into(),
                "import".into(),
                None,
                s("100"),
                "ok".into()
            ),
            (
                "ops-token".into(),
                "exchange".into(),
                s("100"),
                s("101"),
                "ok".into()
            ),
            (
                "ops-token".into(),
                "exchange".into(),
                s("101"),
                s("102"),
                "ok".into()
            ),
            ("cli:alice".into(), "purge".into(), None, None, "ok".into()),
        ]
    );
    assert_eq!(log[3].detail.as_ref().unwrap()["kept"], 2);
    assert!(
        log.iter()
            .all(|r| humantime::parse_rfc3339(&r.time).is_ok())
    );
    assert!(
        log[1].after.as_ref().unwrap().sha256.len() == 64
            && !log[1].after.as_ref().unwrap().not_after.is_empty()
    );
    // A refused exchange is recorded too, with its reason.
    let _ = store.exchange(
        "orders",
        &c[2].cert_pem(),
        "ops-token",
        &pol(),
        SystemTime::now(),
    );
    let log = audit::read(&dir.path().join("var")).unwrap();
    assert!(log[4].result.starts_with("refused: "), "{}", log[4].result);
}

#[test]
fn java_pkcs12_truststore_is_imported_by_friendly_name() {
    let dir = tempfile::tempdir().unwrap();
    let store = Keystore::new(config(dir.path()));
    let c = certs(2);
    let trust = dir.path().join("truststore.p12");
    for (alias, cert) in [("orders-receiver", &c[0]), ("billing", &c[1])] {
        let pem = dir.path().join(format!("{alias}.crt"));
        std::fs::write(&pem, cert.cert_pem()).unwrap();
        let status = std::process::Command::new("keytool")
            .args([
                "-importcert",
                "-noprompt",
                "-storetype",
                "PKCS12",
                "-storepass",
                "changeit",
                "-alias",
                alias,
                "-file",
            ])
            .arg(&pem)
            .arg("-keystore")
            .arg(&trust)
            .output()
            .expect("keytool (Java) makes the truststore a Java user has");
        assert!(
            status.status.success(),
            "{}",
            String::from_utf8_lossy(&status.stderr)
        );
    }
    let bytes = std::fs::read(&trust).unwrap();
    for (alias, serial) in [("orders-receiver", "100"), ("billing", "101")] {
        store
            .import(
                alias,
                "truststore.p12",
                &bytes,
                Some("changeit"),
                None,
                "t",
                &pol(),
                SystemTime::now(),
            )
            .unwrap();
        assert_eq!(active_serial(&store, alias), serial);
    }
    let err = store
        .import(
            "other",
            "truststore.p12",
            &bytes,
            Some("changeit"),
            None,
            "t",
            &pol(),
            SystemTime::now(),
        )
        .unwrap_err();
    assert!(
        err.to_string().contains("billing") && err.to_string().contains("orders-receiver"),
        "{err}"
    );
    let err = store
        .import(
            "billing",
            "truststore.p12",
            &bytes,
            Some("wrong"),
            None,
            "t",
            &pol(),
            SystemTime::now(),
        )
        .unwrap_err();
    assert!(matches!(err, KeystoreError::Pkcs12 { .. }), "{err}");
    // DER works too.
    store
        .import(
            "der",
            "c.der",
            &c[0].cert.to_der().unwrap(),
            None,
            None,
            "t",
            &pol(),
            SystemTime::now(),
        )
        .unwrap();
}
