//! The fuzzing corpora (`fuzz/corpus.tar.xz`, minimized with `cargo fuzz cmin`)
//! replayed with the fuzz targets' checks, so what the fuzzer once explored stays
//! covered by `cargo test`: the rewriter never panics and what it accepts is a
//! well-formed envelope that decrypts to a well-formed document; the decryptor
//! and the configuration parser never panic, and every configuration refusal
//! names its file. A decrypt route's input path (the `decrypt_route` target:
//! the route's limits, the decryptor, the failure mapping) never panics on the
//! decryptor's corpus, and turns every envelope the rewriter accepted back into
//! what the engine's own decryptor makes of it.

mod common;

use std::path::Path;
use std::process::Command;

use bytes::Bytes;
use wssgate::config::{Config, RouteConfig};
use wssgate::keyring::Ring;
use wssgate::wss::{self, EncryptOptions};

fn inputs(dir: &Path, target: &str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir.join("corpus").join(target)).unwrap() {
        out.push(std::fs::read(entry.unwrap().path()).unwrap());
    }
    out
}

#[test]
fn the_fuzzing_corpora_replay_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let archive = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus.tar.xz");
    let status = Command::new("tar")
        .arg("-xJf")
        .arg(&archive)
        .arg("-C")
        .arg(dir.path())
        .status()
        .expect("tar runs");
    assert!(status.success(), "unpack {}", archive.display());

    let receiver = common::receiver();
    let (recipient, keys) = (receiver.recipient(), receiver.key_ring());
    let (ring, route, _ring_dir) = decrypt_route(receiver);
    let envelopes = inputs(dir.path(), "envelope");
    let mut accepted = 0;
    for input in &envelopes {
        if let Ok((out, _)) = wss::encrypt_to_vec(input, &recipient, &EncryptOptions::default()) {
            accepted += 1;
            let routed = wssgate::proxy::decrypt_request(&ring, &route, Bytes::from(out.clone()));
            let text = String::from_utf8(out).expect("output is UTF-8");
            roxmltree::Document::parse(text.trim_start_matches('\u{feff}'))
                .unwrap_or_else(|e| panic!("accepted input gave a malformed envelope: {e}"));
            let (plain, _) = wss::decrypt::decrypt_document(text.as_bytes(), &keys)
                .unwrap_or_else(|e| panic!("accepted input does not decrypt: {e}"));
            match routed {
                Ok(body) => assert_eq!(body.as_ref(), plain.as_slice(), "the route decrypts alike"),
                // Within the route's XML limits only.
                Err(fault) => assert_eq!(fault.code(), "xml-limit-exceeded", "{fault:?}"),
            }
            let plain = String::from_utf8(plain).unwrap();
            roxmltree::Document::parse(plain.trim_start_matches('\u{feff}'))
                .unwrap_or_else(|e| panic!("accepted input has a malformed Body: {e}"));
        }
    }
    let documents = inputs(dir.path(), "decrypt");
    let mut routed_ok = 0;
    for input in &documents {
        let _ = wss::decrypt::decrypt_document(input, &keys);
        match wssgate::proxy::decrypt_request(&ring, &route, Bytes::copy_from_slice(input)) {
            Ok(_) => routed_ok += 1,
            Err(fault) => assert!(
                matches!(
                    fault.code(),
                    "not-encrypted"
                        | "decryption-failed"
                        | "malformed-envelope"
                        | "xml-limit-exceeded"
                ),
                "{fault:?}"
            ),
        }
    }
    assert_eq!(
        routed_ok, 0,
        "no corpus input is encrypted for this ring's key"
    );
    let configs = inputs(dir.path(), "config");
    for input in &configs {
        if let Ok(text) = std::str::from_utf8(input)
            && let Err(e) = Config::parse(text, Path::new("/etc/wssgate/fuzz.toml"))
        {
            assert!(e.to_string().starts_with("/etc/wssgate/fuzz.toml"), "{e}");
        }
    }
    println!(
        "envelope {} ({accepted} accepted), decrypt {}, config {}",
        envelopes.len(),
        documents.len(),
        configs.len()
    );
    assert!(envelopes.len() > 1000 && documents.len() > 1000 && configs.len() > 1000);
}

/// A decrypt route and its ring holding `key`, as a snapshot loads them (the
/// fuzz target's set-up).
fn decrypt_route(key: &common::TestReceiver) -> (Ring, RouteConfig, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    common::write_ring(dir.path(), "tenant", key);
    let text = common::net::decrypt_config("http://127.0.0.1:9/", "", "")
        .replace("{dir}", dir.path().to_str().unwrap());
    let config = Config::parse(&text, &dir.path().join("wssgate.toml")).unwrap();
    let keys = wssgate::keystore::Keystore::new(config.keystore.clone())
        .ring_keys("tenant", std::time::SystemTime::now())
        .unwrap();
    (Ring::new("tenant", keys), config.routes[0].clone(), dir)
}
