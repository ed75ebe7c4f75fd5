//! Inputs that once broke the engine (fuzzer findings and others), kept so they
//! stay fixed: each must be refused or give a well-formed envelope that decrypts to a
//! well-formed document, never panic.

mod common;

use wssgate::wss::{self, EncryptOptions};

#[test]
fn kept_crash_inputs_are_refused_or_well_formed() {
    let dir = common::data_dir().join("regressions");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let input = std::fs::read(&path).unwrap();
        n += 1;
        match wss::encrypt_to_vec(
            &input,
            &common::receiver().recipient(),
            &EncryptOptions::default(),
        ) {
            Ok((out, _)) => {
                let text = String::from_utf8(out).unwrap();
                roxmltree::Document::parse(text.trim_start_matches('\u{feff}'))
                    .unwrap_or_else(|e| panic!("{}: output not well-formed: {e}", path.display()));
                // What was accepted decrypts to a well-formed document.
                let (plain, _) =
                    wss::decrypt::decrypt_document(text.as_bytes(), &common::receiver().key_ring())
                        .unwrap_or_else(|e| {
                            panic!("{}: output does not decrypt: {e}", path.display())
                        });
                let plain = String::from_utf8(plain).unwrap();
                roxmltree::Document::parse(plain.trim_start_matches('\u{feff}')).unwrap_or_else(
                    |e| panic!("{}: decrypted Body not well-formed: {e}", path.display()),
                );
            }
            Err(e) => assert!(e.is_input_error(), "{}: {e}", path.display()),
        }
        let _ = wss::decrypt::decrypt_document(&input, &common::receiver().key_ring());
    }
    assert!(n > 0, "the regression inputs are in {}", dir.display());
}
