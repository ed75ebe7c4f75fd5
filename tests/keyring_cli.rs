//! `wssgate keyring` and `wssgate renew keyring` as an operator runs them: a
//! PKCS#12 import with a password file, a second key retained, refusals with
//! exit 64, history and purge; and the receiver-side renewal against a running
//! daemon, reporting which keys are still used.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};

use common::net::{self, Daemon};
use common::{CertSpec, TestReceiver};

fn key(serial: u32) -> TestReceiver {
    TestReceiver::new(&CertSpec {
        serial,
        ..CertSpec::default()
    })
}

fn wssgate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wssgate"))
        .args(args)
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn keyring_commands_add_pkcs12_and_pem_keys_and_keep_the_previous_one() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("wssgate.toml");
    std::fs::write(
        &config,
        net::decrypt_config("http://127.0.0.1:9/", "", "")
            .replace("{dir}", dir.path().to_str().unwrap()),
    )
    .unwrap();
    let c = config.to_str().unwrap();
    let (first, second) = (key(700), key(701));
    let p12 = openssl::pkcs12::Pkcs12::builder()
        .name("tenant")
        .pkey(&first.key)
        .cert(&first.cert)
        .build2("s3cret-pass")
        .unwrap();
    let p12_path = dir.path().join("first.p12");
    std::fs::write(&p12_path, p12.to_der().unwrap()).unwrap();
    let password = dir.path().join("password");
    common::write_secret(&password, "s3cret-pass\n");
    let wrong = dir.path().join("wrong");
    common::write_secret(&wrong, "nope\n");
    let (_, _, second_pem) = second.write_to(dir.path(), "second");

    let p12_arg = p12_path.to_str().unwrap();
    let out = wssgate(&[
        "keyring",
        "-c",
        c,
        "add",
        "tenant",
        p12_arg,
        "--password-file",
        wrong.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(64),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = wssgate(&[
        "keyring",
        "-c",
        c,
        "add",
        "tenant",
        p12_arg,
        "--password-file",
        password.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout(&out).contains("added serial 700"),
        "{}",
        stdout(&out)
    );
    let ring_file = dir.path().join("private/tenant.pem");
    assert_eq!(
        std::fs::metadata(&ring_file).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let out = wssgate(&[
        "keyring",
        "-c",
        c,
        "add",
        "tenant",
        second_pem.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout(&out).contains("retained serial 700"),
        "{}",
        stdout(&out)
    );
    let out = wssgate(&[
        "keyring",
        "-c",
        c,
        "add",
        "tenant",
        second_pem.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(64), "the same key again");

    let out = wssgate(&["keyring", "-c", c, "--json", "show", "tenant"]);
    assert!(out.status.success());
    let view: wssgate::keyring::KeyringView = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(view.routes, vec!["inbound".to_string()]);
    let serials: Vec<&str> = view.keys.iter().map(|k| k.serial.as_str()).collect();
    assert_eq!(serials, vec!["701", "700"]);
    let out = wssgate(&["keyring", "-c", c, "list"]);
    assert!(
        stdout(&out).contains("ring tenant  decrypt routes: inbound  signing routes: (no route)"),
        "{}",
        stdout(&out)
    );
    let out = wssgate(&["keyring", "-c", c, "history", "tenant"]);
    assert!(
        stdout(&out).contains("(active)") && stdout(&out).contains("retained"),
        "{}",
        stdout(&out)
    );
    let out = wssgate(&["keyring", "-c", c, "purge"]);
    assert!(
        stdout(&out).contains("0 deleted, 1 kept"),
        "{}",
        stdout(&out)
    );

    // No private key byte in anything the commands printed or recorded.
    let audit = std::fs::read_to_string(dir.path().join("var/audit.log")).unwrap();
    for text in [
        audit,
        stdout(&wssgate(&["keyring", "-c", c, "--json", "list"])),
    ] {
        assert!(
            !text.contains("PRIVATE KEY") && !text.contains("s3cret-pass"),
            "{text}"
        );
    }
    let out = wssgate(&["check", "-c", c]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = stdout(&out);
    assert!(
        report
            .lines()
            .any(|l| l.starts_with("tenant") && l.contains("active") && l.contains("701"))
            && report
                .lines()
                .any(|l| l.starts_with("tenant") && l.contains("retained") && l.contains("700")),
        "{report}"
    );
    // A ring file others can read is refused by check.
    std::fs::set_permissions(&ring_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = wssgate(&["check", "-c", c]);
    assert_eq!(out.status.code(), Some(64));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("chmod 600"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renew_keyring_adds_the_key_and_reports_which_keys_are_used() {
    let (old, new) = (key(710), key(711));
    let receiver = net::Receiver::start(wssgate::wss::keys::KeyRing::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    common::write_ring(dir.path(), "tenant", &old);
    let config = net::decrypt_config(&format!("http://{}/s", receiver.addr), "", "");
    let daemon = Daemon::start_in(dir, &config, &[]).await;
    let (encrypted, _) = wssgate::wss::encrypt_to_vec(
        br#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><m:a xmlns:m="urn:m"/></soap:Body></soap:Envelope>"#,
        &old.recipient(),
        &wssgate::wss::EncryptOptions::default(),
    )
    .unwrap();
    let (status, _, _) = net::post(
        &net::client(),
        &daemon.url("/inbound"),
        "text/xml",
        &encrypted,
    )
    .await;
    assert_eq!(status, 200);
    let (_, _, new_pem) = new.write_to(daemon.dir.path(), "new");
    let admin = daemon.admin_url("");
    let token = daemon.dir.path().join("keyadmin.token");
    let args = |extra: &[&str]| {
        let mut v = vec![
            "renew",
            "--admin",
            admin.as_str(),
            "--token-file",
            token.to_str().unwrap(),
            "keyring",
        ];
        v.extend_from_slice(extra);
        v.into_iter().map(str::to_string).collect::<Vec<_>>()
    };
    let run = |args: Vec<String>| {
        std::thread::spawn(move || {
            Command::new(env!("CARGO_BIN_EXE_wssgate"))
                .args(args)
                .output()
                .unwrap()
        })
    };
    let out = run(args(&["tenant"])).join().unwrap();
    assert_eq!(out.status.code(), Some(2), "no --add: a usage error");
    let out = run(args(&["tenant", "--add", new_pem.to_str().unwrap()]))
        .join()
        .unwrap();
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("ring tenant: serial 711 active"), "{text}");
    assert!(text.contains("serial 710 retained until"), "{text}");
    assert!(text.contains("still used: 1 messages"), "{text}");
    assert!(text.contains("not used since the daemon started"), "{text}");
}
