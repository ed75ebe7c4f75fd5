//! Reading a certificate from the file a user already has: PEM, DER, or an
//! entry of a PKCS#12 truststore.

use super::KeystoreError;
use crate::wss::certificate::{CertificateError, first_reason};

/// The certificate in a file a user already has: PEM, DER or PKCS#12. From a
/// PKCS#12 truststore, the entry whose friendly name is `entry_name`, or the only
/// certificate. Returns PEM.
pub fn certificate_from_file(
    file_name: &str,
    bytes: &[u8],
    password: Option<&str>,
    entry_name: &str,
) -> Result<Vec<u8>, KeystoreError> {
    let looks_pem = bytes.trim_ascii_start().starts_with(b"-----BEGIN");
    let is_p12 = !looks_pem
        && (file_name.ends_with(".p12")
            || file_name.ends_with(".pfx")
            || openssl::x509::X509::from_der(bytes).is_err());
    let cert = if is_p12 {
        let fail = |e: openssl::error::ErrorStack| KeystoreError::Pkcs12 {
            file: file_name.to_string(),
            reason: first_reason(&e),
        };
        let parsed = openssl::pkcs12::Pkcs12::from_der(bytes)
            .and_then(|p| p.parse2(password.unwrap_or("")))
            .map_err(fail)?;
        let mut all: Vec<openssl::x509::X509> = parsed.cert.into_iter().collect();
        if let Some(ca) = parsed.ca {
            all.extend(ca);
        }
        let name_of =
            |c: &openssl::x509::X509| c.alias().map(|a| String::from_utf8_lossy(a).into_owned());
        if let Some(c) = all
            .iter()
            .find(|c| name_of(c).as_deref() == Some(entry_name))
        {
            c.clone()
        } else if all.len() == 1 {
            all.remove(0)
        } else {
            let available: Vec<String> = all
                .iter()
                .map(|c| name_of(c).unwrap_or_else(|| "(unnamed)".into()))
                .collect();
            return Err(KeystoreError::NoSuchEntry {
                file: file_name.to_string(),
                name: entry_name.to_string(),
                available: if available.is_empty() {
                    "none".into()
                } else {
                    available.join(", ")
                },
            });
        }
    } else {
        crate::wss::certificate::parse_certificate(bytes).map_err(|reason| {
            KeystoreError::Refused {
                alias: entry_name.to_string(),
                file: file_name.to_string(),
                reason,
            }
        })?
    };
    cert.to_pem().map_err(|e| KeystoreError::Refused {
        alias: entry_name.to_string(),
        file: file_name.to_string(),
        reason: CertificateError::Parse(first_reason(&e)),
    })
}
