//! Why an envelope could not be encrypted, and what was done to one that was.

use super::*;

/// Why an envelope could not be encrypted.
#[derive(Debug, thiserror::Error)]
pub enum EncryptError {
    #[error("DOCTYPE at byte {position}: document type declarations are refused")]
    Doctype { position: u64 },
    #[error("malformed XML at byte {position}: {reason}")]
    Malformed { position: u64, reason: String },
    #[error("not a SOAP envelope: root element is {found}")]
    NotSoap { found: String },
    #[error("the document has no root element")]
    NoRoot,
    #[error("the Envelope has no Body")]
    NoBody,
    #[error("the Envelope has a second Body at byte {position}")]
    TwoBodies { position: u64 },
    #[error("the Body has no element to encrypt")]
    EmptyBody,
    #[error("the Body already holds an EncryptedData")]
    AlreadyEncrypted,
    #[error("elements nest deeper than the limit of {limit} (max_depth)")]
    TooDeep { limit: usize },
    #[error("over the XML limit {limit} ({value}) at byte {position}")]
    LimitExceeded {
        limit: XmlLimit,
        value: u64,
        position: u64,
    },
    #[error("{0}")]
    TooLarge(InputTooLarge),
    #[error("{0}")]
    UnsupportedEncoding(#[from] UnsupportedEncoding),
    #[error("certificate cannot be used: {0}")]
    Certificate(#[from] CertificateError),
    #[error("{0}")]
    Cipher(#[from] CipherError),
    #[error("reading the input failed: {0}")]
    Read(io::Error),
    #[error("writing the output failed: {0}")]
    Write(io::Error),
}

impl EncryptError {
    /// Whether the caller's input is at fault (as opposed to wssgate or I/O).
    pub fn is_input_error(&self) -> bool {
        !matches!(
            self,
            EncryptError::Certificate(_)
                | EncryptError::Cipher(_)
                | EncryptError::Read(_)
                | EncryptError::Write(_)
        )
    }

    /// The limit an input went over, for `xml-limit-exceeded`.
    pub fn xml_limit(&self) -> Option<XmlLimit> {
        match self {
            EncryptError::TooDeep { .. } => Some(XmlLimit::MaxDepth),
            EncryptError::LimitExceeded { limit, .. } => Some(*limit),
            _ => None,
        }
    }

    pub(crate) fn from_read(e: io::Error) -> EncryptError {
        if let Some(limit) = e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<InputTooLarge>())
        {
            return EncryptError::TooLarge(InputTooLarge { limit: limit.limit });
        }
        EncryptError::Read(e)
    }
}

/// What was done to one message.
#[derive(Debug, Clone)]
pub struct EncryptSummary {
    pub soap_version: SoapVersion,
    pub encrypted_key_id: String,
    pub encrypted_data_id: String,
    /// Bytes of Body content encrypted.
    pub plaintext_bytes: u64,
    /// Bytes written to the output.
    pub bytes_out: u64,
    /// Whether an existing Security header was reused.
    pub reused_security_header: bool,
    /// Where in the output the elements wssgate put first into the Security
    /// header begin (byte offset): what must precede them goes there.
    pub security_elements_offset: u64,
}
