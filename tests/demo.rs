//! `wssgate demo` as a newcomer runs it: both renewals, exit 0 only if every
//! message was decrypted and none was lost; and the signing key renewed both
//! ways, every signed message verified by the receiver.

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
        "SIGNING KEY RENEWAL BY OVERLAP",
        "serial 3002 signs the next message (serial 3001 retained, no longer signs)",
        "SIGNING KEY RENEWAL BY EXCLUSIVE",
        "trust switched from serial 3002 to serial 3003; 0 messages reached the receiver during the pause",
        "held requests released in arrival order, signed by serial 3003",
        "failed 0, lost 0, duplicated 0, unverified 0, signed by an untrusted key 0, reached the receiver during the pause 0",
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
    // Each sender's messages: signed by 3001, then 3002, then 3003, in that order.
    for sender in ["sender 0", "sender 1"] {
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{sender}: signed by")))
            .unwrap_or_else(|| panic!("no signers of {sender}:\n{text}"));
        let serials: Vec<&str> = line
            .split("serial ")
            .skip(1)
            .map(|s| {
                s.trim_end_matches(',')
                    .split(',')
                    .next()
                    .unwrap_or(s)
                    .trim()
            })
            .collect();
        assert_eq!(serials, ["3001", "3002", "3003"], "{line}");
    }
    let summary = text
        .lines()
        .find(|l| l.trim_start().starts_with("signing key: sent"))
        .unwrap_or_else(|| panic!("no signing summary:\n{text}"));
    let numbers: Vec<u64> = summary
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    assert!(numbers[0] > 0 && numbers[0] == numbers[1], "{summary}");
    assert_eq!(&numbers[2..], [0, 0, 0], "{summary}");
    for serial in ["3001", "3002", "3003"] {
        let counted = text
            .lines()
            .find(|l| l.contains(&format!("wssgate counted for key serial {serial}:")))
            .unwrap_or_else(|| panic!("no count for serial {serial}:\n{text}"));
        assert!(!counted.contains(": 0 messages"), "{counted}");
    }
}
