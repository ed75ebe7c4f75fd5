//! `wssgate demo` as a newcomer runs it: both renewals, exit 0 only if every
//! message was decrypted and none was lost.

use std::process::Command;

#[test]
fn the_demo_shows_both_renewals_and_exits_0() {
    let out = Command::new(env!("CARGO_BIN_EXE_wssgate"))
        .arg("demo")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "OVERLAP RENEWAL",
        "EXCLUSIVE RENEWAL",
        "serial 2027 is live (was 2026)",
        "held requests released in arrival order",
        "failed 0, lost 0, duplicated 0",
        "nothing reached the receiver during the pause: yes",
        "every message was decrypted and none was lost",
        "RECEIVER SIDE: EXCLUSIVE TURNED OVERLAP",
        "serial 2030 active, serial 2029 retained until",
        "failed 0, lost 0; no pause",
    ] {
        assert!(text.contains(line), "{line:?} missing from:\n{text}");
    }
    for serial in ["2029", "2030"] {
        let line = text
            .lines()
            .find(|l| l.contains(&format!("key serial {serial}")))
            .unwrap_or_else(|| panic!("no use of serial {serial}:\n{text}"));
        assert!(!line.contains(": 0 messages"), "{line}");
    }
    for serial in ["2026", "2027", "2028"] {
        assert!(
            text.contains(&format!("decrypted with the key of serial {serial}")),
            "{text}"
        );
    }
}
