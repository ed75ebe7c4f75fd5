//! The admin API's typed client: one method per endpoint, answers decoded into
//! the [`contract`] types. `wssgate ctl`, `wssgate renew` and `wssgate demo` use
//! it; so do the tests.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_openssl::client::legacy::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;

use super::contract::{
    self, Activation, ErrorAnswer, ExchangeAnswer, ExchangeQuery, Health, KeyringAddAnswer,
    KeyringView, KeystoreAlias, KeystoreEntry, PauseAnswer, PauseQuery, ReloadAnswer, ResumeAnswer,
    RouteView, StageAnswer, StatusAnswer, WithdrawAnswer, paths,
};

/// Why an admin call failed.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    #[error("cannot reach the admin API at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("{status}: {message}")]
    Refused { status: u16, message: String },
    #[error("the admin API answered {status} with an unexpected body: {reason}")]
    Unexpected { status: u16, reason: String },
    #[error("{0}")]
    Credentials(String),
    #[error("{0}")]
    Stopped(String),
}

impl CtlError {
    /// Whether the request itself was refused as invalid (4xx other than auth).
    pub fn is_invalid_input(&self) -> bool {
        matches!(self, CtlError::Refused { status, .. } if matches!(status, 400 | 404 | 413 | 415 | 422))
            || matches!(self, CtlError::Credentials(_))
    }
}

/// Where the admin API is and the token to call it with.
#[derive(Clone)]
pub struct Credentials {
    pub url: String,
    pub token: String,
    /// CA certificate to verify an https URL with (default: the system roots).
    pub ca_file: Option<PathBuf>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("url", &self.url)
            .field("ca_file", &self.ca_file)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// From explicit values, filling what is missing from the configuration file
    /// at `config`: its admin URL, and the first of its token files that can be
    /// read. Only the `[admin]` table is read, and leniently: an operator fixing a
    /// broken configuration can still talk to the daemon that runs on the old one.
    pub fn resolve(
        url: Option<String>,
        token_file: Option<&Path>,
        ca_file: Option<PathBuf>,
        config: &Path,
    ) -> Result<Credentials, CtlError> {
        let from_config = match (&url, token_file) {
            (Some(_), Some(_)) => None,
            _ => Some(AdminSection::read(config)?),
        };
        let url = match (url, &from_config) {
            (Some(u), _) => u,
            (None, Some(c)) => c.url.clone(),
            (None, None) => unreachable!("the configuration is read when the URL is missing"),
        };
        let token = match (token_file, &from_config) {
            (Some(f), _) => read_token(f)?,
            (None, Some(c)) => c
                .token_files
                .iter()
                .find_map(|f| read_token(f).ok())
                .ok_or_else(|| {
                    CtlError::Credentials(format!(
                        "no readable token file in {}; use --token-file",
                        config.display()
                    ))
                })?,
            (None, None) => unreachable!("the configuration is read when the token is missing"),
        };
        Ok(Credentials {
            url,
            token,
            ca_file,
        })
    }
}

fn read_token(file: &Path) -> Result<String, CtlError> {
    // Not a FIFO or device: reading one could block for ever.
    match std::fs::metadata(file) {
        Ok(m) if m.is_file() => {}
        Ok(_) => {
            return Err(CtlError::Credentials(format!(
                "token file {} is not a regular file",
                file.display()
            )));
        }
        Err(e) => {
            return Err(CtlError::Credentials(format!(
                "cannot read token file {}: {e}",
                file.display()
            )));
        }
    }
    std::fs::read_to_string(file).map_err(|e| {
        CtlError::Credentials(format!("cannot read token file {}: {e}", file.display()))
    })
}

/// What the client needs of a configuration file's `[admin]` table.
struct AdminSection {
    url: String,
    token_files: Vec<PathBuf>,
}

impl AdminSection {
    fn read(path: &Path) -> Result<AdminSection, CtlError> {
        let fail = |reason: String| {
            CtlError::Credentials(format!(
                "{}: {reason} (or give --admin and --token-file)",
                path.display()
            ))
        };
        let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| fail(e.message().to_string()))?;
        let admin = table.get("admin").and_then(|v| v.as_table());
        let text_of = |key: &str| admin.and_then(|a| a.get(key)).and_then(|v| v.as_str());
        let dir = path.parent().unwrap_or(Path::new("."));
        let url = match text_of("url") {
            Some(u) => u.trim_end_matches('/').to_string(),
            None => {
                let scheme = if text_of("tls_cert").is_some() {
                    "https"
                } else {
                    "http"
                };
                format!(
                    "{scheme}://{}",
                    text_of("listen").unwrap_or("127.0.0.1:9090")
                )
            }
        };
        let token_files = admin
            .and_then(|a| a.get("tokens"))
            .and_then(|t| t.as_array())
            .into_iter()
            .flatten()
            .filter_map(|t| t.get("file").and_then(|f| f.as_str()))
            .map(|f| dir.join(f))
            .collect();
        Ok(AdminSection { url, token_files })
    }
}

/// A client for one admin API.
pub struct AdminClient {
    base: String,
    token: String,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

/// Longest a call may take: a pause may wait up to an hour for in-flight requests.
const CALL_TIMEOUT: Duration = Duration::from_secs(3700);

impl AdminClient {
    pub fn new(credentials: &Credentials) -> Result<AdminClient, CtlError> {
        let base = &credentials.url;
        let fail = |e: openssl::error::ErrorStack| CtlError::Unreachable {
            url: base.to_string(),
            reason: e.to_string(),
        };
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(Duration::from_secs(5)));
        let mut ssl = openssl::ssl::SslConnector::builder(openssl::ssl::SslMethod::tls_client())
            .map_err(fail)?;
        match &credentials.ca_file {
            Some(ca) => ssl.set_ca_file(ca).map_err(fail)?,
            None => ssl.set_default_verify_paths().map_err(fail)?,
        }
        let https = HttpsConnector::with_connector(http, ssl).map_err(fail)?;
        Ok(AdminClient {
            base: base.trim_end_matches('/').to_string(),
            token: credentials.token.trim().to_string(),
            client: Client::builder(TokioExecutor::new()).build(https),
        })
    }

    /// A client for `url` with `token` (plain HTTP or the system roots).
    pub fn with_token(url: &str, token: &str) -> Result<AdminClient, CtlError> {
        AdminClient::new(&Credentials {
            url: url.to_string(),
            token: token.to_string(),
            ca_file: None,
        })
    }

    /// Call an endpoint; the status and the raw answer, whatever the status.
    pub async fn raw(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<Bytes>,
    ) -> Result<(StatusCode, Bytes), CtlError> {
        let url = format!("{}{path_and_query}", self.base);
        let unreachable = |reason: String| CtlError::Unreachable {
            url: url.clone(),
            reason,
        };
        let mut req = Request::builder()
            .method(method)
            .uri(&url)
            .header("authorization", format!("Bearer {}", self.token));
        if body.is_some() {
            req = req.header("content-type", "application/x-pem-file");
        }
        let req = req
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|e| unreachable(e.to_string()))?;
        let resp = tokio::time::timeout(CALL_TIMEOUT, self.client.request(req))
            .await
            .map_err(|_| unreachable("no answer".into()))?
            .map_err(|e| unreachable(e.to_string()))?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| unreachable(e.to_string()))?
            .to_bytes();
        Ok((status, bytes))
    }

    /// Call an endpoint and decode a success answer as `T`; a 4xx or 5xx answer
    /// is [`CtlError::Refused`] with the server's message.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<Bytes>,
    ) -> Result<(StatusCode, T), CtlError> {
        let (status, bytes) = self.raw(method, path_and_query, body).await?;
        if status.is_client_error() || status.is_server_error() {
            let message = serde_json::from_slice::<ErrorAnswer>(&bytes)
                .map(|e| e.error)
                .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned());
            return Err(CtlError::Refused {
                status: status.as_u16(),
                message,
            });
        }
        let value = serde_json::from_slice(&bytes).map_err(|e| CtlError::Unexpected {
            status: status.as_u16(),
            reason: e.to_string(),
        })?;
        Ok((status, value))
    }

    pub async fn ready(&self) -> Result<Health, CtlError> {
        Ok(self.call(Method::GET, paths::READYZ, None).await?.1)
    }

    pub async fn status(&self) -> Result<StatusAnswer, CtlError> {
        Ok(self.call(Method::GET, paths::STATUS, None).await?.1)
    }

    pub async fn routes(&self) -> Result<Vec<RouteView>, CtlError> {
        Ok(self.call(Method::GET, paths::ROUTES, None).await?.1)
    }

    pub async fn route(&self, name: &str) -> Result<RouteView, CtlError> {
        Ok(self.call(Method::GET, &paths::route(name), None).await?.1)
    }

    /// Pause `route`; with `wait`, the answer comes once nothing is in flight or
    /// the wait ran out (then `drained` is false).
    pub async fn pause(
        &self,
        route: &str,
        wait: Option<Duration>,
    ) -> Result<PauseAnswer, CtlError> {
        let path = format!(
            "{}{}",
            paths::pause(route),
            contract::query_string(&PauseQuery::new(wait))
        );
        Ok(self.call(Method::POST, &path, None).await?.1)
    }

    pub async fn resume(&self, route: &str) -> Result<ResumeAnswer, CtlError> {
        Ok(self
            .call(Method::POST, &paths::resume(route), None)
            .await?
            .1)
    }

    pub async fn reload(&self) -> Result<ReloadAnswer, CtlError> {
        Ok(self.call(Method::POST, paths::RELOAD, None).await?.1)
    }

    /// Exchange the certificate of `alias`; returns once it is live.
    pub async fn exchange(&self, alias: &str, pem: Bytes) -> Result<ExchangeAnswer, CtlError> {
        Ok(self
            .call(Method::PUT, &paths::keystore_alias(alias), Some(pem))
            .await?
            .1)
    }

    /// Stage a certificate for `alias`, active on resume or at a time.
    pub async fn stage(
        &self,
        alias: &str,
        pem: Bytes,
        activation: Activation,
    ) -> Result<StageAnswer, CtlError> {
        let path = format!(
            "{}{}",
            paths::keystore_alias(alias),
            contract::query_string(&ExchangeQuery::new(activation))
        );
        Ok(self.call(Method::PUT, &path, Some(pem)).await?.1)
    }

    pub async fn withdraw(&self, alias: &str) -> Result<WithdrawAnswer, CtlError> {
        Ok(self
            .call(Method::POST, &paths::withdraw(alias), None)
            .await?
            .1)
    }

    pub async fn keystore(&self) -> Result<Vec<KeystoreEntry>, CtlError> {
        Ok(self.call(Method::GET, paths::KEYSTORE, None).await?.1)
    }

    pub async fn keystore_alias(&self, alias: &str) -> Result<KeystoreAlias, CtlError> {
        Ok(self
            .call(Method::GET, &paths::keystore_alias(alias), None)
            .await?
            .1)
    }

    pub async fn keyrings(&self) -> Result<Vec<KeyringView>, CtlError> {
        Ok(self.call(Method::GET, paths::KEYRING, None).await?.1)
    }

    pub async fn keyring(&self, ring: &str) -> Result<KeyringView, CtlError> {
        Ok(self
            .call(Method::GET, &paths::keyring_alias(ring), None)
            .await?
            .1)
    }

    /// Add a key (PEM private key and certificate) to `ring`; returns once it
    /// is active.
    pub async fn keyring_add(&self, ring: &str, pem: Bytes) -> Result<KeyringAddAnswer, CtlError> {
        Ok(self
            .call(Method::PUT, &paths::keyring_alias(ring), Some(pem))
            .await?
            .1)
    }
}
