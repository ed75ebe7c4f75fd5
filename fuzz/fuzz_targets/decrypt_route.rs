//! A decrypt route's input path (`mode = "decrypt"`) on arbitrary input, with a
//! real key ring: the route's XML limits, the decryptor, the failure mapping.
//! Faults are fine, panics are not; a success is a well-formed document.
#![no_main]

use std::sync::OnceLock;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use wssgate::config::{Config, RouteConfig};
use wssgate::keyring::Ring;
use wssgate::keystore::Keystore;
use wssgate::receiver::{CertSpec, KeyPair};

/// The ring of a route's snapshot, loaded once from a throw-away directory.
fn route() -> &'static (Ring, RouteConfig) {
    static ROUTE: OnceLock<(Ring, RouteConfig)> = OnceLock::new();
    ROUTE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("wssgate-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("private")).expect("temp dir");
        let key = KeyPair::generate(&CertSpec::default()).expect("key");
        wssgate::keystore::files::write_private(
            &dir.join("private/tenant.pem"),
            &key.key_and_cert_pem().expect("pem"),
        )
        .expect("ring file");
        let text = format!(
            "[keystore]\nprivate_dir = \"{0}/private\"\nstate_dir = \"{0}/var\"\n[[route]]\nname = \"in\"\npath = \"/in\"\nupstream = \"http://127.0.0.1:9/\"\nmode = \"decrypt\"\nring = \"tenant\"\nallow_legacy = true\n",
            dir.display()
        );
        let config = Config::parse(&text, &dir.join("wssgate.toml")).expect("config");
        let keys = Keystore::new(config.keystore.clone())
            .ring_keys("tenant", std::time::SystemTime::now())
            .expect("ring");
        (Ring::new("tenant", keys), config.routes[0].clone())
    })
}

fuzz_target!(|data: &[u8]| {
    let (ring, route) = route();
    if let Ok(out) = wssgate::proxy::decrypt_request(ring, route, Bytes::copy_from_slice(data)) {
        if let Ok(text) = std::str::from_utf8(&out) {
            assert!(roxmltree::Document::parse(text.trim_start_matches('\u{feff}')).is_ok());
        }
    }
});
