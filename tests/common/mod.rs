//! Test helpers shared by the integration tests: throw-away receiver key pairs and
//! certificates, the corpus location, and running the independent decryptors.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use openssl::asn1::{Asn1Integer, Asn1Time};
use openssl::bn::BigNum;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::extension::{KeyUsage, SubjectKeyIdentifier};
use openssl::x509::{X509, X509NameBuilder};

/// A receiver key pair with its self-signed certificate.
pub struct TestReceiver {
    pub key: PKey<Private>,
    pub cert: X509,
}

pub struct CertSpec {
    pub bits: u32,
    pub common_name: String,
    pub serial: u32,
    pub ski: bool,
    /// KeyUsage: Some(true) = keyEncipherment, Some(false) = digitalSignature only.
    pub key_encipherment: Option<bool>,
    /// Days from now; negative for the past.
    pub not_before_days: i64,
    pub not_after_days: i64,
}

impl Default for CertSpec {
    fn default() -> Self {
        CertSpec {
            bits: 2048,
            common_name: "receiver".into(),
            serial: 4711,
            ski: true,
            key_encipherment: Some(true),
            not_before_days: -1,
            not_after_days: 365,
        }
    }
}

fn days_from_now(days: i64) -> Asn1Time {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    Asn1Time::from_unix(now + days * 86_400).unwrap()
}

impl TestReceiver {
    pub fn new(spec: &CertSpec) -> TestReceiver {
        let key = PKey::from_rsa(Rsa::generate(spec.bits).unwrap()).unwrap();
        TestReceiver::with_key(key, spec)
    }

    pub fn with_key(key: PKey<Private>, spec: &CertSpec) -> TestReceiver {
        let mut name = X509NameBuilder::new().unwrap();
        name.append_entry_by_text("C", "DE").unwrap();
        name.append_entry_by_text("O", "Example, Receivers Inc.")
            .unwrap();
        name.append_entry_by_text("CN", &spec.common_name).unwrap();
        let name = name.build();
        let mut b = X509::builder().unwrap();
        b.set_version(2).unwrap();
        let serial = Asn1Integer::from_bn(&BigNum::from_u32(spec.serial).unwrap()).unwrap();
        b.set_serial_number(&serial).unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(&name).unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_not_before(&days_from_now(spec.not_before_days))
            .unwrap();
        b.set_not_after(&days_from_now(spec.not_after_days))
            .unwrap();
        if spec.ski {
            let ski = SubjectKeyIdentifier::new()
                .build(&b.x509v3_context(None, None))
                .unwrap();
            b.append_extension(ski).unwrap();
        }
        match spec.key_encipherment {
            Some(true) => b
                .append_extension(
                    KeyUsage::new()
                        .key_encipherment()
                        .digital_signature()
                        .build()
                        .unwrap(),
                )
                .unwrap(),
            Some(false) => b
                .append_extension(KeyUsage::new().digital_signature().build().unwrap())
                .unwrap(),
            None => {}
        }
        b.sign(&key, MessageDigest::sha256()).unwrap();
        TestReceiver {
            key,
            cert: b.build(),
        }
    }

    pub fn cert_pem(&self) -> Vec<u8> {
        self.cert.to_pem().unwrap()
    }

    pub fn key_pem(&self) -> Vec<u8> {
        self.key.private_key_to_pem_pkcs8().unwrap()
    }

    /// PEM with the private key followed by the certificate (what `decrypt --key` reads).
    pub fn key_and_cert_pem(&self) -> Vec<u8> {
        let mut v = self.key_pem();
        v.extend_from_slice(&self.cert_pem());
        v
    }

    pub fn recipient(&self) -> wssgate::wss::Recipient {
        wssgate::wss::Recipient::new(self.cert.clone()).unwrap()
    }

    pub fn key_ring(&self) -> wssgate::wss::keys::KeyRing {
        let mut ring = wssgate::wss::keys::KeyRing::default();
        ring.push(wssgate::wss::keys::from_pem(&self.key_and_cert_pem(), "test").unwrap());
        ring
    }

    /// Write key.pem, cert.pem and key+cert.pem into `dir`.
    pub fn write_to(&self, dir: &Path, stem: &str) -> (PathBuf, PathBuf, PathBuf) {
        let key = dir.join(format!("{stem}-key.pem"));
        let cert = dir.join(format!("{stem}-cert.pem"));
        let both = dir.join(format!("{stem}-both.pem"));
        std::fs::write(&key, self.key_pem()).unwrap();
        std::fs::write(&cert, self.cert_pem()).unwrap();
        std::fs::write(&both, self.key_and_cert_pem()).unwrap();
        (key, cert, both)
    }
}

/// A shared 2048-bit receiver: RSA key generation is slow in debug builds.
pub fn receiver() -> &'static TestReceiver {
    static R: std::sync::OnceLock<TestReceiver> = std::sync::OnceLock::new();
    R.get_or_init(|| TestReceiver::new(&CertSpec::default()))
}

/// The repository's test data directory.
pub fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

/// The SOAP corpus kept in the repository.
pub fn corpus_files() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(data_dir().join("soap"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "xml"))
        .collect();
    v.sort();
    v
}

/// The Python interpreter that has python3-xmlsec (Debian's).
pub fn python() -> &'static str {
    "/usr/bin/python3"
}

/// Run a helper script under tests/interop and return its stdout parsed as JSON.
pub fn run_interop_script(script: &str, args: &[&str]) -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/interop")
        .join(script);
    let out = std::process::Command::new(python())
        .arg(&path)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {}: {e} (install python3-xmlsec: see README)",
                path.display()
            )
        });
    assert!(
        out.status.success(),
        "{script} failed: {}\n(install xmlsec1 and python3-xmlsec: see README)",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("script output is JSON")
}
