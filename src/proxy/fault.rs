//! The one place where an error becomes a response: the HTTP status, the SOAP
//! Fault of the request's SOAP version, and a stable code in its detail. It knows
//! who caused each error (the caller, the upstream, or wssgate) and never lets
//! internal details or key material reach the client.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use super::ProxyBody;
use crate::wss::sign::SignError;
use crate::wss::{EncryptError, SoapVersion};

/// Namespace of the detail element in wssgate's own faults.
pub const FAULT_NAMESPACE: &str = "urn:wssgate:fault";

/// An error answered by wssgate itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Not XML, no Envelope or Body, DOCTYPE, too deep, bad encoding.
    MalformedEnvelope(String),
    EmptyBody,
    AlreadyEncrypted,
    /// Over one of the XML limits (`xml_limits`): its name and value.
    XmlLimitExceeded {
        limit: &'static str,
        value: u64,
    },
    UnsupportedMediaType(String),
    /// A `Content-Encoding` other than identity: the Body cannot be read.
    UnsupportedEncoding(String),
    PayloadTooLarge(u64),
    /// The request body stalled for longer than `body_idle_timeout`.
    RequestTimeout,
    NoRoute,
    MethodNotAllowed,
    /// The route is paused; the caller may retry after the given seconds.
    RoutePaused {
        retry_after_secs: u64,
    },
    /// The alias has no usable certificate, or the cipher failed.
    EncryptionFailed,
    /// A decrypt route's request carries no EncryptedKey (`require_encryption`).
    NotEncrypted,
    /// A decrypt route's request could not be decrypted: one answer for an
    /// unknown key, a bad padding, a bad tag or a bad plaintext (no oracle).
    DecryptionFailed,
    /// An answer of `response = "decrypt"` could not be decrypted.
    ResponseDecryptionFailed,
    UpstreamUnreachable(String),
    UpstreamTimeout,
    /// A fault of wssgate's own (a task that died, a URI it built wrongly): the
    /// reason is logged, never answered.
    Internal(String),
}

/// Who caused a fault: the SOAP fault code and the log severity follow from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Culprit {
    Caller,
    Upstream,
    Gateway,
}

impl Fault {
    /// The stable code of DESIGN.md's table.
    pub fn code(&self) -> &'static str {
        match self {
            Fault::MalformedEnvelope(_) => "malformed-envelope",
            Fault::EmptyBody => "empty-body",
            Fault::AlreadyEncrypted => "already-encrypted",
            Fault::XmlLimitExceeded { .. } => "xml-limit-exceeded",
            Fault::UnsupportedMediaType(_) | Fault::UnsupportedEncoding(_) => {
                "unsupported-media-type"
            }
            Fault::PayloadTooLarge(_) => "payload-too-large",
            Fault::RequestTimeout => "request-timeout",
            Fault::NoRoute => "no-route",
            Fault::MethodNotAllowed => "method-not-allowed",
            Fault::RoutePaused { .. } => "route-paused",
            Fault::EncryptionFailed => "encryption-failed",
            Fault::NotEncrypted => "not-encrypted",
            Fault::DecryptionFailed | Fault::ResponseDecryptionFailed => "decryption-failed",
            Fault::UpstreamUnreachable(_) => "upstream-unreachable",
            Fault::UpstreamTimeout => "upstream-timeout",
            Fault::Internal(_) => "internal-error",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Fault::MalformedEnvelope(_)
            | Fault::EmptyBody
            | Fault::AlreadyEncrypted
            | Fault::XmlLimitExceeded { .. }
            | Fault::NotEncrypted
            | Fault::DecryptionFailed => StatusCode::BAD_REQUEST,
            Fault::ResponseDecryptionFailed => StatusCode::BAD_GATEWAY,
            Fault::UnsupportedMediaType(_) | Fault::UnsupportedEncoding(_) => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            Fault::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Fault::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Fault::NoRoute => StatusCode::NOT_FOUND,
            Fault::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Fault::RoutePaused { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Fault::EncryptionFailed => StatusCode::INTERNAL_SERVER_ERROR,
            Fault::UpstreamUnreachable(_) => StatusCode::BAD_GATEWAY,
            Fault::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Fault::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn culprit(&self) -> Culprit {
        match self {
            Fault::MalformedEnvelope(_)
            | Fault::EmptyBody
            | Fault::AlreadyEncrypted
            | Fault::XmlLimitExceeded { .. }
            | Fault::UnsupportedMediaType(_)
            | Fault::UnsupportedEncoding(_)
            | Fault::PayloadTooLarge(_)
            | Fault::RequestTimeout
            | Fault::NoRoute
            | Fault::MethodNotAllowed
            | Fault::NotEncrypted
            | Fault::DecryptionFailed => Culprit::Caller,
            Fault::UpstreamUnreachable(_)
            | Fault::UpstreamTimeout
            | Fault::ResponseDecryptionFailed => Culprit::Upstream,
            Fault::RoutePaused { .. } | Fault::EncryptionFailed | Fault::Internal(_) => {
                Culprit::Gateway
            }
        }
    }

    /// The sentence the client reads. Parser positions and reasons are the
    /// caller's own input; certificate and cipher details are never included.
    pub fn message(&self) -> String {
        match self {
            Fault::MalformedEnvelope(reason) => {
                format!("the request is not a usable SOAP envelope: {reason}")
            }
            Fault::EmptyBody => "the SOAP Body has no element to encrypt".into(),
            Fault::AlreadyEncrypted => "the SOAP Body is already encrypted".into(),
            Fault::XmlLimitExceeded { limit, value } => {
                format!("the request exceeds the XML limit {limit} ({value})")
            }
            Fault::UnsupportedMediaType(ct) => {
                format!("content type {ct:?} is not text/xml or application/soap+xml")
            }
            Fault::UnsupportedEncoding(encoding) => {
                format!(
                    "content encoding {encoding:?} is not supported: send the envelope uncompressed"
                )
            }
            Fault::PayloadTooLarge(limit) => format!("the request is larger than {limit} bytes"),
            Fault::RequestTimeout => "the request body did not arrive in time".into(),
            Fault::NoRoute => "no route matches the request path".into(),
            Fault::MethodNotAllowed => "only POST (and GET ?wsdl) are accepted".into(),
            Fault::RoutePaused { .. } => {
                "the route is paused for a certificate renewal; retry later".into()
            }
            Fault::EncryptionFailed => "the request could not be encrypted for the receiver".into(),
            Fault::NotEncrypted => "the request is not encrypted (no EncryptedKey)".into(),
            Fault::DecryptionFailed => "the request could not be decrypted".into(),
            Fault::ResponseDecryptionFailed => {
                "the receiver's answer could not be decrypted".into()
            }
            Fault::UpstreamUnreachable(_) => "the receiver could not be reached".into(),
            Fault::UpstreamTimeout => "the receiver did not answer in time".into(),
            Fault::Internal(_) => "wssgate could not handle the request".into(),
        }
    }

    /// What the log says: the message, with the reasons a client is not told.
    pub fn detail(&self) -> String {
        match self {
            Fault::UpstreamUnreachable(reason) | Fault::Internal(reason) => {
                format!("{}: {reason}", self.message())
            }
            other => other.message(),
        }
    }

    /// Map an engine error to the fault the caller gets.
    pub fn from_encrypt(e: &EncryptError) -> Fault {
        match e {
            EncryptError::EmptyBody => Fault::EmptyBody,
            EncryptError::AlreadyEncrypted => Fault::AlreadyEncrypted,
            EncryptError::TooLarge(t) => Fault::PayloadTooLarge(t.limit),
            EncryptError::TooDeep { limit } => Fault::XmlLimitExceeded {
                limit: "max_depth",
                value: *limit as u64,
            },
            EncryptError::LimitExceeded { limit, value, .. } => Fault::XmlLimitExceeded {
                limit: limit.name(),
                value: *value,
            },
            EncryptError::Certificate(_) | EncryptError::Cipher(_) | EncryptError::Write(_) => {
                Fault::EncryptionFailed
            }
            // The streamed body stopped arriving (`proxy.body_idle_timeout`).
            EncryptError::Read(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                Fault::RequestTimeout
            }
            EncryptError::Read(_) => {
                Fault::MalformedEnvelope("the request body could not be read".into())
            }
            other => Fault::MalformedEnvelope(other.to_string()),
        }
    }

    /// Map a signing error to the fault the caller gets: the caller's input at
    /// fault → 4xx with its code; the key, the certificate or the crypto → 500
    /// `internal-error`, the reason only in the log (it never holds key material).
    pub fn from_sign(e: &SignError) -> Fault {
        match e {
            SignError::Encrypt(e) => Fault::from_encrypt(e),
            SignError::TooLarge(t) => Fault::PayloadTooLarge(t.limit),
            SignError::TooDeep { limit } => Fault::XmlLimitExceeded {
                limit: "max_depth",
                value: *limit as u64,
            },
            e if e.is_input_error() => Fault::MalformedEnvelope(e.to_string()),
            e => Fault::Internal(format!("signing failed: {e}")),
        }
    }

    /// The SOAP Fault response.
    pub fn response(&self, version: SoapVersion, request_id: &str) -> Response<ProxyBody> {
        let limit = match self {
            Fault::XmlLimitExceeded { limit, .. } => Some(*limit),
            _ => None,
        };
        let body = fault_envelope_naming(
            version,
            self.culprit() == Culprit::Caller,
            self.code(),
            &self.message(),
            request_id,
            limit,
        );
        let mut response = Response::new(super::full_body(Bytes::from(body)));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(version.content_type()),
        );
        if let Ok(v) = HeaderValue::from_str(request_id) {
            headers.insert("x-request-id", v);
        }
        match self {
            Fault::RoutePaused { retry_after_secs } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            }
            Fault::MethodNotAllowed => {
                headers.insert(header::ALLOW, HeaderValue::from_static("POST, GET"));
            }
            _ => {}
        }
        response
    }
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    crate::wss::escape_text(text, &mut out);
    out
}

/// A SOAP 1.1 or 1.2 Fault with wssgate's code in the detail.
pub fn fault_envelope(
    version: SoapVersion,
    caller: bool,
    code: &str,
    message: &str,
    request_id: &str,
) -> String {
    fault_envelope_naming(version, caller, code, message, request_id, None)
}

/// [`fault_envelope`], with `<wssgate:limit>` in the detail for
/// `xml-limit-exceeded`.
fn fault_envelope_naming(
    version: SoapVersion,
    caller: bool,
    code: &str,
    message: &str,
    request_id: &str,
    limit: Option<&str>,
) -> String {
    let limit = limit
        .map(|l| format!("<wssgate:limit>{}</wssgate:limit>", escape(l)))
        .unwrap_or_default();
    let detail = format!(
        r#"<wssgate:error xmlns:wssgate="{FAULT_NAMESPACE}"><wssgate:code>{code}</wssgate:code>{limit}<wssgate:request-id>{}</wssgate:request-id></wssgate:error>"#,
        escape(request_id)
    );
    let message = escape(message);
    match version {
        SoapVersion::Soap11 => format!(
            r#"<soap:Envelope xmlns:soap="{ns}"><soap:Body><soap:Fault><faultcode>soap:{who}</faultcode><faultstring>{message}</faultstring><detail>{detail}</detail></soap:Fault></soap:Body></soap:Envelope>"#,
            ns = version.namespace(),
            who = if caller { "Client" } else { "Server" },
        ),
        SoapVersion::Soap12 => format!(
            r#"<env:Envelope xmlns:env="{ns}"><env:Body><env:Fault><env:Code><env:Value>env:{who}</env:Value></env:Code><env:Reason><env:Text xml:lang="en">{message}</env:Text></env:Reason><env:Detail>{detail}</env:Detail></env:Fault></env:Body></env:Envelope>"#,
            ns = version.namespace(),
            who = if caller { "Sender" } else { "Receiver" },
        ),
    }
}
