//! The receiver side of the proxy: a decrypt route's request, and an encrypt
//! route's answer with `response = "decrypt"`, decrypted with the keys of a
//! ring from the request's snapshot.
//!
//! Buffered: the whole message is read (within `max_body`) and decrypted on the
//! blocking pool under the same bound on concurrent work as buffered
//! encryption. The route's XML limits apply to what is read and to the
//! plaintext. Every cause of a failed decryption becomes the one
//! `decryption-failed` answer ([`crate::wss::decrypt::oracle`]); the cause is
//! logged at debug level only.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;

use super::Proxy;
use super::fault::Fault;
use crate::keyring::Ring;
use crate::wss::Limits;
use crate::wss::decrypt::{self, DecryptOptions, oracle};

/// What a decryption produced.
pub(super) struct Decrypted {
    pub body: Bytes,
    /// SHA-256 of the certificate of the key used (none: passed unencrypted).
    pub certificate: Option<String>,
}

/// Where a decryption happens: the request of a decrypt route, or an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Side {
    Request,
    Response,
}

/// Decrypt `input` with `ring` on the blocking pool, within the bound on
/// concurrent work. A message without an EncryptedKey is refused with
/// `not-encrypted` when `require_encryption`, else passed as it is.
pub(super) async fn decrypt(
    proxy: &Proxy,
    ring: &Arc<Ring>,
    input: Bytes,
    options: DecryptOptions,
    require_encryption: bool,
    side: Side,
    request_id: &str,
) -> Result<Decrypted, Fault> {
    if !decrypt::mentions_encrypted_key(&input) {
        return unencrypted(input, require_encryption);
    }
    let permit = proxy.encryptions.clone().acquire_owned().await;
    let (ring, request_id) = (ring.clone(), request_id.to_string());
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        decrypt_now(&ring, input, options, require_encryption, side, &request_id)
    })
    .await
    .map_err(|join| Fault::Internal(format!("decryption task failed: {join}")))?
}

/// The decryption itself, blocking: the keys usable now, the use counted, and
/// every failure mapped to the answer the caller may get.
fn decrypt_now(
    ring: &Ring,
    input: Bytes,
    options: DecryptOptions,
    require_encryption: bool,
    side: Side,
    request_id: &str,
) -> Result<Decrypted, Fault> {
    let now = SystemTime::now();
    let (indices, keys) = ring.usable(now);
    let e = match decrypt::decrypt_with(&input, &keys, &options) {
        Ok((out, summary)) => {
            let used: Vec<usize> = summary
                .keys_used
                .iter()
                .filter_map(|i| indices.get(*i).copied())
                .collect();
            for index in &used {
                ring.record_use(*index, now);
            }
            let certificate = used
                .first()
                .and_then(|i| ring.keys.get(*i))
                .map(|k| k.key.summary.sha256.clone());
            return Ok(Decrypted {
                body: Bytes::from(out),
                certificate,
            });
        }
        Err(e) => e,
    };
    match oracle::classify(&e) {
        oracle::Failure::NotEncrypted if !require_encryption => Ok(unchanged(input)),
        oracle::Failure::NotEncrypted => Err(Fault::NotEncrypted),
        oracle::Failure::Malformed => Err(Fault::MalformedEnvelope(e.to_string())),
        oracle::Failure::Limit => Err(match e {
            decrypt::DecryptError::Limit(l) => Fault::XmlLimitExceeded {
                limit: l.limit.name(),
                value: l.value,
            },
            _ => Fault::XmlLimitExceeded {
                limit: "encrypted_keys",
                value: decrypt::MAX_ENCRYPTED_KEYS as u64,
            },
        }),
        oracle::Failure::DecryptionFailed => {
            // The cause stays here: the sender gets one answer for all of them.
            tracing::debug!(request_id = %request_id, ring = %ring.name, cause = %e, side = ?side, "decryption failed");
            Err(match side {
                Side::Request => Fault::DecryptionFailed,
                Side::Response => Fault::ResponseDecryptionFailed,
            })
        }
    }
}

/// A decrypt route's input path without the network: the request body as the
/// route decrypts it, or the fault it answers (for the fuzz target and benches).
pub fn decrypt_request(
    ring: &Ring,
    route: &crate::config::RouteConfig,
    body: Bytes,
) -> Result<Bytes, Fault> {
    if !decrypt::mentions_encrypted_key(&body) {
        return unencrypted(body, route.require_encryption).map(|d| d.body);
    }
    decrypt_now(
        ring,
        body,
        options(route.allow_legacy, route.xml_limits),
        route.require_encryption,
        Side::Request,
        "-",
    )
    .map(|d| d.body)
}

/// A message that names no EncryptedKey at all: refused or passed, unparsed.
fn unencrypted(input: Bytes, require_encryption: bool) -> Result<Decrypted, Fault> {
    if require_encryption {
        Err(Fault::NotEncrypted)
    } else {
        Ok(unchanged(input))
    }
}

fn unchanged(input: Bytes) -> Decrypted {
    Decrypted {
        body: input,
        certificate: None,
    }
}

/// The decryptor's options for a route.
pub(super) fn options(allow_legacy: bool, limits: Limits) -> DecryptOptions {
    DecryptOptions {
        allow_rsa15: allow_legacy,
        limits,
    }
}

/// An encrypt route's answer with `response = "decrypt"`: read whole (within
/// `max_body`), decrypted when it carries an EncryptedKey, else passed as it
/// is. A compressed answer cannot be read and passes unchanged.
pub(super) async fn decrypt_answer(
    proxy: &Proxy,
    ring: Arc<Ring>,
    response: http::Response<super::ProxyBody>,
    max_body: u64,
    options: DecryptOptions,
    request_id: String,
) -> Result<http::Response<super::ProxyBody>, Fault> {
    use http::header;
    let (mut parts, body) = response.into_parts();
    let compressed = parts
        .headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
    if compressed {
        return Ok(http::Response::from_parts(parts, body));
    }
    let limit = usize::try_from(max_body).unwrap_or(usize::MAX);
    let bytes = read_whole(body, limit).await?;
    let decrypted = match decrypt(
        proxy,
        &ring,
        bytes,
        options,
        false,
        Side::Response,
        &request_id,
    )
    .await
    {
        Ok(d) => d,
        Err(fault @ Fault::Internal(_)) => return Err(fault),
        Err(_) => return Err(Fault::ResponseDecryptionFailed),
    };
    parts.headers.remove(header::TRANSFER_ENCODING);
    parts.headers.insert(
        header::CONTENT_LENGTH,
        http::HeaderValue::from(decrypted.body.len()),
    );
    Ok(http::Response::from_parts(
        parts,
        super::full_body(decrypted.body),
    ))
}

/// An answer body, whole, within `limit` bytes.
async fn read_whole(mut body: super::ProxyBody, limit: usize) -> Result<Bytes, Fault> {
    use http_body_util::BodyExt;
    let mut whole = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            Fault::UpstreamUnreachable(format!("the answer could not be read: {e}"))
        })?;
        if let Ok(data) = frame.into_data() {
            if whole.len() + data.len() > limit {
                return Err(Fault::UpstreamUnreachable(format!(
                    "the answer is larger than max_body ({limit} bytes)"
                )));
            }
            whole.extend_from_slice(&data);
        }
    }
    Ok(Bytes::from(whole))
}
