//! The decryptor on arbitrary input: errors are fine, panics are not.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wssgate::wss::{decrypt::decrypt_document, keys::KeyRing};

fuzz_target!(|data: &[u8]| {
    let _ = decrypt_document(data, &KeyRing::default());
});
