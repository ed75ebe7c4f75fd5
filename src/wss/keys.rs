//! The receiver's private keys, as the decryptor uses them: PEM files holding a
//! private key and its certificate, or PKCS#12 files with a password.
//!
//! A key without its certificate is accepted (it can then only be found by trying
//! it), but a certificate that does not belong to the key beside it is refused.

use std::path::Path;

use openssl::pkcs12::Pkcs12;
use openssl::pkey::{PKey, Private};
use openssl::x509::X509;

use super::certificate::{CertificateInfo, first_reason};

/// Why a key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: no private key found (expected PEM with a private key, or PKCS#12)")]
    NoPrivateKey { path: String },
    #[error("{path}: {reason}")]
    Invalid { path: String, reason: String },
    #[error("{path}: PKCS#12 could not be opened (wrong password or damaged file): {reason}")]
    Pkcs12 { path: String, reason: String },
    #[error("{path}: the certificate does not belong to the private key")]
    Mismatch { path: String },
}

/// One private key the receiver holds, with its certificate when known.
pub struct PrivateKeyEntry {
    pub key: PKey<Private>,
    pub certificate: Option<X509>,
    pub info: Option<CertificateInfo>,
    /// Where it came from, for messages.
    pub source: String,
}

impl std::fmt::Debug for PrivateKeyEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("PrivateKeyEntry")
            .field("source", &self.source)
            .field("serial", &self.info.as_ref().map(|i| &i.serial))
            .finish()
    }
}

impl PrivateKeyEntry {
    fn new(
        key: PKey<Private>,
        certificate: Option<X509>,
        source: &str,
    ) -> Result<PrivateKeyEntry, KeyError> {
        let info = match &certificate {
            Some(cert) => {
                let public = cert.public_key().map_err(|e| KeyError::Invalid {
                    path: source.to_string(),
                    reason: first_reason(&e),
                })?;
                if !public.public_eq(&key) {
                    return Err(KeyError::Mismatch {
                        path: source.to_string(),
                    });
                }
                Some(CertificateInfo::of(cert).map_err(|e| KeyError::Invalid {
                    path: source.to_string(),
                    reason: e.to_string(),
                })?)
            }
            None => None,
        };
        Ok(PrivateKeyEntry {
            key,
            certificate,
            info,
            source: source.to_string(),
        })
    }
}

/// The set of private keys a decryptor may use.
#[derive(Debug, Default)]
pub struct KeyRing {
    pub entries: Vec<PrivateKeyEntry>,
}

impl KeyRing {
    pub fn push(&mut self, entry: PrivateKeyEntry) {
        self.entries.push(entry);
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Load a key file: PKCS#12 by extension (`.p12`, `.pfx`) or content, else PEM.
    pub fn load_file(&mut self, path: &Path, password: Option<&str>) -> Result<(), KeyError> {
        let name = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| KeyError::Read {
            path: name.clone(),
            source,
        })?;
        let is_p12 = matches!(
            path.extension()
                .and_then(|e| e.to_str())
                .map(str::to_ascii_lowercase)
                .as_deref(),
            Some("p12" | "pfx")
        ) || (!bytes.trim_ascii_start().starts_with(b"-----")
            && bytes.first() == Some(&0x30));
        let entry = if is_p12 {
            from_pkcs12(&bytes, password.unwrap_or(""), &name)?
        } else {
            from_pem(&bytes, &name)?
        };
        self.push(entry);
        Ok(())
    }
}

/// A PEM holding a private key and (normally) its certificate.
pub fn from_pem(bytes: &[u8], source: &str) -> Result<PrivateKeyEntry, KeyError> {
    let key = PKey::private_key_from_pem(bytes).map_err(|_| KeyError::NoPrivateKey {
        path: source.to_string(),
    })?;
    let certificate = if bytes
        .windows(b"BEGIN CERTIFICATE".len())
        .any(|w| w == b"BEGIN CERTIFICATE")
    {
        let mut certs = X509::stack_from_pem(bytes).map_err(|e| KeyError::Invalid {
            path: source.to_string(),
            reason: first_reason(&e),
        })?;
        // The certificate of this key may not be the first in a chain.
        let pos = certs
            .iter()
            .position(|c| c.public_key().is_ok_and(|p| p.public_eq(&key)));
        match pos {
            Some(i) => Some(certs.swap_remove(i)),
            None => {
                return Err(KeyError::Mismatch {
                    path: source.to_string(),
                });
            }
        }
    } else {
        None
    };
    PrivateKeyEntry::new(key, certificate, source)
}

/// A PKCS#12 file with its password.
pub fn from_pkcs12(
    bytes: &[u8],
    password: &str,
    source: &str,
) -> Result<PrivateKeyEntry, KeyError> {
    let p12 = Pkcs12::from_der(bytes).map_err(|e| KeyError::Pkcs12 {
        path: source.to_string(),
        reason: first_reason(&e),
    })?;
    let parsed = p12.parse2(password).map_err(|e| KeyError::Pkcs12 {
        path: source.to_string(),
        reason: first_reason(&e),
    })?;
    let key = parsed.pkey.ok_or_else(|| KeyError::NoPrivateKey {
        path: source.to_string(),
    })?;
    PrivateKeyEntry::new(key, parsed.cert, source)
}
