//! Receiver certificates: parsing, the checks every certificate must pass before a
//! message is encrypted for it, and the facts about it that the wire format and the
//! operators need (RFC 2253 issuer, its WCF form, decimal serial, fingerprints, SKI,
//! validity), and the comparison of issuer names a receiver reads back.
//!
//! The keystore uses the same checks on load and on every exchange, so a certificate
//! that `wssgate encrypt` refuses is refused by the daemon too, with the same words.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use openssl::asn1::{Asn1Time, Asn1TimeRef};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{Id, PKey, Public};
use openssl::x509::{X509, X509KeyUsage, X509NameRef};

/// Why a certificate cannot be used to encrypt for its receiver.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    #[error("not an X.509 certificate in PEM or DER form: {0}")]
    Parse(String),
    #[error("the file holds no certificate")]
    Empty,
    #[error("public key is {0}, not RSA")]
    NotRsa(String),
    #[error("RSA key has {bits} bits, fewer than the required {min}")]
    KeyTooSmall { bits: u32, min: u32 },
    #[error("certificate expired at {not_after}")]
    Expired { not_after: String },
    #[error("certificate is not valid before {not_before}")]
    NotYetValid { not_before: String },
    #[error("KeyUsage extension does not allow keyEncipherment")]
    NoKeyEncipherment,
    #[error("certificate has no SubjectKeyIdentifier extension, which key identifier ski needs")]
    NoSubjectKeyIdentifier,
}

/// What a certificate must satisfy to be used for encryption.
#[derive(Debug, Clone, Copy)]
pub struct CertificatePolicy {
    pub min_rsa_bits: u32,
    /// Refuse a certificate without SubjectKeyIdentifier (a route asks for `ski`).
    pub require_ski: bool,
    /// Accept a certificate whose validity has not started yet (staging only).
    pub allow_not_yet_valid: bool,
}

impl Default for CertificatePolicy {
    fn default() -> Self {
        CertificatePolicy {
            min_rsa_bits: 2048,
            require_ski: false,
            allow_not_yet_valid: false,
        }
    }
}

impl CertificatePolicy {
    /// The one rule tying key identifiers to certificates: a message that names
    /// its key by SubjectKeyIdentifier needs a certificate that has one.
    pub fn for_key_identifiers(
        min_rsa_bits: u32,
        key_identifiers: impl IntoIterator<Item = super::KeyIdentifier>,
    ) -> CertificatePolicy {
        CertificatePolicy {
            min_rsa_bits,
            require_ski: key_identifiers
                .into_iter()
                .any(|k| k == super::KeyIdentifier::Ski),
            allow_not_yet_valid: false,
        }
    }
}

/// The facts about a certificate that the wire format, logs and the admin API use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateInfo {
    /// Decimal serial number.
    pub serial: String,
    /// Issuer distinguished name in RFC 2253 form.
    pub issuer: String,
    /// Subject distinguished name in RFC 2253 form.
    pub subject: String,
    /// Lowercase hex SHA-256 of the DER encoding.
    pub sha256: String,
    /// SHA-1 of the DER encoding (the WS-Security thumbprint).
    pub sha1: Vec<u8>,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    /// Raw SubjectKeyIdentifier bytes, when the extension is present.
    pub ski: Option<Vec<u8>>,
    /// `None` when the key is not RSA.
    pub rsa_bits: Option<u32>,
    pub key_usage_allows_encipherment: bool,
}

impl CertificateInfo {
    pub fn of(cert: &X509) -> Result<CertificateInfo, CertificateError> {
        let crypto = |e: openssl::error::ErrorStack| CertificateError::Parse(e.to_string());
        let serial = cert
            .serial_number()
            .to_bn()
            .and_then(|bn| bn.to_dec_str().map(|s| s.to_string()))
            .map_err(crypto)?;
        let sha256 = hex::encode(cert.digest(MessageDigest::sha256()).map_err(crypto)?);
        let sha1 = cert.digest(MessageDigest::sha1()).map_err(crypto)?.to_vec();
        let key = cert.public_key().map_err(crypto)?;
        let rsa_bits = (key.id() == Id::RSA).then(|| key.bits());
        let key_usage_allows_encipherment = cert
            .key_usage()
            .is_none_or(|ku| ku.contains(X509KeyUsage::KEY_ENCIPHERMENT));
        Ok(CertificateInfo {
            serial,
            issuer: rfc2253(cert.issuer_name()),
            subject: rfc2253(cert.subject_name()),
            sha256,
            sha1,
            not_before: asn1_to_system_time(cert.not_before()).map_err(crypto)?,
            not_after: asn1_to_system_time(cert.not_after()).map_err(crypto)?,
            ski: cert.subject_key_id().map(|s| s.as_slice().to_vec()),
            rsa_bits,
            key_usage_allows_encipherment,
        })
    }

    /// Whole days from `now` until the certificate expires (negative once expired).
    pub fn days_left(&self, now: SystemTime) -> i64 {
        match self.not_after.duration_since(now) {
            Ok(d) => (d.as_secs() / 86_400) as i64,
            Err(e) => -(e.duration().as_secs().div_ceil(86_400) as i64),
        }
    }

    /// Check the certificate against the policy at `now`.
    pub fn check(
        &self,
        cert: &X509,
        policy: &CertificatePolicy,
        now: SystemTime,
    ) -> Result<(), CertificateError> {
        let Some(bits) = self.rsa_bits else {
            let kind = cert
                .public_key()
                .map(|k| key_kind(&k))
                .unwrap_or_else(|_| "unreadable".to_string());
            return Err(CertificateError::NotRsa(kind));
        };
        if bits < policy.min_rsa_bits {
            return Err(CertificateError::KeyTooSmall {
                bits,
                min: policy.min_rsa_bits,
            });
        }
        if now > self.not_after {
            return Err(CertificateError::Expired {
                not_after: crate::time::rfc3339(self.not_after),
            });
        }
        if now < self.not_before && !policy.allow_not_yet_valid {
            return Err(CertificateError::NotYetValid {
                not_before: crate::time::rfc3339(self.not_before),
            });
        }
        if !self.key_usage_allows_encipherment {
            return Err(CertificateError::NoKeyEncipherment);
        }
        if policy.require_ski && self.ski.is_none() {
            return Err(CertificateError::NoSubjectKeyIdentifier);
        }
        Ok(())
    }
}

/// What kind of key a non-RSA public key is, for messages.
pub(crate) fn key_kind(key: &PKey<Public>) -> String {
    match key.id() {
        Id::EC => "EC".to_string(),
        Id::DSA => "DSA".to_string(),
        Id::ED25519 => "Ed25519".to_string(),
        Id::ED448 => "Ed448".to_string(),
        Id::DH => "DH".to_string(),
        other => format!("key type {}", other.as_raw()),
    }
}

/// Parse one certificate from PEM or DER bytes. PEM with several certificates
/// yields the first (the leaf).
pub fn parse_certificate(bytes: &[u8]) -> Result<X509, CertificateError> {
    let trimmed = bytes.trim_ascii_start();
    if trimmed.starts_with(b"-----BEGIN") {
        let mut certs =
            X509::stack_from_pem(bytes).map_err(|e| CertificateError::Parse(first_reason(&e)))?;
        if certs.is_empty() {
            return Err(CertificateError::Empty);
        }
        Ok(certs.swap_remove(0))
    } else if bytes.is_empty() {
        Err(CertificateError::Empty)
    } else {
        X509::from_der(bytes).map_err(|e| CertificateError::Parse(first_reason(&e)))
    }
}

/// OpenSSL's reason for the first error, without library and file details.
pub(crate) fn first_reason(e: &openssl::error::ErrorStack) -> String {
    e.errors()
        .first()
        .and_then(|e| e.reason().map(str::to_string))
        .unwrap_or_else(|| "unreadable".to_string())
}

fn asn1_to_system_time(t: &Asn1TimeRef) -> Result<SystemTime, openssl::error::ErrorStack> {
    let epoch = Asn1Time::from_unix(0)?;
    let diff = epoch.diff(t)?;
    let secs = i64::from(diff.days) * 86_400 + i64::from(diff.secs);
    Ok(if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs as u64)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    })
}

/// A distinguished name in RFC 2253 form: most specific RDN first, the attribute
/// keywords Java's `X500Principal` reads back, and RFC 2253 escaping.
pub fn rfc2253(name: &X509NameRef) -> String {
    let entries: Vec<_> = name.entries().collect();
    let mut out = String::new();
    for (i, entry) in entries.iter().rev().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let nid = entry.object().nid();
        let keyword = match nid {
            Nid::COMMONNAME => "CN".to_string(),
            Nid::COUNTRYNAME => "C".to_string(),
            Nid::LOCALITYNAME => "L".to_string(),
            Nid::STATEORPROVINCENAME => "ST".to_string(),
            Nid::ORGANIZATIONNAME => "O".to_string(),
            Nid::ORGANIZATIONALUNITNAME => "OU".to_string(),
            Nid::STREETADDRESS => "STREET".to_string(),
            Nid::DOMAINCOMPONENT => "DC".to_string(),
            Nid::USERID => "UID".to_string(),
            _ => entry.object().to_string_oid(),
        };
        out.push_str(&keyword);
        out.push('=');
        let value = entry_value(entry);
        escape_rdn_value(&value, &mut out);
    }
    out
}

/// The text of one RDN value (its bytes read as UTF-8 where the string type is not).
fn entry_value(entry: &openssl::x509::X509NameEntryRef) -> String {
    entry
        .data()
        .to_string()
        .unwrap_or_else(|_| String::from_utf8_lossy(entry.data().as_slice()).into_owned())
}

/// A distinguished name as .NET's `X500DistinguishedName.Name` prints it, which is
/// the string WCF compares an `X509IssuerName` with: most specific RDN first, `", "`
/// between RDNs, CryptoAPI's keywords (`S` for the state, `E` for the e-mail address,
/// `OID.` before a dotted one), and a value holding a special character or edge
/// whitespace in double quotes with inner quotes doubled. WCF's fallback parser does
/// not read RFC 2253's backslash escapes, so `O=Example\, Inc.` never matches there.
pub fn wcf_name(name: &X509NameRef) -> String {
    let entries: Vec<_> = name.entries().collect();
    let mut out = String::new();
    for (i, entry) in entries.iter().rev().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let object = entry.object();
        let keyword = match object.nid() {
            Nid::COMMONNAME => "CN".to_string(),
            Nid::COUNTRYNAME => "C".to_string(),
            Nid::LOCALITYNAME => "L".to_string(),
            Nid::STATEORPROVINCENAME => "S".to_string(),
            Nid::ORGANIZATIONNAME => "O".to_string(),
            Nid::ORGANIZATIONALUNITNAME => "OU".to_string(),
            Nid::STREETADDRESS => "STREET".to_string(),
            Nid::DOMAINCOMPONENT => "DC".to_string(),
            Nid::PKCS9_EMAILADDRESS => "E".to_string(),
            Nid::TITLE => "T".to_string(),
            Nid::GIVENNAME => "G".to_string(),
            Nid::INITIALS => "I".to_string(),
            Nid::SURNAME => "SN".to_string(),
            Nid::SERIALNUMBER => "SERIALNUMBER".to_string(),
            _ => format!("OID.{}", object.to_string_oid()),
        };
        out.push_str(&keyword);
        out.push('=');
        let value = entry_value(entry);
        quote_wcf_value(&value, &mut out);
    }
    out
}

/// Quote as .NET does: an empty value, one that starts or ends with a space or an
/// ASCII control space (tab to carriage return), or one holding `, + = " < > # ;`
/// or a line feed (not a carriage return: Windows does not either).
fn quote_wcf_value(value: &str, out: &mut String) {
    let edge = |c: char| c == ' ' || ('\u{9}'..='\u{d}').contains(&c);
    let needs = value.is_empty()
        || value.starts_with(edge)
        || value.ends_with(edge)
        || value.contains([',', '+', '=', '"', '\n', '<', '>', '#', ';']);
    if !needs {
        out.push_str(value);
        return;
    }
    out.push('"');
    for c in value.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    out.push('"');
}

/// Whether two distinguished names in string form name the same issuer. Both the
/// RFC 2253 form (backslash escapes, `,`) and the WCF/RFC 1779 one (quoted values,
/// `", "` or `;`) are read; keywords match by their common spellings (`S` and `ST`,
/// `E` and `EMAILADDRESS`, `OID.2.5.4.3` and `CN`), values regardless of case and
/// repeated spaces. A name that does not parse matches nothing.
pub fn same_distinguished_name(a: &str, b: &str) -> bool {
    match (parse_dn(a), parse_dn(b)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// `(keyword, value)` pairs in the order written, normalized for comparison.
fn parse_dn(text: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            break;
        }
        let mut keyword = String::new();
        for c in chars.by_ref() {
            if c == '=' {
                break;
            }
            keyword.push(c);
        }
        let keyword = canonical_keyword(keyword.trim())?;
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = Vec::<u8>::new();
        if chars.next_if_eq(&'"').is_some() {
            loop {
                match chars.next()? {
                    '"' if chars.next_if_eq(&'"').is_some() => value.push(b'"'),
                    '"' => break,
                    '\\' => push_char(&mut value, chars.next()?),
                    c => push_char(&mut value, c),
                }
            }
            while chars.next_if(|c| c.is_whitespace()).is_some() {}
        } else {
            // Trailing spaces are insignificant unless escaped.
            let mut significant = 0;
            while let Some(&c) = chars.peek() {
                if matches!(c, ',' | ';' | '+') {
                    break;
                }
                chars.next();
                if c == '\\' {
                    let first = chars.next()?;
                    let second = chars.peek().copied();
                    match (first.to_digit(16), second.and_then(|c| c.to_digit(16))) {
                        (Some(h), Some(l)) => {
                            chars.next();
                            value.push((h * 16 + l) as u8);
                        }
                        _ => push_char(&mut value, first),
                    }
                    significant = value.len();
                } else {
                    push_char(&mut value, c);
                    if !c.is_whitespace() {
                        significant = value.len();
                    }
                }
            }
            value.truncate(significant);
        }
        match chars.next() {
            None | Some(',' | ';' | '+') => {}
            Some(_) => return None,
        }
        let value = String::from_utf8(value).ok()?;
        let value = value
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase();
        out.push((keyword, value));
    }
    Some(out)
}

fn push_char(out: &mut Vec<u8>, c: char) {
    let mut buf = [0u8; 4];
    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
}

/// One spelling per attribute type.
fn canonical_keyword(keyword: &str) -> Option<String> {
    if keyword.is_empty() {
        return None;
    }
    let upper = keyword.to_ascii_uppercase();
    let bare = upper.strip_prefix("OID.").unwrap_or(&upper);
    Some(
        match bare {
            "CN" | "2.5.4.3" => "CN",
            "C" | "2.5.4.6" => "C",
            "L" | "2.5.4.7" => "L",
            "ST" | "S" | "2.5.4.8" => "ST",
            "O" | "2.5.4.10" => "O",
            "OU" | "2.5.4.11" => "OU",
            "STREET" | "2.5.4.9" => "STREET",
            "DC" | "0.9.2342.19200300.100.1.25" => "DC",
            "UID" | "0.9.2342.19200300.100.1.1" => "UID",
            "E" | "EMAIL" | "EMAILADDRESS" | "1.2.840.113549.1.9.1" => "E",
            "T" | "TITLE" | "2.5.4.12" => "T",
            "G" | "GIVENNAME" | "2.5.4.42" => "G",
            "I" | "INITIALS" | "2.5.4.43" => "I",
            "SN" | "SURNAME" | "2.5.4.4" => "SN",
            "SERIALNUMBER" | "2.5.4.5" => "SERIALNUMBER",
            other => other,
        }
        .to_string(),
    )
}

trait OidString {
    fn to_string_oid(&self) -> String;
}

impl OidString for openssl::asn1::Asn1ObjectRef {
    fn to_string_oid(&self) -> String {
        // Display of an ASN1_OBJECT prints its long name when OpenSSL knows one;
        // RFC 2253 wants the dotted form for keywords it does not define.
        let text = self.to_string();
        if text.chars().all(|c| c.is_ascii_digit() || c == '.') {
            return text;
        }
        match self.nid() {
            Nid::PKCS9_EMAILADDRESS => "1.2.840.113549.1.9.1".to_string(),
            Nid::SERIALNUMBER => "2.5.4.5".to_string(),
            Nid::SURNAME => "2.5.4.4".to_string(),
            Nid::GIVENNAME => "2.5.4.42".to_string(),
            Nid::TITLE => "2.5.4.12".to_string(),
            Nid::INITIALS => "2.5.4.43".to_string(),
            _ => text,
        }
    }
}

fn escape_rdn_value(value: &str, out: &mut String) {
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let needs = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if needs {
            out.push('\\');
        }
        out.push(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rdn_escaping() {
        let mut s = String::new();
        escape_rdn_value(" a,b+c ", &mut s);
        assert_eq!(s, "\\ a\\,b\\+c\\ ");
    }

    fn name(entries: &[(&str, &str)]) -> openssl::x509::X509Name {
        let mut b = openssl::x509::X509NameBuilder::new().unwrap();
        for (k, v) in entries {
            b.append_entry_by_text(k, v).unwrap();
        }
        b.build()
    }

    #[test]
    fn wcf_form_quotes_instead_of_escaping() {
        let n = name(&[
            ("C", "US"),
            ("ST", "New York"),
            ("O", "Entrust, Inc."),
            ("OU", "Say \"hi\""),
            ("CN", "Entrust Root"),
        ]);
        assert_eq!(
            wcf_name(&n),
            r#"CN=Entrust Root, OU="Say ""hi""", O="Entrust, Inc.", S=New York, C=US"#
        );
        assert_eq!(
            rfc2253(&n),
            r#"CN=Entrust Root,OU=Say \"hi\",O=Entrust\, Inc.,ST=New York,C=US"#
        );
        let mut s = String::new();
        quote_wcf_value(" lead", &mut s);
        quote_wcf_value("a\rb", &mut s);
        quote_wcf_value("", &mut s);
        assert_eq!(s, "\" lead\"a\rb\"\"");
    }

    #[test]
    fn both_forms_name_the_same_issuer() {
        let n = name(&[("C", "DE"), ("O", "Example, Receivers Inc."), ("CN", "rx")]);
        assert!(same_distinguished_name(&rfc2253(&n), &wcf_name(&n)));
        assert!(same_distinguished_name(
            "CN=rx,O=Example\\, Receivers Inc.,C=DE",
            "cn=RX; O=\"Example,  Receivers Inc.\"; C=DE"
        ));
        assert!(same_distinguished_name(
            "E=a@b.example,ST=Bayern",
            "EMAILADDRESS=a@b.example, S=Bayern"
        ));
        assert!(same_distinguished_name("CN=a\\2cb", "CN=\"a,b\""));
        assert!(same_distinguished_name("OID.2.5.4.3=x", "CN=x"));
        // Order matters; so does every RDN.
        assert!(!same_distinguished_name("CN=a,O=b", "O=b,CN=a"));
        assert!(!same_distinguished_name("CN=a,O=b", "CN=a"));
        assert!(!same_distinguished_name(
            "CN=a,O=Example\\, Inc.",
            "CN=a,O=Example, Inc."
        ));
        assert!(!same_distinguished_name(
            "CN=\"unterminated",
            "CN=unterminated"
        ));
    }

    #[test]
    fn garbage_is_a_parse_error() {
        assert!(matches!(
            parse_certificate(b"not a certificate"),
            Err(CertificateError::Parse(_))
        ));
        assert_eq!(parse_certificate(b""), Err(CertificateError::Empty));
    }
}
