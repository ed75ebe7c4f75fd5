//! The streaming envelope rewriter on arbitrary input: it must never panic, and
//! what it accepts must come out as a well-formed document.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use wssgate::wss::{self, EncryptOptions, Recipient};

fn recipient() -> &'static Recipient {
    static R: OnceLock<Recipient> = OnceLock::new();
    R.get_or_init(|| {
        // A fixed throw-away certificate made once per process.
        use openssl::{asn1::Asn1Time, hash::MessageDigest, pkey::PKey, rsa::Rsa, x509::*};
        let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
        let mut name = X509NameBuilder::new().unwrap();
        name.append_entry_by_text("CN", "fuzz").unwrap();
        let name = name.build();
        let mut b = X509::builder().unwrap();
        b.set_version(2).unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(&name).unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_not_before(&Asn1Time::days_from_now(0).unwrap()).unwrap();
        b.set_not_after(&Asn1Time::days_from_now(30).unwrap()).unwrap();
        b.sign(&key, MessageDigest::sha256()).unwrap();
        Recipient::new(b.build()).unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok((out, _)) = wss::encrypt_to_vec(data, recipient(), &EncryptOptions::default()) {
        let text = std::str::from_utf8(&out).expect("output is UTF-8");
        let text = text.trim_start_matches('\u{feff}');
        roxmltree::Document::parse(text).expect("accepted input gives well-formed output");
    }
});
