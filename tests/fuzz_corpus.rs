//! The fuzzing corpora (`fuzz/corpus.tar.xz`, minimized with `cargo fuzz cmin`)
//! replayed with the fuzz targets' checks, so what the fuzzer once explored stays
//! covered by `cargo test`: the rewriter never panics and what it accepts is a
//! well-formed envelope that decrypts to a well-formed document; the decryptor
//! and the configuration parser never panic, and every configuration refusal
//! names its file.

mod common;

use std::path::Path;
use std::process::Command;

use wssgate::config::Config;
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
    let envelopes = inputs(dir.path(), "envelope");
    let mut accepted = 0;
    for input in &envelopes {
        if let Ok((out, _)) = wss::encrypt_to_vec(input, &recipient, &EncryptOptions::default()) {
            accepted += 1;
            let text = String::from_utf8(out).expect("output is UTF-8");
            roxmltree::Document::parse(text.trim_start_matches('\u{feff}'))
                .unwrap_or_else(|e| panic!("accepted input gave a malformed envelope: {e}"));
            let (plain, _) = wss::decrypt::decrypt_document(text.as_bytes(), &keys)
                .unwrap_or_else(|e| panic!("accepted input does not decrypt: {e}"));
            let plain = String::from_utf8(plain).unwrap();
            roxmltree::Document::parse(plain.trim_start_matches('\u{feff}'))
                .unwrap_or_else(|e| panic!("accepted input has a malformed Body: {e}"));
        }
    }
    let documents = inputs(dir.path(), "decrypt");
    for input in &documents {
        let _ = wss::decrypt::decrypt_document(input, &keys);
    }
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
