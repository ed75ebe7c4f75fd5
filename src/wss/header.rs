//! The XML that wssgate writes into a message: the BinarySecurityToken, the
//! EncryptedKey with its SecurityTokenReference, a new Security header, and the
//! EncryptedData that replaces the Body content.
//!
//! Every element declares the namespaces it uses itself, so a fragment is correct
//! wherever it is inserted, whatever prefixes the surrounding envelope binds.

use std::fmt::Write as _;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use super::algorithms::{KeyIdentifier, KeyTransport, OaepDigest, ns, uri};
use super::{Algorithms, Recipient};

/// Identifiers of one message's security elements; fresh random values per message.
#[derive(Debug, Clone)]
pub struct MessageIds {
    pub encrypted_key: String,
    pub encrypted_data: String,
    pub token: String,
}

impl MessageIds {
    pub fn fresh() -> Result<MessageIds, super::cipher::CipherError> {
        let r = super::cipher::random_bytes(24)?;
        Ok(MessageIds {
            encrypted_key: format!("EK-{}", hex::encode(&r[..8])),
            encrypted_data: format!("ED-{}", hex::encode(&r[8..16])),
            token: format!("X509-{}", hex::encode(&r[16..24])),
        })
    }
}

/// Escape text for element content or a double-quoted attribute value.
pub fn escape(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
}

/// `wsse:BinarySecurityToken` carrying the certificate (key identifier `bst` only).
pub fn binary_security_token(recipient: &Recipient, ids: &MessageIds, out: &mut String) {
    let _ = write!(
        out,
        r#"<wsse:BinarySecurityToken xmlns:wsse="{wsse}" xmlns:wsu="{wsu}" EncodingType="{enc}" ValueType="{vt}" wsu:Id="{id}">{der}</wsse:BinarySecurityToken>"#,
        wsse = ns::WSSE,
        wsu = ns::WSU,
        enc = uri::BASE64_BINARY,
        vt = uri::X509V3,
        id = ids.token,
        der = recipient.der_base64(),
    );
}

/// The SecurityTokenReference that names the receiver's certificate.
fn token_reference(
    recipient: &Recipient,
    algorithms: &Algorithms,
    ids: &MessageIds,
    out: &mut String,
) {
    let _ = write!(
        out,
        r#"<wsse:SecurityTokenReference xmlns:wsse="{}">"#,
        ns::WSSE
    );
    let info = recipient.info();
    match algorithms.key_identifier {
        KeyIdentifier::IssuerSerial => {
            let _ = write!(
                out,
                r#"<ds:X509Data><ds:X509IssuerSerial><ds:X509IssuerName>"#
            );
            escape(recipient.issuer_name(algorithms.issuer_name_format), out);
            let _ = write!(
                out,
                "</ds:X509IssuerName><ds:X509SerialNumber>{}</ds:X509SerialNumber></ds:X509IssuerSerial></ds:X509Data>",
                info.serial
            );
        }
        KeyIdentifier::Bst => {
            let _ = write!(
                out,
                r##"<wsse:Reference URI="#{}" ValueType="{}"/>"##,
                ids.token,
                uri::X509V3
            );
        }
        KeyIdentifier::Ski => {
            // Validated before encryption starts: `ski` requires the extension.
            let ski = info.ski.as_deref().unwrap_or_default();
            let _ = write!(
                out,
                r#"<wsse:KeyIdentifier EncodingType="{}" ValueType="{}">{}</wsse:KeyIdentifier>"#,
                uri::BASE64_BINARY,
                uri::X509_SKI,
                B64.encode(ski)
            );
        }
        KeyIdentifier::Thumbprint => {
            let _ = write!(
                out,
                r#"<wsse:KeyIdentifier EncodingType="{}" ValueType="{}">{}</wsse:KeyIdentifier>"#,
                uri::BASE64_BINARY,
                uri::THUMBPRINT_SHA1,
                B64.encode(&info.sha1)
            );
        }
    }
    out.push_str("</wsse:SecurityTokenReference>");
}

/// `xenc:EncryptedKey` with the wrapped content key and the reference list.
pub fn encrypted_key(
    recipient: &Recipient,
    algorithms: &Algorithms,
    ids: &MessageIds,
    wrapped_key: &[u8],
    out: &mut String,
) {
    let _ = write!(
        out,
        r#"<xenc:EncryptedKey xmlns:xenc="{}" Id="{}">"#,
        ns::XENC,
        ids.encrypted_key
    );
    match algorithms.key_transport {
        KeyTransport::RsaOaep => {
            let _ = write!(
                out,
                r#"<xenc:EncryptionMethod Algorithm="{}"><ds:DigestMethod xmlns:ds="{}" Algorithm="{}"/><xenc11:MGF xmlns:xenc11="{}" Algorithm="{}"/></xenc:EncryptionMethod>"#,
                KeyTransport::RsaOaep.uri(),
                ns::DS,
                algorithms.oaep_digest.uri(),
                ns::XENC11,
                algorithms.oaep_digest.mgf_uri()
            );
        }
        // MGF1 stays SHA-1: only the digest is written, and only when it is not
        // the SHA-1 that its absence means.
        KeyTransport::RsaOaepMgf1p if algorithms.oaep_digest != OaepDigest::Sha1 => {
            let _ = write!(
                out,
                r#"<xenc:EncryptionMethod Algorithm="{}"><ds:DigestMethod xmlns:ds="{}" Algorithm="{}"/></xenc:EncryptionMethod>"#,
                KeyTransport::RsaOaepMgf1p.uri(),
                ns::DS,
                algorithms.oaep_digest.uri(),
            );
        }
        other => {
            let _ = write!(
                out,
                r#"<xenc:EncryptionMethod Algorithm="{}"/>"#,
                other.uri()
            );
        }
    }
    let _ = write!(out, r#"<ds:KeyInfo xmlns:ds="{}">"#, ns::DS);
    token_reference(recipient, algorithms, ids, out);
    let _ = write!(
        out,
        r##"</ds:KeyInfo><xenc:CipherData><xenc:CipherValue>{}</xenc:CipherValue></xenc:CipherData><xenc:ReferenceList><xenc:DataReference URI="#{}"/></xenc:ReferenceList></xenc:EncryptedKey>"##,
        B64.encode(wrapped_key),
        ids.encrypted_data
    );
}

/// What goes at the top of the Security header: the token (for `bst`), then the key.
pub fn security_elements(
    recipient: &Recipient,
    algorithms: &Algorithms,
    ids: &MessageIds,
    wrapped_key: &[u8],
) -> String {
    let mut out = String::with_capacity(2048);
    if algorithms.key_identifier == KeyIdentifier::Bst {
        binary_security_token(recipient, ids, &mut out);
    }
    encrypted_key(recipient, algorithms, ids, wrapped_key, &mut out);
    out
}

/// Everything from `<xenc:EncryptedData …>` up to the opening of its CipherValue.
pub fn encrypted_data_start(algorithms: &Algorithms, ids: &MessageIds) -> String {
    format!(
        r##"<xenc:EncryptedData xmlns:xenc="{xenc}" Id="{ed}" Type="{ty}"><xenc:EncryptionMethod Algorithm="{alg}"/><ds:KeyInfo xmlns:ds="{ds}"><wsse:SecurityTokenReference xmlns:wsse="{wsse}" xmlns:wsse11="{wsse11}" wsse11:TokenType="{tt}"><wsse:Reference URI="#{ek}"/></wsse:SecurityTokenReference></ds:KeyInfo><xenc:CipherData><xenc:CipherValue>"##,
        xenc = ns::XENC,
        ed = ids.encrypted_data,
        ty = uri::TYPE_CONTENT,
        alg = algorithms.data_encryption.uri(),
        ds = ns::DS,
        wsse = ns::WSSE,
        wsse11 = ns::WSSE11,
        tt = uri::ENCRYPTED_KEY_TOKEN,
        ek = ids.encrypted_key,
    )
}

pub const ENCRYPTED_DATA_END: &str = "</xenc:CipherValue></xenc:CipherData></xenc:EncryptedData>";
