//! The decryptor against XML Encryption test vectors made by other implementations
//! (the xmlsec, Phaos, Merlin and W3C XML Encryption 1.1 interop suites; sources in
//! tests/data/CORPUS-SOURCES.md). Each must decrypt to its published plaintext.

mod common;

use std::path::PathBuf;

use wssgate::wss::decrypt::{DecryptError, decrypt_document};
use wssgate::wss::keys::KeyRing;

fn vectors() -> PathBuf {
    common::data_dir().join("xmlenc-vectors")
}

fn ring(file: &str, password: Option<&str>) -> KeyRing {
    let mut ring = KeyRing::default();
    ring.load_file(&vectors().join(file), password).unwrap();
    ring
}

/// Compare documents without their XML declaration and surrounding whitespace.
fn normalize(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes).replace("\r\n", "\n");
    let text = text.trim();
    let text = match text.strip_prefix("<?xml") {
        Some(rest) => rest.split_once("?>").map_or(rest, |(_, r)| r),
        None => text,
    };
    // The published plaintext of one vector was re-serialized with an empty-element tag.
    text.trim().replace("></Expires>", "/>")
}

fn check(vector: &str, keys: &KeyRing) {
    let xml = std::fs::read(vectors().join(format!("{vector}.xml"))).unwrap();
    let want = std::fs::read(vectors().join(format!("{vector}.data"))).unwrap();
    let (got, summary) = decrypt_document(&xml, keys).unwrap_or_else(|e| panic!("{vector}: {e}"));
    assert_eq!(summary.decrypted, 1, "{vector}");
    let (got, want) = (normalize(&got), normalize(&want));
    assert_eq!(got, want, "{vector}");
}

#[test]
fn phaos_vectors_decrypt() {
    let keys = ring("01-phaos-xmlenc-3/rsa-priv-key.p12", Some("secret"));
    for v in [
        "01-phaos-xmlenc-3/enc-element-aes128-kt-rsa1_5",
        "01-phaos-xmlenc-3/enc-element-aes128-kt-rsa_oaep_sha1",
        "01-phaos-xmlenc-3/enc-content-aes256-kt-rsa1_5",
        "01-phaos-xmlenc-3/enc-text-aes256-kt-rsa_oaep_sha1",
    ] {
        check(v, &keys);
    }
}

#[test]
fn xmlsec_vectors_decrypt_including_xmlenc11_rsa_oaep_sha256() {
    let keys = ring("keys-rsa/rsa-4096-key.pem", None);
    check("aleksey-xmlenc-01/enc-aes256-kt-rsa_oaep_sha1", &keys);
    check(
        "aleksey-xmlenc-01/enc-aes256-kt-rsa_oaep_sha256_mgf1_sha256",
        &keys,
    );
}

#[test]
fn xmlenc11_interop_vectors_decrypt_gcm_and_sha384_oaep() {
    let keys = ring(
        "xmlenc11-interop-2012/RSA-2048_SHA256WithRSA.p12",
        Some("passwd"),
    );
    check(
        "xmlenc11-interop-2012/cipherText__RSA-2048__aes128-gcm__rsa-oaep-mgf1p",
        &keys,
    );
    let keys = ring(
        "xmlenc11-interop-2012/RSA-3072_SHA256WithRSA.p12",
        Some("passwd"),
    );
    check(
        "xmlenc11-interop-2012/cipherText__RSA-3072__aes256-gcm__rsa-oaep__Sha384-MGF_Sha1",
        &keys,
    );
}

#[test]
fn merlin_tripledes_vector_decrypts_and_the_doctype_one_is_refused() {
    let keys = ring("merlin-xmlenc-five/rsapriv.pem", None);
    check(
        "merlin-xmlenc-five/encrypt-data-tripledes-cbc-rsa-oaep-mgf1p",
        &keys,
    );
    let xml =
        std::fs::read(vectors().join("merlin-xmlenc-five/encrypt-element-aes128-cbc-rsa-1_5.xml"))
            .unwrap();
    match decrypt_document(&xml, &keys) {
        Err(DecryptError::Parse(msg)) => assert!(msg.to_lowercase().contains("dtd"), "{msg}"),
        other => panic!("a DOCTYPE must be refused, got {other:?}"),
    }
}

#[test]
fn a_key_that_is_not_held_is_named_in_the_error() {
    let other = common::TestReceiver::new(&common::CertSpec::default());
    let xml =
        std::fs::read(vectors().join("aleksey-xmlenc-01/enc-aes256-kt-rsa_oaep_sha1.xml")).unwrap();
    // The vector names its key only by KeyName, so every key is tried and fails.
    let err = decrypt_document(&xml, &other.key_ring()).unwrap_err();
    assert!(
        matches!(
            err,
            DecryptError::NoMatchingKey(_) | DecryptError::UnwrapFailed { .. }
        ),
        "{err}"
    );
}
