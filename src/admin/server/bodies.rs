//! Request bodies of the admin API that carry certificates and keys, bounded.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Body;

use super::errors::ApiError;
use crate::proxy::BoxError;

/// Largest certificate accepted by `PUT /v1/keystore/{alias}`.
const MAX_CERTIFICATE_BYTES: usize = 1 << 20;

/// A key and its certificate in a request body: PEM, under 1 MiB, whole
/// `within` the admin's `request_timeout`. The bytes are a secret: never echoed
/// in an answer, whatever is wrong with them.
pub(super) async fn key_body<B>(request: Request<B>, within: Duration) -> Result<Bytes, ApiError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    tokio::time::timeout(
        within,
        Limited::new(request.into_body(), MAX_CERTIFICATE_BYTES).collect(),
    )
    .await
    .map_err(|_| {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "the key did not arrive within admin.request_timeout",
        )
    })?
    .map(|c| c.to_bytes())
    .map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "the key and certificate must be under 1 MiB",
        )
    })
}

/// The certificate in a request body, under 1 MiB and whole `within` the admin's
/// `request_timeout`: PEM whatever the content type says (`curl --data-binary`
/// sends a form type), or DER with a certificate type.
pub(super) async fn certificate_body<B>(
    request: Request<B>,
    within: Duration,
) -> Result<Bytes, ApiError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    let collected = tokio::time::timeout(
        within,
        Limited::new(request.into_body(), MAX_CERTIFICATE_BYTES).collect(),
    )
    .await
    .map_err(|_| {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "the certificate did not arrive within admin.request_timeout",
        )
    })?;
    let body = collected
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "the certificate must be under 1 MiB",
            )
        })?
        .to_bytes();
    let certificate_type = matches!(
        content_type.as_str(),
        "application/x-pem-file"
            | "application/pem-certificate-chain"
            | "text/plain"
            | "application/pkix-cert"
            | ""
    );
    if !certificate_type && !body.trim_ascii_start().starts_with(b"-----BEGIN") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("content type {content_type:?} is not a certificate, and the body is not PEM"),
        ));
    }
    Ok(body)
}
