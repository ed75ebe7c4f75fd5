//! `wssgate encrypt` and `wssgate decrypt` as a user runs them: stdin/stdout and
//! files, exit codes, one-line errors, and no partial output on failure.

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use common::{CertSpec, TestReceiver};

fn wssgate(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wssgate"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A command refused at parse time exits without reading its input.
    if let Err(e) = child.stdin.take().unwrap().write_all(stdin) {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
    }
    child.wait_with_output().unwrap()
}

const ENVELOPE: &str = r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><m:ping xmlns:m="urn:m">hello</m:ping></soap:Body></soap:Envelope>"#;

fn one_line_error(out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.starts_with("wssgate: error: "), "{err}");
    assert!(out.stdout.is_empty(), "nothing on stdout on failure");
    err
}

#[test]
fn encrypt_then_decrypt_through_pipes() {
    let dir = tempfile::tempdir().unwrap();
    let (_, cert, both) = common::receiver().write_to(dir.path(), "rx");
    for profile in wssgate::wss::Profile::ALL.iter().map(|p| p.name()) {
        let enc = wssgate(
            &[
                "encrypt",
                "--cert",
                cert.to_str().unwrap(),
                "--profile",
                profile,
            ],
            ENVELOPE.as_bytes(),
        );
        assert!(
            enc.status.success(),
            "{}",
            String::from_utf8_lossy(&enc.stderr)
        );
        assert!(!String::from_utf8_lossy(&enc.stdout).contains("hello"));
        let dec = wssgate(&["decrypt", "--key", both.to_str().unwrap()], &enc.stdout);
        assert!(
            dec.status.success(),
            "{}",
            String::from_utf8_lossy(&dec.stderr)
        );
        assert!(String::from_utf8_lossy(&dec.stdout).contains(">hello</m:ping>"));
    }
}

#[test]
fn wcf_issuer_form_and_an_mgf1p_digest_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let (_, cert, both) = common::receiver().write_to(dir.path(), "rx");
    let cases: [(&[&str], &[&str], &[&str]); 3] = [
        (
            &["--profile", "wcf-basic256", "--key-id", "issuer-serial"],
            // The quotes as XML text: `&quot;` is what the shared escaper writes.
            &["<ds:X509IssuerName>CN=receiver, O=&quot;Example, Receivers Inc.&quot;, C=DE<"],
            &[],
        ),
        (
            &[
                "--key-id",
                "issuer-serial",
                "--issuer-name-format",
                "rfc2253",
            ],
            &[r#"<ds:X509IssuerName>CN=receiver,O=Example\, Receivers Inc.,C=DE<"#],
            &[],
        ),
        (
            &["--profile", "basic256sha256", "--oaep-digest", "sha256"],
            &[
                "xmlenc#rsa-oaep-mgf1p\"><ds:DigestMethod",
                "Algorithm=\"http://www.w3.org/2001/04/xmlenc#sha256\"",
            ],
            &["MGF"],
        ),
    ];
    for (args, present, absent) in cases {
        let mut all = vec!["encrypt", "--cert", cert.to_str().unwrap()];
        all.extend_from_slice(args);
        let enc = wssgate(&all, ENVELOPE.as_bytes());
        assert!(
            enc.status.success(),
            "{}",
            String::from_utf8_lossy(&enc.stderr)
        );
        let text = String::from_utf8_lossy(&enc.stdout);
        for p in present {
            assert!(text.contains(p), "{args:?}: {p} missing in {text}");
        }
        for a in absent {
            assert!(!text.contains(a), "{args:?}: {a} in {text}");
        }
        let dec = wssgate(&["decrypt", "--key", both.to_str().unwrap()], &enc.stdout);
        assert!(
            dec.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&dec.stderr)
        );
        assert!(String::from_utf8_lossy(&dec.stdout).contains(">hello</m:ping>"));
    }
    let refused = wssgate(
        &[
            "encrypt",
            "--cert",
            cert.to_str().unwrap(),
            "--key-transport",
            "rsa-1_5",
            "--allow-legacy",
            "--oaep-digest",
            "sha256",
        ],
        ENVELOPE.as_bytes(),
    );
    assert_eq!(refused.status.code(), Some(64));
    assert!(one_line_error(&refused).contains("no OAEP digest"));
}

#[test]
fn files_with_i_and_o_and_pkcs12_keys() {
    let dir = tempfile::tempdir().unwrap();
    let rx = common::receiver();
    let (_, cert, _) = rx.write_to(dir.path(), "rx");
    let input = dir.path().join("in.xml");
    let encrypted = dir.path().join("out.xml");
    std::fs::write(&input, ENVELOPE).unwrap();
    let out = wssgate(
        &[
            "encrypt",
            "--cert",
            cert.to_str().unwrap(),
            "--key-id",
            "bst",
            "--enc",
            "aes128-gcm",
            "--key-transport",
            "rsa-oaep",
            "--oaep-digest",
            "sha512",
            "-i",
            input.to_str().unwrap(),
            "-o",
            encrypted.to_str().unwrap(),
        ],
        b"",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty());
    let text = std::fs::read_to_string(&encrypted).unwrap();
    assert!(text.contains("xmlenc11#aes128-gcm") && text.contains("xmlenc#sha512"));

    let p12 = openssl::pkcs12::Pkcs12::builder()
        .name("receiver")
        .pkey(&rx.key)
        .cert(&rx.cert)
        .build2("s3cret")
        .unwrap();
    let p12_path = dir.path().join("rx.p12");
    std::fs::write(&p12_path, p12.to_der().unwrap()).unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "s3cret\n").unwrap();
    let other = TestReceiver::new(&CertSpec {
        serial: 5,
        ..CertSpec::default()
    });
    let (_, _, other_both) = other.write_to(dir.path(), "other");
    let keys = format!("{},{}", other_both.display(), p12_path.display());
    let dec = wssgate(
        &[
            "decrypt",
            "--key",
            &keys,
            "--password-file",
            pw.to_str().unwrap(),
            "-i",
            encrypted.to_str().unwrap(),
        ],
        b"",
    );
    assert!(
        dec.status.success(),
        "{}",
        String::from_utf8_lossy(&dec.stderr)
    );
    assert!(String::from_utf8_lossy(&dec.stdout).contains(">hello</m:ping>"));

    std::fs::write(&pw, "wrong\n").unwrap();
    let dec = wssgate(
        &[
            "decrypt",
            "--key",
            p12_path.to_str().unwrap(),
            "--password-file",
            pw.to_str().unwrap(),
            "-i",
            encrypted.to_str().unwrap(),
        ],
        b"",
    );
    assert_eq!(dec.status.code(), Some(64));
    one_line_error(&dec);
}

#[test]
fn bad_input_exits_64_with_one_line_and_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let (_, cert, _) = common::receiver().write_to(dir.path(), "rx");
    let cert = cert.to_str().unwrap();
    for (input, words) in [
        ("<!DOCTYPE x><x/>".to_string(), "DOCTYPE"),
        (
            ENVELOPE.replace("<m:ping xmlns:m=\"urn:m\">hello</m:ping>", ""),
            "no element to encrypt",
        ),
        (
            ENVELOPE[..ENVELOPE.len() - 16].to_string(),
            "ends inside an element",
        ),
        ("<a/>".to_string(), "not a SOAP envelope"),
    ] {
        let out = wssgate(&["encrypt", "--cert", cert], input.as_bytes());
        assert_eq!(out.status.code(), Some(64), "{input}");
        let err = one_line_error(&out);
        assert!(err.contains(words), "{words}: {err}");
    }
    // -o is not created when the input is refused.
    let target = dir.path().join("never.xml");
    let out = wssgate(
        &["encrypt", "--cert", cert, "-o", target.to_str().unwrap()],
        b"<a/>",
    );
    assert_eq!(out.status.code(), Some(64));
    assert!(!target.exists());
}

#[test]
fn refused_certificates_and_options() {
    let dir = tempfile::tempdir().unwrap();
    let expired = TestReceiver::new(&CertSpec {
        not_before_days: -10,
        not_after_days: -1,
        ..CertSpec::default()
    });
    let (_, cert, _) = expired.write_to(dir.path(), "old");
    let out = wssgate(
        &["encrypt", "--cert", cert.to_str().unwrap()],
        ENVELOPE.as_bytes(),
    );
    assert_eq!(out.status.code(), Some(64));
    assert!(one_line_error(&out).contains("expired"));

    let (_, cert, _) = common::receiver().write_to(dir.path(), "rx");
    let out = wssgate(
        &[
            "encrypt",
            "--cert",
            cert.to_str().unwrap(),
            "--key-transport",
            "rsa-1_5",
        ],
        ENVELOPE.as_bytes(),
    );
    assert_eq!(out.status.code(), Some(64));
    assert!(one_line_error(&out).contains("allow_legacy"));
    let out = wssgate(
        &[
            "encrypt",
            "--cert",
            cert.to_str().unwrap(),
            "--key-transport",
            "rsa-1_5",
            "--allow-legacy",
        ],
        ENVELOPE.as_bytes(),
    );
    assert!(out.status.success());

    let out = wssgate(
        &[
            "encrypt",
            "--cert",
            cert.to_str().unwrap(),
            "--enc",
            "aes512",
        ],
        ENVELOPE.as_bytes(),
    );
    assert_eq!(out.status.code(), Some(2), "usage error");
    let out = wssgate(
        &[
            "encrypt",
            "--cert",
            dir.path().join("missing.pem").to_str().unwrap(),
        ],
        ENVELOPE.as_bytes(),
    );
    assert_eq!(out.status.code(), Some(64));
    one_line_error(&out);
}

#[test]
fn decrypt_names_the_key_it_lacks() {
    let dir = tempfile::tempdir().unwrap();
    let (_, cert, _) = common::receiver().write_to(dir.path(), "rx");
    let enc = wssgate(
        &[
            "encrypt",
            "--cert",
            cert.to_str().unwrap(),
            "--key-id",
            "thumbprint",
        ],
        ENVELOPE.as_bytes(),
    );
    let other = TestReceiver::new(&CertSpec {
        serial: 77,
        ..CertSpec::default()
    });
    let (_, _, other_both) = other.write_to(dir.path(), "other");
    let out = wssgate(
        &["decrypt", "--key", other_both.to_str().unwrap()],
        &enc.stdout,
    );
    assert_eq!(out.status.code(), Some(64));
    assert!(one_line_error(&out).contains("SHA-1 thumbprint"));
}
