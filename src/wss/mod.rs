//! WS-Security XML Encryption of SOAP messages, and its reverse.
//!
//! - [`encrypt_envelope`] streams a SOAP 1.1/1.2 envelope through, replacing the Body
//!   content with one `xenc:EncryptedData` and putting the `xenc:EncryptedKey` (and a
//!   BinarySecurityToken for `bst`) at the top of the `wsse:Security` header. Memory
//!   does not grow with the Body.
//! - [`decrypt::decrypt_document`] is the receiver side: it finds the EncryptedKey
//!   meant for one of its private keys and restores what was encrypted.
//!
//! This module knows nothing of HTTP, configuration files or the keystore: callers
//! hand it a [`Recipient`] (a parsed certificate) and the algorithm choice.

pub mod algorithms;
pub mod c14n;
pub mod certificate;
pub mod cipher;
pub mod decrypt;
mod envelope;
mod header;
pub mod input;
pub mod keys;
pub mod sign;

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use openssl::pkey::{PKey, Public};
use openssl::x509::X509;

pub use algorithms::{
    AlgorithmOverrides, Algorithms, DataEncryption, DigestAlgorithm, IssuerNameFormat,
    KeyIdentifier, KeyTransport, OaepDigest, Profile, SignOrder, SignatureAlgorithm,
    SigningDefaults,
};
pub use certificate::{CertificateError, CertificateInfo, CertificatePolicy};
pub use envelope::{
    EncryptError, EncryptSummary, encrypt_envelope, encrypt_held_to_vec, encrypt_to_vec,
    namespace_work, sniff_version,
};
pub use header::escape as escape_text;
pub use sign::{
    SignError, SignPart, SignPlan, SignSummary, SignedMessage, SigningKey, sign_envelope,
    sign_envelope_at, sign_to_vec, sign_to_vec_at,
};

/// SOAP version, from the Envelope namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SoapVersion {
    Soap11,
    Soap12,
}

impl SoapVersion {
    pub fn namespace(self) -> &'static str {
        match self {
            SoapVersion::Soap11 => algorithms::ns::SOAP11,
            SoapVersion::Soap12 => algorithms::ns::SOAP12,
        }
    }

    pub fn from_namespace(uri: &str) -> Option<SoapVersion> {
        match uri {
            algorithms::ns::SOAP11 => Some(SoapVersion::Soap11),
            algorithms::ns::SOAP12 => Some(SoapVersion::Soap12),
            _ => None,
        }
    }

    /// The media type a message of this version travels with.
    pub fn content_type(self) -> &'static str {
        match self {
            SoapVersion::Soap11 => "text/xml; charset=utf-8",
            SoapVersion::Soap12 => "application/soap+xml; charset=utf-8",
        }
    }

    /// The value of `mustUnderstand` meaning "yes".
    pub fn must_understand_true(self) -> &'static str {
        match self {
            SoapVersion::Soap11 => "1",
            SoapVersion::Soap12 => "true",
        }
    }
}

/// A receiver certificate ready for encryption: parsed once, shared by every
/// message encrypted for it (the RSA public key is not re-parsed per message).
#[derive(Clone)]
pub struct Recipient {
    certificate: X509,
    info: CertificateInfo,
    /// The RSA public key with its key-transport contexts, set up once.
    key_wrap: Arc<cipher::KeyWrap>,
    der_base64: String,
    /// The issuer as WCF reads it (`info.issuer` is the RFC 2253 form).
    issuer_wcf: String,
}

impl std::fmt::Debug for Recipient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recipient")
            .field("serial", &self.info.serial)
            .field("issuer", &self.info.issuer)
            .field("sha256", &self.info.sha256)
            .finish()
    }
}

impl Recipient {
    /// Wrap a certificate. Validity is checked by [`Recipient::check`]; an RSA key is
    /// required here because nothing else can be encrypted for.
    pub fn new(certificate: X509) -> Result<Recipient, CertificateError> {
        let info = CertificateInfo::of(&certificate)?;
        let public_key = certificate
            .public_key()
            .map_err(|e| CertificateError::Parse(certificate::first_reason(&e)))?;
        if info.rsa_bits.is_none() {
            return Err(CertificateError::NotRsa(certificate::key_kind(&public_key)));
        }
        let der = certificate
            .to_der()
            .map_err(|e| CertificateError::Parse(certificate::first_reason(&e)))?;
        Ok(Recipient {
            der_base64: B64.encode(der),
            issuer_wcf: certificate::wcf_name(certificate.issuer_name()),
            certificate,
            info,
            key_wrap: Arc::new(cipher::KeyWrap::new(public_key)),
        })
    }

    /// Parse a PEM or DER certificate file's bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Recipient, CertificateError> {
        Recipient::new(certificate::parse_certificate(bytes)?)
    }

    /// Check the certificate against `policy` at the current time.
    pub fn check(&self, policy: &CertificatePolicy) -> Result<(), CertificateError> {
        self.info
            .check(&self.certificate, policy, std::time::SystemTime::now())
    }

    pub fn info(&self) -> &CertificateInfo {
        &self.info
    }

    /// The issuer's distinguished name in the form `issuer-serial` writes.
    pub fn issuer_name(&self, format: IssuerNameFormat) -> &str {
        match format {
            IssuerNameFormat::Rfc2253 => &self.info.issuer,
            IssuerNameFormat::Wcf => &self.issuer_wcf,
        }
    }

    pub fn certificate(&self) -> &X509 {
        &self.certificate
    }

    /// The parsed RSA public key (parsed once, reused for every message).
    pub fn public_key(&self) -> &PKey<Public> {
        self.key_wrap.public_key()
    }

    /// Key transport for this certificate's key, with contexts set up once.
    pub fn key_wrap(&self) -> &cipher::KeyWrap {
        &self.key_wrap
    }

    pub(crate) fn der_base64(&self) -> &str {
        &self.der_base64
    }
}

/// Bounds on what the parser accepts (`[proxy.xml_limits]` and a route's
/// `xml_limits`). Each is checked as the input streams by, in constant work per
/// byte: a refusal comes before the rest of the input is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Deepest element nesting accepted; the Envelope is depth 1.
    pub max_depth: usize,
    /// Largest input in bytes, if bounded.
    pub max_bytes: Option<u64>,
    /// Most attributes on one element, namespace declarations included.
    pub max_attributes_per_element: usize,
    /// Longest element or attribute name, and longest reference (`&…;`), in bytes.
    pub max_name_length: usize,
    /// Most namespace declarations in scope at any point (on the open elements).
    pub max_namespace_declarations: usize,
    /// Longest run of character data between two tags, CDATA section or
    /// attribute value, in bytes; `None` leaves it to `max_bytes`.
    pub max_text_length: Option<u64>,
    /// Most elements in the document, if bounded.
    pub max_elements: Option<u64>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_depth: 256,
            max_bytes: None,
            max_attributes_per_element: 256,
            max_name_length: 1024,
            max_namespace_declarations: 1024,
            max_text_length: None,
            max_elements: None,
        }
    }
}

/// Which of the [`Limits`] an input went over; its name is the configuration key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XmlLimit {
    MaxDepth,
    MaxAttributesPerElement,
    MaxNameLength,
    MaxNamespaceDeclarations,
    MaxTextLength,
    MaxElements,
    /// Not configurable: redeclaring the Body's namespaces on its top-level
    /// elements may not make the output more than twice the input.
    NamespaceRedeclaration,
}

impl XmlLimit {
    pub fn name(self) -> &'static str {
        match self {
            XmlLimit::MaxDepth => "max_depth",
            XmlLimit::MaxAttributesPerElement => "max_attributes_per_element",
            XmlLimit::MaxNameLength => "max_name_length",
            XmlLimit::MaxNamespaceDeclarations => "max_namespace_declarations",
            XmlLimit::MaxTextLength => "max_text_length",
            XmlLimit::MaxElements => "max_elements",
            XmlLimit::NamespaceRedeclaration => "namespace_redeclaration",
        }
    }
}

impl std::fmt::Display for XmlLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What to do with an envelope besides the recipient.
#[derive(Debug, Clone, Copy)]
pub struct EncryptOptions {
    pub algorithms: Algorithms,
    /// Mark a newly created Security header `mustUnderstand`.
    pub must_understand: bool,
    pub limits: Limits,
}

impl Default for EncryptOptions {
    fn default() -> Self {
        EncryptOptions {
            algorithms: Profile::Default.algorithms(),
            must_understand: true,
            limits: Limits::default(),
        }
    }
}
