//! The configuration parser on arbitrary text: a refusal must be a `ConfigError`
//! that names the file, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;
use wssgate::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = Config::parse(text, Path::new("/etc/wssgate/fuzz.toml")) {
        // Every error must render (file:line: key: message) without panicking.
        let rendered = e.to_string();
        assert!(rendered.starts_with("/etc/wssgate/fuzz.toml"), "{rendered}");
    }
});
