//! The README's five-minute walkthrough, executed as written: its shell blocks in
//! one shell, with the binary under test on PATH, a directory of its own and free
//! ports; then what its receiver and its traffic recorded.

mod common;

use std::process::Command;

#[test]
fn the_five_minute_walkthrough_runs_as_written() {
    for tool in ["openssl", "curl", "bash"] {
        if Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {tool}"))
            .output()
            .map_or(true, |o| !o.status.success())
        {
            // The README names them as prerequisites; scripts/install-test-deps installs them.
            panic!("{tool} is needed (scripts/install-test-deps installs it)");
        }
    }
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find("## Five minutes")
        .expect("the walkthrough section");
    let end = start
        + readme[start..]
            .find("Or stage the certificate first")
            .expect("its end");
    let mut script = String::new();
    let mut rest = &readme[start..end];
    while let Some(open) = rest.find("```sh\n") {
        let body = &rest[open + 6..];
        let close = body.find("```").expect("a closed block");
        script.push_str(&body[..close]);
        rest = &body[close + 3..];
    }
    let dir = tempfile::tempdir().unwrap();
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_wssgate"))
        .parent()
        .unwrap();
    let (proxy, admin, receiver) = (
        common::free_port(),
        common::free_port(),
        common::free_port(),
    );
    let first = "cargo build --release && export PATH=$PWD/target/release:$PATH";
    assert!(
        script.starts_with(first),
        "the walkthrough starts with the build: {script}"
    );
    let script = script
        .replacen(first, &format!("export PATH={}:$PATH", bin.display()), 1)
        .replace("/tmp/wg", dir.path().to_str().unwrap())
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{proxy}"))
        .replace("127.0.0.1:9090", &format!("127.0.0.1:{admin}"))
        .replace("127.0.0.1:9000", &format!("127.0.0.1:{receiver}"));
    let out = Command::new("timeout")
        .args(["180", "bash", "-e", "-c"])
        .arg(format!("set -m\n{script}"))
        .env_remove("WSSGATE_CONFIG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let log = std::fs::read_to_string(dir.path().join("wssgate.log")).unwrap_or_default();
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{stdout}\nstderr:\n{}\nwssgate.log:\n{log}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("done"),
        "both renewals ran to the end:\n{stdout}"
    );
    let traffic = std::fs::read_to_string(dir.path().join("traffic.log")).unwrap();
    let statuses: Vec<&str> = traffic.lines().collect();
    assert!(statuses.len() >= 10, "traffic ran: {traffic}");
    assert!(
        statuses.iter().all(|s| *s == "200"),
        "every request answered 200: {traffic}"
    );
    let received = std::fs::read_to_string(dir.path().join("receiver.log")).unwrap();
    assert!(!received.contains("NOT decrypted"), "{received}");
    for year in ["2026", "2027", "2028"] {
        assert!(
            received.contains(&format!("receiver-{year}.pem")),
            "messages under the {year} key: {received}"
        );
    }
}
