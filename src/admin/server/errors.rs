//! The one conversion of what went wrong into an admin API answer: status and
//! JSON body, never a path or key material.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use serde::Serialize;

use crate::admin::contract::{self, ErrorAnswer, ExchangeAnswer, KeyringAddAnswer, ReloadRefused};
use crate::control::ControlError;
use crate::keystore::KeystoreError;
use crate::proxy::{ProxyBody, full_body};

/// An answer other than success: status and a JSON body.
#[derive(Debug)]
pub struct ApiError {
    pub(super) status: StatusCode,
    /// Rewritten by the server so that answers name files by configuration key.
    pub(super) body: serde_json::Value,
}

impl ApiError {
    pub(super) fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError::with_body(
            status,
            &ErrorAnswer {
                error: message.into(),
            },
        )
    }

    pub(super) fn with_body(status: StatusCode, body: &impl Serialize) -> ApiError {
        ApiError {
            status,
            body: serde_json::to_value(body).unwrap_or_default(),
        }
    }
}

fn keystore_status(e: &KeystoreError) -> StatusCode {
    match e {
        KeystoreError::UnknownAlias(_)
        | KeystoreError::InvalidAlias(_)
        | KeystoreError::UnknownRing(_) => StatusCode::NOT_FOUND,
        e if e.is_invalid_input() => StatusCode::UNPROCESSABLE_ENTITY,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The one mapping from what went wrong to what the caller is told.
impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> ApiError {
        match e {
            ControlError::UnknownRoute(_) | ControlError::NothingStaged(_) => {
                ApiError::new(StatusCode::NOT_FOUND, e.to_string())
            }
            ControlError::Keystore(ref k) => ApiError::new(keystore_status(k), e.to_string()),
            ControlError::NotLive {
                ref outcome,
                ref reason,
            } => ApiError::with_body(
                StatusCode::INTERNAL_SERVER_ERROR,
                &ExchangeAnswer {
                    error: Some(format!(
                        "the certificate was exchanged on disk but the reload failed: {reason}"
                    )),
                    alias: outcome.alias.clone(),
                    previous: outcome.previous.clone(),
                    current: outcome.current.clone(),
                    generation: None,
                    live: false,
                },
            ),
            ControlError::KeyNotLive {
                ref outcome,
                ref reason,
            } => ApiError::with_body(
                StatusCode::INTERNAL_SERVER_ERROR,
                &KeyringAddAnswer {
                    error: Some(format!(
                        "the key was added on disk but the reload failed: {reason}"
                    )),
                    ring: outcome.ring.clone(),
                    previous: outcome.previous.clone(),
                    current: outcome.current.clone(),
                    previous_retain_until: outcome.previous_retain_until.clone(),
                    generation: None,
                    live: false,
                },
            ),
            ControlError::Reload {
                ref reason,
                kept_generation,
            } => ApiError::with_body(
                StatusCode::UNPROCESSABLE_ENTITY,
                &ReloadRefused {
                    error: reason.to_string(),
                    generation: kept_generation,
                    kept: "the running configuration is unchanged".into(),
                },
            ),
            ControlError::PauseNotSaved(_)
            | ControlError::ResumeNotSaved(_)
            | ControlError::ActivationFailed(_)
            | ControlError::Internal(_) => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
            }
        }
    }
}

impl From<contract::QueryError> for ApiError {
    fn from(e: contract::QueryError) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, e.to_string())
    }
}

pub(super) fn json_response(status: StatusCode, value: &impl Serialize) -> Response<ProxyBody> {
    let mut body = serde_json::to_vec_pretty(value).unwrap_or_default();
    body.push(b'\n');
    let mut r = Response::new(full_body(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

pub(super) fn error_response(e: ApiError) -> Response<ProxyBody> {
    let mut r = json_response(e.status, &e.body);
    if e.status == StatusCode::UNAUTHORIZED {
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    r
}

/// `message` with every absolute path cut to its last component: `(/etc/x/a.pem)`
/// becomes `(a.pem)`.
pub(super) fn file_names_only(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find('/') {
        let starts_word = at == 0
            || rest[..at]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_whitespace() || "(\"'=".contains(c));
        let end = rest[at..]
            .find(|c: char| c.is_whitespace() || ")\"',;:".contains(c))
            .map_or(rest.len(), |n| at + n);
        let path = &rest[at..end];
        // A lone "/" or "/…/" is no file; text such as "and/or" is not a path.
        let name = path.rsplit('/').next().unwrap_or("");
        out.push_str(&rest[..at]);
        if starts_word && !name.is_empty() {
            out.push_str(name);
        } else {
            out.push_str(path);
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_only_cuts_directories_of_absolute_paths() {
        assert_eq!(
            file_names_only("admin token \"ops\" (/tmp/x/secrets/ops.token): No such file"),
            "admin token \"ops\" (ops.token): No such file"
        );
        assert_eq!(
            file_names_only("/var/lib/wssgate/audit.log: denied"),
            "audit.log: denied"
        );
        assert_eq!(
            file_names_only("and/or stays, / too"),
            "and/or stays, / too"
        );
        assert_eq!(
            file_names_only("state_dir/archive/a.json"),
            "state_dir/archive/a.json"
        );
    }
}
