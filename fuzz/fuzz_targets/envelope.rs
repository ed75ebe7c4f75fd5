//! The streaming envelope rewriter on arbitrary input: it must never panic, and
//! what it accepts must come out as a well-formed document whose decrypted Body
//! is well-formed too (the Body scanner checks what the receiver will parse).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use wssgate::wss::keys::{self, KeyRing};
use wssgate::wss::{self, EncryptOptions, Recipient, decrypt::decrypt_document};

fn receiver() -> &'static (Recipient, KeyRing) {
    static R: OnceLock<(Recipient, KeyRing)> = OnceLock::new();
    R.get_or_init(|| {
        let pair = wssgate::receiver::KeyPair::generate(&Default::default()).unwrap();
        let mut ring = KeyRing::default();
        ring.push(pair.entry("fuzz").unwrap());
        (Recipient::new(pair.cert).unwrap(), ring)
    })
}

fuzz_target!(|data: &[u8]| {
    let (recipient, keys) = receiver();
    if let Ok((out, _)) = wss::encrypt_to_vec(data, recipient, &EncryptOptions::default()) {
        let text = std::str::from_utf8(&out).expect("output is UTF-8");
        let text = text.trim_start_matches('\u{feff}');
        roxmltree::Document::parse(text).expect("accepted input gives well-formed output");
        let (plain, _) = decrypt_document(&out, keys).expect("output decrypts");
        let plain = std::str::from_utf8(&plain).expect("decrypted output is UTF-8");
        roxmltree::Document::parse(plain.trim_start_matches('\u{feff}'))
            .expect("accepted input has a well-formed Body");
    }
});
