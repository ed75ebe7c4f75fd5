//! The streaming envelope rewriter on arbitrary input: it must never panic, and
//! what it accepts must come out as a well-formed document.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use wssgate::wss::{self, EncryptOptions, Recipient};

fn recipient() -> &'static Recipient {
    static R: OnceLock<Recipient> = OnceLock::new();
    R.get_or_init(|| {
        let (_, cert) = wssgate::demo::throwaway_receiver(1, "fuzz").unwrap();
        Recipient::new(cert).unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok((out, _)) = wss::encrypt_to_vec(data, recipient(), &EncryptOptions::default()) {
        let text = std::str::from_utf8(&out).expect("output is UTF-8");
        let text = text.trim_start_matches('\u{feff}');
        roxmltree::Document::parse(text).expect("accepted input gives well-formed output");
    }
});
