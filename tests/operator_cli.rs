//! The command line as an operator uses it: `-c` wherever it is typed and from
//! `WSSGATE_CONFIG`, `ctl` against a daemon whose configuration file is being
//! fixed, and staging from the command line.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use common::net::{self, Daemon, Receiver};
use common::{CertSpec, TestReceiver};

fn wssgate(args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wssgate"));
    cmd.args(args).env_remove("WSSGATE_CONFIG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_configuration_option_goes_anywhere_and_comes_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("wssgate.toml");
    std::fs::write(
        &config,
        "[keystore]\ndir = \"keystore\"\nstate_dir = \"var\"\n",
    )
    .unwrap();
    let cert = dir.path().join("c.pem");
    std::fs::write(&cert, common::receiver().cert_pem()).unwrap();
    let (c, cert) = (config.to_str().unwrap(), cert.to_str().unwrap());
    // After the subcommand's own arguments, before the subcommand, and before all.
    ok(&wssgate(&["keystore", "import", "a", cert, "-c", c], &[]));
    ok(&wssgate(&["keystore", "-c", c, "import", "b", cert], &[]));
    ok(&wssgate(&["-c", c, "keystore", "list"], &[]));
    let listed = ok(&wssgate(&["keystore", "list", "--config", c], &[]));
    assert!(listed.contains("a ") && listed.contains("b "), "{listed}");
    // From the environment, and `-c` wins over it.
    let listed = ok(&wssgate(
        &["keystore", "list"],
        &[("WSSGATE_CONFIG", &config)],
    ));
    assert!(listed.contains("a "), "{listed}");
    let out = wssgate(
        &["keystore", "list", "-c", "/nonexistent/wssgate.toml"],
        &[("WSSGATE_CONFIG", &config)],
    );
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/wssgate.toml"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctl_works_while_the_configuration_file_is_broken() {
    let rx = common::receiver();
    let receiver = Receiver::start(rx.key_ring()).await.unwrap();
    let daemon = Arc::new(
        Daemon::start(
            &net::config(&format!("http://{}/s", receiver.addr), "", ""),
            &[("orders-receiver", rx.cert_pem())],
        )
        .await,
    );
    // The operator is halfway through an edit: the file no longer validates,
    // but its [admin] table still says where the daemon is.
    let path = daemon.dir.path().join("wssgate.toml");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text = text.replace(
        "listen = \"127.0.0.1:0\"\ntokens",
        &format!("listen = \"{}\"\ntokens", daemon.admin),
    );
    text.push_str("\n[[route]]\nname = 1\n");
    let broken = daemon.dir.path().join("broken.toml");
    std::fs::write(&broken, text).unwrap();
    let b = broken.clone();
    let out = tokio::task::spawn_blocking(move || {
        wssgate(&["ctl", "-c", b.to_str().unwrap(), "routes"], &[])
    })
    .await
    .unwrap();
    let routes = ok(&out);
    assert!(routes.contains("orders"), "{routes}");
    // `check` still refuses the file, as it should.
    let b = broken.clone();
    let out =
        tokio::task::spawn_blocking(move || wssgate(&["check", "-c", b.to_str().unwrap()], &[]))
            .await
            .unwrap();
    assert_eq!(out.status.code(), Some(64));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staging_and_withdrawing_from_the_command_line() {
    let rx = common::receiver();
    let receiver = Receiver::start(rx.key_ring()).await.unwrap();
    let daemon = Arc::new(
        Daemon::start(
            &net::config(&format!("http://{}/s", receiver.addr), "", ""),
            &[("orders-receiver", rx.cert_pem())],
        )
        .await,
    );
    let next = TestReceiver::new(&CertSpec {
        serial: 4712,
        ..Default::default()
    });
    let pem = daemon.dir.path().join("next.pem");
    std::fs::write(&pem, next.cert_pem()).unwrap();
    let token = daemon.dir.path().join("keyadmin.token");
    let admin = daemon.admin_url("");
    let ctl = move |args: Vec<String>| {
        let mut all = vec![
            "ctl".to_string(),
            "--admin".into(),
            admin.clone(),
            "--token-file".into(),
            token.display().to_string(),
        ];
        all.extend(args);
        async move {
            tokio::task::spawn_blocking(move || {
                let args: Vec<&str> = all.iter().map(String::as_str).collect();
                wssgate(&args, &[])
            })
            .await
            .unwrap()
        }
    };
    let p = pem.display().to_string();
    let staged = ok(&ctl(vec![
        "stage".into(),
        "orders-receiver".into(),
        p.clone(),
        "--on-resume".into(),
    ])
    .await);
    assert!(
        staged.contains("4712") && staged.contains("on resume"),
        "{staged}"
    );
    let pending = daemon
        .client("read")
        .keystore_alias("orders-receiver")
        .await
        .unwrap();
    assert_eq!(pending.pending.unwrap().certificate.serial, "4712");
    let withdrawn = ok(&ctl(vec!["withdraw".into(), "orders-receiver".into()]).await);
    assert!(withdrawn.contains("4712"), "{withdrawn}");
    let pending = daemon
        .client("read")
        .keystore_alias("orders-receiver")
        .await
        .unwrap();
    assert!(pending.pending.is_none());
    // At a time: RFC 3339, checked before anything is sent.
    let out = ctl(vec![
        "stage".into(),
        "orders-receiver".into(),
        p.clone(),
        "--at".into(),
        "tomorrow".into(),
    ])
    .await;
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let staged = ok(&ctl(vec![
        "stage".into(),
        "orders-receiver".into(),
        p,
        "--at".into(),
        "2999-01-01T00:00:00Z".into(),
    ])
    .await);
    assert!(staged.contains("2999-01-01T00:00:00Z"), "{staged}");
    // Withdrawing what is not staged says so.
    ok(&ctl(vec!["withdraw".into(), "orders-receiver".into()]).await);
    let out = ctl(vec!["withdraw".into(), "orders-receiver".into()]).await;
    assert_eq!(out.status.code(), Some(64));
}

#[test]
fn check_refuses_what_serve_would_fail_on() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    common::write_keystore(
        dir.path(),
        &[("orders-receiver", common::receiver().cert_pem())],
    );
    common::write_secret(&dir.path().join("a.token"), "admin-token-0123456789");
    common::write_secret(&dir.path().join("b.token"), "other-token-0123456789");
    let base = |proxy: &str, admin: &str| {
        format!(
            "[proxy]\nlisten = \"127.0.0.1:18080\"\n{proxy}\n[admin]\nlisten = \"127.0.0.1:19090\"\n{admin}\n\
             [keystore]\ndir = \"keystore\"\nstate_dir = \"var\"\n\
             [[route]]\nname = \"orders\"\npath = \"/orders\"\nupstream = \"http://127.0.0.1:9000/orders\"\nalias = \"orders-receiver\"\n"
        )
    };
    let tokens = "tokens = [ { name = \"ops\", role = \"admin\", file = \"a.token\" } ]";
    let check = |text: &str| {
        let path = dir.path().join("wssgate.toml");
        std::fs::write(&path, text).unwrap();
        wssgate(&["check", "-c", path.to_str().unwrap()], &[])
    };
    let refused = [
        (
            base("", tokens).replace("127.0.0.1:19090", "127.0.0.1:18080"),
            "admin.listen",
        ),
        (
            base("upstream_timeout = \"0s\"", tokens),
            "proxy.upstream_timeout",
        ),
        (
            base("max_body = \"1MiB\"\nstream_threshold = \"2MiB\"", tokens),
            "proxy.max_body",
        ),
        (
            base(
                "",
                "tokens = [ { name = \"ops\", role = \"operator\", file = \"a.token\" }, { name = \"keys\", role = \"keys\", file = \"a.token\" } ]",
            ),
            "admin.tokens.file",
        ),
    ];
    for (text, key) in refused {
        let out = check(&text);
        assert_eq!(
            out.status.code(),
            Some(64),
            "{key}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(key), "{key}: {err}");
    }
    // A state_dir that is a file.
    std::fs::write(dir.path().join("var"), "").unwrap();
    let out = check(&base("", tokens));
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("state_dir"));
    std::fs::remove_file(dir.path().join("var")).unwrap();
    // A FIFO as token file: refused, not waited on.
    let fifo = dir.path().join("fifo.token");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let out = check(&base("", &tokens.replace("a.token", "fifo.token")));
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a regular file"));
    // A token others can read: a warning from check, a refusal from serve.
    std::fs::set_permissions(
        dir.path().join("a.token"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let out = check(&base("", tokens));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("readable by group or others"));
    let path = dir.path().join("wssgate.toml");
    let out = wssgate(&["serve", "-c", path.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("chmod 600"));
    // ... unless the operator says so.
    let out = check(&base(
        "",
        &format!("{tokens}\nallow_insecure_token_files = true"),
    ));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
