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
    /// The EncryptedData that replaces a header element (the Signature), when
    /// one is encrypted too.
    pub encrypted_element: Option<String>,
}

impl MessageIds {
    /// Bytes of randomness [`MessageIds::from_random`] takes.
    pub const RANDOM_LEN: usize = 3 * ID_BYTES;

    /// Identifiers made of random bytes the caller drew (with the message's key).
    pub fn from_random(r: &[u8; Self::RANDOM_LEN]) -> MessageIds {
        MessageIds {
            encrypted_key: random_id("EK", &r[..ID_BYTES]),
            encrypted_data: random_id("ED", &r[ID_BYTES..2 * ID_BYTES]),
            token: random_id("X509", &r[2 * ID_BYTES..]),
            encrypted_element: None,
        }
    }
}

/// Random bytes in one element id.
pub const ID_BYTES: usize = 8;

/// An element id: a readable prefix, `-` and the random bytes in hex
/// (`EK-3f9c…`), as every id wssgate writes is made.
pub fn random_id(prefix: &str, random: &[u8]) -> String {
    format!("{prefix}-{}", hex::encode(random))
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
pub fn binary_security_token(recipient: &Recipient, token_id: &str, out: &mut String) {
    let _ = write!(
        out,
        r#"<wsse:BinarySecurityToken xmlns:wsse="{wsse}" xmlns:wsu="{wsu}" EncodingType="{enc}" ValueType="{vt}" wsu:Id="{id}">{der}</wsse:BinarySecurityToken>"#,
        wsse = ns::WSSE,
        wsu = ns::WSU,
        enc = uri::BASE64_BINARY,
        vt = uri::X509V3,
        id = token_id,
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
    token_reference_content(
        recipient,
        algorithms.key_identifier,
        algorithms.issuer_name_format,
        &ids.token,
        out,
    );
    out.push_str("</wsse:SecurityTokenReference>");
}

/// What goes inside a SecurityTokenReference to name `recipient`'s certificate
/// (`token_id`: the BinarySecurityToken's `wsu:Id`, for `bst`). An `issuer-serial`
/// reference uses the `ds` prefix, which the enclosing `ds:KeyInfo` declares.
pub(crate) fn token_reference_content(
    recipient: &Recipient,
    key_identifier: KeyIdentifier,
    issuer_name_format: super::IssuerNameFormat,
    token_id: &str,
    out: &mut String,
) {
    let info = recipient.info();
    match key_identifier {
        KeyIdentifier::IssuerSerial => {
            let _ = write!(
                out,
                r#"<ds:X509Data><ds:X509IssuerSerial><ds:X509IssuerName>"#
            );
            escape(recipient.issuer_name(issuer_name_format), out);
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
                token_id,
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
        r##"</ds:KeyInfo><xenc:CipherData><xenc:CipherValue>{}</xenc:CipherValue></xenc:CipherData><xenc:ReferenceList><xenc:DataReference URI="#{}"/>"##,
        B64.encode(wrapped_key),
        ids.encrypted_data
    );
    if let Some(element) = &ids.encrypted_element {
        let _ = write!(out, r##"<xenc:DataReference URI="#{element}"/>"##);
    }
    out.push_str("</xenc:ReferenceList></xenc:EncryptedKey>");
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
        binary_security_token(recipient, &ids.token, &mut out);
    }
    encrypted_key(recipient, algorithms, ids, wrapped_key, &mut out);
    out
}

/// Everything from `<xenc:EncryptedData …>` up to the opening of its CipherValue,
/// for the Body's content.
pub fn encrypted_data_start(algorithms: &Algorithms, ids: &MessageIds) -> String {
    encrypted_data_start_for(algorithms, ids, &ids.encrypted_data, uri::TYPE_CONTENT)
}

/// The same for EncryptedData `id` of type `ty` (content or element).
pub fn encrypted_data_start_for(
    algorithms: &Algorithms,
    ids: &MessageIds,
    id: &str,
    ty: &str,
) -> String {
    format!(
        r##"<xenc:EncryptedData xmlns:xenc="{xenc}" Id="{ed}" Type="{ty}"><xenc:EncryptionMethod Algorithm="{alg}"/><ds:KeyInfo xmlns:ds="{ds}"><wsse:SecurityTokenReference xmlns:wsse="{wsse}" xmlns:wsse11="{wsse11}" wsse11:TokenType="{tt}"><wsse:Reference URI="#{ek}"/></wsse:SecurityTokenReference></ds:KeyInfo><xenc:CipherData><xenc:CipherValue>"##,
        xenc = ns::XENC,
        ed = id,
        ty = ty,
        alg = algorithms.data_encryption.uri(),
        ds = ns::DS,
        wsse = ns::WSSE,
        wsse11 = ns::WSSE11,
        tt = uri::ENCRYPTED_KEY_TOKEN,
        ek = ids.encrypted_key,
    )
}

pub const ENCRYPTED_DATA_END: &str = "</xenc:CipherValue></xenc:CipherData></xenc:EncryptedData>";
