//! WS-Security signing of SOAP messages: a `wsu:Timestamp` and a `ds:Signature`
//! (exclusive C14N, RSA-SHA256/SHA1/SHA512) in the Security header, over the
//! Body, the Timestamp and WS-Addressing headers, each given a `wsu:Id`.
//!
//! The Security header precedes the Body, and the Signature in it depends on the
//! Body's digest, so a signed message is buffered, bounded by
//! [`SignPlan::max_body`]. Encryption is the streaming encryptor's, run on the
//! buffer: before signing (`encrypt-then-sign`: the signature covers the
//! EncryptedData in the Body) or after (`sign-then-encrypt`: the plaintext Body
//! is digested, then encrypted, and the EncryptedKey's ReferenceList comes
//! before the Signature in the header, so that a receiver working in document
//! order decrypts before it verifies). The Timestamp is always first (Lax and
//! LaxTsFirst).
//!
//! It owns the signing; where the key comes from (the key ring) and which routes
//! sign is the caller's.

mod prepare;
mod xml;

#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::io::Read;
use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use openssl::hash::Hasher;
use openssl::pkey::{PKey, Private};
use openssl::x509::X509;

pub use super::algorithms::{DigestAlgorithm, SignOrder, SignatureAlgorithm, SigningDefaults};
use super::algorithms::{IssuerNameFormat, KeyIdentifier, Profile, UnknownName};
use super::c14n::{self, C14nError, C14nOptions};
use super::cipher::{self, CipherError};
use super::envelope::{EncryptError, EncryptSummary, encrypt_to_vec};
use super::input::{self, InputTooLarge, UnsupportedEncoding};
use super::keys::PrivateKeyEntry;
use super::{CertificateError, CertificateInfo, EncryptOptions, Recipient, SoapVersion};

/// WS-Addressing header blocks that may be signed, by local name.
pub const ADDRESSING_HEADERS: &[&str] = &[
    "To",
    "From",
    "ReplyTo",
    "FaultTo",
    "Action",
    "MessageID",
    "RelatesTo",
];

/// One part of the message to sign (`sign_parts`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SignPart {
    Body,
    /// The Timestamp wssgate adds (requires [`SignPlan::timestamp_ttl`]).
    Timestamp,
    /// Every WS-Addressing (2005/08 or the 2004/08 submission) header block
    /// with this local name, if the message has one.
    Addressing(String),
}

impl std::str::FromStr for SignPart {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<SignPart, UnknownName> {
        match s {
            "Body" => Ok(SignPart::Body),
            "Timestamp" => Ok(SignPart::Timestamp),
            _ if ADDRESSING_HEADERS.contains(&s) => Ok(SignPart::Addressing(s.to_string())),
            _ => Err(UnknownName {
                kind: "signed part",
                name: s.to_string(),
                expected: "Body Timestamp To From ReplyTo FaultTo Action MessageID RelatesTo",
            }),
        }
    }
}

impl std::fmt::Display for SignPart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SignPart::Body => f.write_str("Body"),
            SignPart::Timestamp => f.write_str("Timestamp"),
            SignPart::Addressing(name) => f.write_str(name),
        }
    }
}

/// Everything a route decides about signing, typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignPlan {
    pub signature_algorithm: SignatureAlgorithm,
    pub digest_algorithm: DigestAlgorithm,
    /// How the Signature's KeyInfo names the signing certificate.
    pub key_identifier: KeyIdentifier,
    /// How `issuer-serial` writes the issuer.
    pub issuer_name_format: IssuerNameFormat,
    pub parts: Vec<SignPart>,
    /// Add a Timestamp expiring this long after it was created; `None`: none.
    pub timestamp_ttl: Option<Duration>,
    pub order: SignOrder,
    /// Encrypt the Signature element too (sign-then-encrypt only).
    pub encrypt_signature: bool,
    /// Largest message buffered for signing, in bytes (`sign_max_body`); `None`
    /// leaves it to the limits' `max_bytes`.
    pub max_body: Option<u64>,
}

/// The Timestamp lifetime when none is configured (`timestamp_ttl`).
pub const DEFAULT_TIMESTAMP_TTL: Duration = Duration::from_secs(300);

/// The longest Timestamp lifetime accepted: a Timestamp limits replay, and
/// receivers refuse long-lived ones anyway.
pub const MAX_TIMESTAMP_TTL: Duration = Duration::from_secs(86_400);

impl Default for SignPlan {
    fn default() -> Self {
        SignPlan::from_defaults(SigningDefaults::default())
    }
}

impl SignPlan {
    /// The plan a profile implies (its signing half, or the defaults).
    pub fn for_profile(profile: Profile) -> SignPlan {
        SignPlan::from_defaults(profile.signing().unwrap_or_default())
    }

    pub fn from_defaults(d: SigningDefaults) -> SignPlan {
        SignPlan {
            signature_algorithm: d.signature_algorithm,
            digest_algorithm: d.digest_algorithm,
            key_identifier: d.key_identifier,
            issuer_name_format: d.issuer_name_format,
            parts: if d.timestamp {
                vec![SignPart::Body, SignPart::Timestamp]
            } else {
                vec![SignPart::Body]
            },
            timestamp_ttl: d.timestamp.then_some(DEFAULT_TIMESTAMP_TTL),
            order: d.order,
            encrypt_signature: d.encrypt_signature,
            max_body: None,
        }
    }

    /// Refuse a plan that cannot be carried out, whatever the message.
    pub fn validate(&self) -> Result<(), PlanError> {
        if self.parts.is_empty() {
            return Err(PlanError::NoParts);
        }
        for (i, part) in self.parts.iter().enumerate() {
            if self.parts[..i].contains(part) {
                return Err(PlanError::DuplicatePart(part.to_string()));
            }
        }
        if self.parts.contains(&SignPart::Timestamp) && self.timestamp_ttl.is_none() {
            return Err(PlanError::TimestampNotAdded);
        }
        if self.timestamp_ttl == Some(Duration::ZERO) {
            return Err(PlanError::ZeroTimestampTtl);
        }
        if self.timestamp_ttl.is_some_and(|t| t > MAX_TIMESTAMP_TTL) {
            return Err(PlanError::TimestampTtlTooLong);
        }
        if self.encrypt_signature && self.order != SignOrder::SignThenEncrypt {
            return Err(PlanError::EncryptSignatureOrder);
        }
        Ok(())
    }
}

/// A plan that cannot be carried out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("sign_parts is empty")]
    NoParts,
    #[error("sign_parts names {0} twice")]
    DuplicatePart(String),
    #[error("sign_parts has Timestamp, but no timestamp is added")]
    TimestampNotAdded,
    #[error("timestamp_ttl must be more than zero")]
    ZeroTimestampTtl,
    #[error("timestamp_ttl must be at most one day")]
    TimestampTtlTooLong,
    #[error("encrypt_signature needs order = \"sign-then-encrypt\"")]
    EncryptSignatureOrder,
    #[error("encrypt_signature needs a recipient to encrypt for")]
    EncryptSignatureWithoutEncryption,
}

/// The tenant's private key and its certificate, checked to belong together.
pub struct SigningKey {
    key: PKey<Private>,
    /// The certificate, parsed once: its DER for a BinarySecurityToken and its
    /// identifiers (issuer, serial, SKI, thumbprint) for a reference.
    certificate: Recipient,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("SigningKey")
            .field("serial", &self.certificate.info().serial)
            .field("sha256", &self.certificate.info().sha256)
            .finish()
    }
}

impl SigningKey {
    /// Pair an RSA private key with its certificate.
    pub fn new(key: PKey<Private>, certificate: X509) -> Result<SigningKey, SignError> {
        let certificate = Recipient::new(certificate)?;
        if key.rsa().is_err() {
            return Err(SignError::KeyNotRsa);
        }
        if !certificate.public_key().public_eq(&key) {
            return Err(SignError::KeyMismatch);
        }
        Ok(SigningKey { key, certificate })
    }

    /// A key ring entry (private key and certificate).
    pub fn from_entry(entry: &PrivateKeyEntry) -> Result<SigningKey, SignError> {
        let certificate = entry.certificate.clone().ok_or(SignError::NoCertificate)?;
        SigningKey::new(entry.key.clone(), certificate)
    }

    pub fn info(&self) -> &CertificateInfo {
        self.certificate.info()
    }

    pub fn certificate(&self) -> &X509 {
        self.certificate.certificate()
    }
}

/// Why a message could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("{0}")]
    Plan(#[from] PlanError),
    #[error("malformed XML at byte {position}: {reason}")]
    Malformed { position: u64, reason: String },
    #[error("document type declarations are refused")]
    Doctype,
    #[error("not a SOAP envelope: root element is {found}")]
    NotSoap { found: String },
    #[error("the Envelope has no Body")]
    NoBody,
    #[error("the Envelope has a second Body")]
    TwoBodies,
    #[error("elements nest deeper than the limit of {limit} (max_depth)")]
    TooDeep { limit: usize },
    #[error("the Security header already has a Timestamp")]
    TimestampPresent,
    #[error("the message is over sign_max_body: {0}")]
    TooLarge(InputTooLarge),
    #[error("{0}")]
    UnsupportedEncoding(#[from] UnsupportedEncoding),
    #[error("canonicalization failed: {0}")]
    Canonicalization(#[from] C14nError),
    #[error("encryption failed: {0}")]
    Encrypt(#[from] EncryptError),
    #[error("signing certificate cannot be used: {0}")]
    Certificate(#[from] CertificateError),
    #[error("the signing key is not an RSA key")]
    KeyNotRsa,
    #[error("the signing key does not belong to its certificate")]
    KeyMismatch,
    #[error("the key ring entry has no certificate")]
    NoCertificate,
    #[error("{0}")]
    Cipher(#[from] CipherError),
    #[error("signing failed: {0}")]
    Crypto(String),
    #[error("reading the input failed: {0}")]
    Read(std::io::Error),
}

impl SignError {
    /// Whether the caller's input is at fault (as opposed to wssgate's key or
    /// configuration, or I/O).
    pub fn is_input_error(&self) -> bool {
        match self {
            SignError::Malformed { .. }
            | SignError::Doctype
            | SignError::NotSoap { .. }
            | SignError::NoBody
            | SignError::TwoBodies
            | SignError::TooDeep { .. }
            | SignError::TimestampPresent
            | SignError::TooLarge(_)
            | SignError::UnsupportedEncoding(_)
            | SignError::Canonicalization(_) => true,
            SignError::Encrypt(e) => e.is_input_error(),
            _ => false,
        }
    }
}

fn crypto(e: openssl::error::ErrorStack) -> SignError {
    SignError::Crypto(super::certificate::first_reason(&e))
}

/// The Timestamp's times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampTimes {
    pub created: SystemTime,
    pub expires: SystemTime,
}

/// What was done to one message.
#[derive(Debug, Clone)]
pub struct SignSummary {
    pub soap_version: SoapVersion,
    pub signature_id: String,
    /// The `wsu:Id` of each signed element, in SignedInfo order.
    pub signed_ids: Vec<String>,
    pub timestamp: Option<TimestampTimes>,
    /// The encryption, when a recipient was given.
    pub encryption: Option<EncryptSummary>,
    /// Size of the message read.
    pub bytes_in: u64,
}

/// A signed (and maybe encrypted) envelope.
#[derive(Debug, Clone)]
pub struct SignedMessage {
    pub bytes: Vec<u8>,
    pub summary: SignSummary,
}

/// Sign the envelope read from `input` with `key` as `plan` says, and encrypt
/// it for `recipient` when one is given (`options` as for encryption; its
/// `must_understand` and `limits` apply to signing too).
pub fn sign_envelope<R: Read>(
    input: R,
    key: &SigningKey,
    plan: &SignPlan,
    recipient: Option<&Recipient>,
    options: &EncryptOptions,
) -> Result<SignedMessage, SignError> {
    sign_envelope_at(input, key, plan, recipient, options, SystemTime::now())
}

/// [`sign_envelope`] with the Timestamp created at `now`.
pub fn sign_envelope_at<R: Read>(
    input: R,
    key: &SigningKey,
    plan: &SignPlan,
    recipient: Option<&Recipient>,
    options: &EncryptOptions,
    now: SystemTime,
) -> Result<SignedMessage, SignError> {
    check(key, plan, recipient)?;
    let limit = plan.max_body.or(options.limits.max_bytes);
    let text = read_utf8(input, limit)?;
    sign_text(text.into(), key, plan, recipient, options, now)
}

/// Sign an envelope already in memory (a buffered request body). A UTF-8
/// message is read in place, without the copy [`sign_envelope`] makes.
pub fn sign_to_vec(
    envelope: &[u8],
    key: &SigningKey,
    plan: &SignPlan,
    recipient: Option<&Recipient>,
    options: &EncryptOptions,
) -> Result<SignedMessage, SignError> {
    sign_to_vec_at(envelope, key, plan, recipient, options, SystemTime::now())
}

/// [`sign_to_vec`] with the Timestamp created at `now`.
pub fn sign_to_vec_at(
    envelope: &[u8],
    key: &SigningKey,
    plan: &SignPlan,
    recipient: Option<&Recipient>,
    options: &EncryptOptions,
    now: SystemTime,
) -> Result<SignedMessage, SignError> {
    check(key, plan, recipient)?;
    let limit = plan.max_body.or(options.limits.max_bytes);
    if let Some(limit) = limit
        && envelope.len() as u64 > limit
    {
        return Err(SignError::TooLarge(InputTooLarge { limit }));
    }
    let text = match plain_utf8(envelope) {
        Some(text) => Cow::Borrowed(text),
        None => Cow::Owned(read_utf8(envelope, limit)?),
    };
    sign_text(text, key, plan, recipient, options, now)
}

/// The envelope as it is, when it is UTF-8 that needs no transcoding (no
/// byte-order mark, no UTF-16, no other declared encoding).
fn plain_utf8(envelope: &[u8]) -> Option<&str> {
    let head = &envelope[..envelope.len().min(2)];
    if envelope.starts_with(&[0xEF, 0xBB, 0xBF])
        || head.contains(&0)
        || head.iter().any(|&b| b >= 0xFE)
    {
        return None;
    }
    if let Some(declared) = input::declared_encoding(envelope)
        && !matches!(
            declared.to_ascii_lowercase().as_str(),
            "utf-8" | "utf8" | "us-ascii" | "ascii"
        )
    {
        return None;
    }
    std::str::from_utf8(envelope).ok()
}

/// What is refused before the message is read.
fn check(
    key: &SigningKey,
    plan: &SignPlan,
    recipient: Option<&Recipient>,
) -> Result<(), SignError> {
    plan.validate()?;
    if plan.encrypt_signature && recipient.is_none() {
        return Err(PlanError::EncryptSignatureWithoutEncryption.into());
    }
    if plan.key_identifier == KeyIdentifier::Ski && key.info().ski.is_none() {
        return Err(CertificateError::NoSubjectKeyIdentifier.into());
    }
    Ok(())
}

fn sign_text(
    mut text: Cow<'_, str>,
    key: &SigningKey,
    plan: &SignPlan,
    recipient: Option<&Recipient>,
    options: &EncryptOptions,
    now: SystemTime,
) -> Result<SignedMessage, SignError> {
    let bytes_in = text.len() as u64;

    let mut encryption = None;
    if let (SignOrder::EncryptThenSign, Some(recipient)) = (plan.order, recipient) {
        let (encrypted, summary) = encrypt_to_vec(text.as_bytes(), recipient, options)?;
        text = String::from_utf8(encrypted)
            .map_err(|_| SignError::Crypto("the encryptor wrote invalid UTF-8".into()))?
            .into();
        encryption = Some(summary);
    }

    let ids = xml::Ids::fresh()?;
    let timestamp = match plan.timestamp_ttl {
        Some(ttl) => Some(TimestampTimes {
            created: now,
            expires: now.checked_add(ttl).ok_or(PlanError::TimestampTtlTooLong)?,
        }),
        None => None,
    };
    let mut security_content = String::with_capacity(4096);
    let timestamp_xml = timestamp.map(|t| xml::timestamp(&ids.timestamp, t));
    if let Some(ts) = &timestamp_xml {
        security_content.push_str(ts);
    }
    if plan.key_identifier == KeyIdentifier::Bst {
        super::header::binary_security_token(&key.certificate, &ids.token, &mut security_content);
    }
    let prepared = prepare::prepare(&text, plan, options, &security_content, &ids)?;
    // The message is in `prepared` now: one copy less at the peak.
    drop(text);

    // One pass digests every signed element.
    let id_refs: Vec<&str> = prepared.signed_ids.iter().map(String::as_str).collect();
    let md = plan.digest_algorithm.md();
    // The canonical form comes in small writes; a buffer makes them few calls
    // into the digest.
    let mut hashers = id_refs
        .iter()
        .map(|_| Hasher::new(md).map(|h| std::io::BufWriter::with_capacity(32 * 1024, h)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(crypto)?;
    c14n::canonicalize_ids(
        &prepared.text,
        &id_refs,
        &C14nOptions::default(),
        &mut hashers,
    )?;
    let mut digests = Vec::with_capacity(hashers.len());
    for h in hashers {
        let mut h = h
            .into_inner()
            .map_err(|e| SignError::Crypto(e.error().to_string()))?;
        digests.push(B64.encode(h.finish().map_err(crypto)?));
    }

    let signed_info = xml::signed_info(plan, &id_refs, &digests);
    let mut canonical = Vec::with_capacity(signed_info.len());
    c14n::canonicalize_document(&signed_info, &C14nOptions::default(), &mut canonical)?;
    let mut signer =
        openssl::sign::Signer::new(plan.signature_algorithm.md(), &key.key).map_err(crypto)?;
    signer.update(&canonical).map_err(crypto)?;
    let signature_value = B64.encode(signer.sign_to_vec().map_err(crypto)?);
    let signature = xml::signature(&ids, &signed_info, &signature_value, key, plan);

    let mut signed = prepared.text;
    signed.insert_str(prepared.signature_offset, &signature);

    let mut bytes = signed.into_bytes();
    if let (SignOrder::SignThenEncrypt, Some(recipient)) = (plan.order, recipient) {
        let (encrypted, summary) = if plan.encrypt_signature {
            super::envelope::encrypt_to_vec_with(&bytes, recipient, options, Some(&ids.signature))?
        } else {
            encrypt_to_vec(&bytes, recipient, options)?
        };
        bytes = encrypted;
        if let Some(ts) = &timestamp_xml {
            move_to(
                &mut bytes,
                ts.as_bytes(),
                summary.security_elements_offset as usize,
            );
        }
        encryption = Some(summary);
    }
    Ok(SignedMessage {
        bytes,
        summary: SignSummary {
            soap_version: prepared.version,
            signature_id: ids.signature,
            signed_ids: prepared.signed_ids,
            timestamp,
            encryption,
            bytes_in,
        },
    })
}

/// Move the bytes `element` (unique: it carries a fresh random Id) to `offset`,
/// if they come after it: the Timestamp goes back in front of what the
/// encryptor put first into the header.
fn move_to(bytes: &mut [u8], element: &[u8], offset: usize) {
    let Some(at) = memchr::memmem::find(bytes, element) else {
        return;
    };
    if at <= offset || offset > bytes.len() {
        return;
    }
    bytes[offset..at + element.len()].rotate_right(element.len());
}

/// The whole message as UTF-8 (transcoded if it declares ISO-8859-1 or is
/// UTF-16, its declaration then saying UTF-8), within `limit` bytes.
fn read_utf8<R: Read>(input: R, limit: Option<u64>) -> Result<String, SignError> {
    let limited = input::LimitedReader::new(input, limit);
    let (mut reader, info) = input::utf8_reader(limited).map_err(|e| match e {
        input::InputError::Io(io) => from_read(io),
        input::InputError::Unsupported(u) => SignError::UnsupportedEncoding(u),
        contradictory @ input::InputError::Contradictory(_) => SignError::Malformed {
            position: 0,
            reason: contradictory.to_string(),
        },
    })?;
    let mut text = String::new();
    reader.read_to_string(&mut text).map_err(from_read)?;
    if info.encoding.is_transcoded()
        && text.starts_with("<?xml")
        && let Some(end) = text.find("?>")
    {
        let declaration = input::declaration_as_utf8(&text[2..end]);
        text.replace_range(2..end, &declaration);
    }
    Ok(text)
}

fn from_read(e: std::io::Error) -> SignError {
    if let Some(limit) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<InputTooLarge>())
    {
        return SignError::TooLarge(InputTooLarge { limit: limit.limit });
    }
    if e.kind() == std::io::ErrorKind::InvalidData {
        return SignError::Malformed {
            position: 0,
            reason: "the input is not valid UTF-8".into(),
        };
    }
    SignError::Read(e)
}

/// A fresh random identifier with a readable prefix.
fn fresh_id(prefix: &str) -> Result<String, CipherError> {
    let random = cipher::random_bytes(super::header::ID_BYTES)?;
    Ok(super::header::random_id(prefix, &random))
}
