//! Reload on file change, including Kubernetes' atomic `..data` symlink swap of a
//! mounted Secret.

mod common;

use std::os::unix::fs::symlink;
use std::time::Duration;

use common::net::{self, Daemon, Receiver};
use common::{CertSpec, TestReceiver};

const BODY: &str = r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><m:x xmlns:m="urn:m"/></soap:Body></soap:Envelope>"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_style_swap_of_the_keystore_is_picked_up() {
    let old = TestReceiver::new(&CertSpec {
        serial: 1,
        ..CertSpec::default()
    });
    let new = TestReceiver::new(&CertSpec {
        serial: 2,
        ..CertSpec::default()
    });
    let mut keys = old.key_ring();
    keys.push(wssgate::wss::keys::from_pem(&new.key_and_cert_pem(), "new").unwrap());
    let receiver = Receiver::start(keys).await.unwrap();

    // The keystore as the kubelet mounts a Secret: a timestamped directory, `..data`
    // pointing at it, and each key a symlink through `..data`.
    let dir = tempfile::tempdir().unwrap();
    let ks = dir.path().join("keystore");
    std::fs::create_dir_all(ks.join("..2026_11_27_01")).unwrap();
    std::fs::write(
        ks.join("..2026_11_27_01/orders-receiver.pem"),
        old.cert_pem(),
    )
    .unwrap();
    symlink("..2026_11_27_01", ks.join("..data")).unwrap();
    symlink("..data/orders-receiver.pem", ks.join("orders-receiver.pem")).unwrap();

    let config = net::config(&format!("http://{}/s", receiver.addr), "", "")
        .replace("[keystore]", "[keystore]\nwatch = true");
    let daemon = Daemon::start_in(dir, &config, &[]).await;
    let (status, _, _) = net::post(
        &net::client(),
        &daemon.url("/orders"),
        "text/xml",
        BODY.as_bytes(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        receiver.received()[0].certificate.as_deref(),
        Some(old.recipient().info().sha256.as_str())
    );

    // The update: a new directory, a temporary link, renamed onto `..data` in one step.
    std::fs::create_dir_all(ks.join("..2026_11_27_02")).unwrap();
    std::fs::write(
        ks.join("..2026_11_27_02/orders-receiver.pem"),
        new.cert_pem(),
    )
    .unwrap();
    symlink("..2026_11_27_02", ks.join("..data_tmp")).unwrap();
    std::fs::rename(ks.join("..data_tmp"), ks.join("..data")).unwrap();

    common::eventually(Duration::from_secs(10), async || {
        daemon.shared.load().generation >= 2
    })
    .await;
    assert_eq!(
        daemon.shared.load().generation,
        2,
        "reloaded once after the swap (debounced)"
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
        Some(new.recipient().info().sha256.as_str()),
        "the new certificate is used"
    );
    // The retired certificate is archived for its retention, and the change is
    // audited as the file's, as an exchange would have been.
    let state_dir = daemon.shared.load().config.keystore.state_dir.clone();
    let store = wssgate::keystore::Keystore::new(daemon.shared.load().config.keystore.clone());
    // Recorded just after the new certificate goes live: the audit line last.
    common::eventually(Duration::from_secs(10), async || {
        !wssgate::keystore::audit::read(&state_dir)
            .unwrap()
            .is_empty()
    })
    .await;
    let archived = store.archived("orders-receiver").unwrap();
    assert_eq!(archived.len(), 1);
    assert_eq!(archived[0].serial, "1");
    let audited = wssgate::keystore::audit::read(&state_dir).unwrap();
    assert!(
        audited
            .iter()
            .any(|r| r.action == "exchange" && r.actor == "file"),
        "{audited:?}"
    );

    // A broken update is rejected like any reload: the old state keeps serving.
    std::fs::create_dir_all(ks.join("..2026_11_27_03")).unwrap();
    std::fs::write(
        ks.join("..2026_11_27_03/orders-receiver.pem"),
        b"not a certificate",
    )
    .unwrap();
    symlink("..2026_11_27_03", ks.join("..data_tmp")).unwrap();
    std::fs::rename(ks.join("..data_tmp"), ks.join("..data")).unwrap();
    let failed = || daemon.shared.reload_counts().1;
    common::eventually(Duration::from_secs(10), async || failed() > 0).await;
    assert_eq!(daemon.shared.reload_counts().1, 1);
    assert_eq!(daemon.shared.load().generation, 2);
    let (status, _, _) = net::post(
        &net::client(),
        &daemon.url("/orders"),
        "text/xml",
        BODY.as_bytes(),
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_beside_the_configuration_and_unchanged_saves_do_not_reload() {
    let rx = common::receiver();
    let receiver = Receiver::start(rx.key_ring()).await.unwrap();
    let config = net::config(&format!("http://{}/s", receiver.addr), "", "")
        .replace("[keystore]", "[keystore]\nwatch = true");
    let daemon = Daemon::start(&config, &[("orders-receiver", rx.cert_pem())]).await;
    let dir = daemon.dir.path().to_path_buf();
    // The daemon's own log (or anything else) written beside the configuration.
    for i in 0..20 {
        std::fs::write(dir.join("wssgate.log"), format!("line {i}\n")).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A save of the same text.
    let path = dir.join("wssgate.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, &text).unwrap();
    tokio::time::sleep(wssgate::watch::DEBOUNCE * 4).await;
    assert_eq!(daemon.shared.load().generation, 1, "nothing changed");
    assert_eq!(daemon.shared.reload_counts(), (0, 0));
    // A real change is picked up.
    std::fs::write(
        &path,
        text.replace("shutdown_grace = \"5s\"", "shutdown_grace = \"6s\""),
    )
    .unwrap();
    common::eventually(Duration::from_secs(10), async || {
        daemon.shared.load().generation == 2
    })
    .await;
    assert_eq!(daemon.shared.load().generation, 2);
    assert_eq!(daemon.shared.reload_counts(), (1, 0));
}
