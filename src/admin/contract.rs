//! The admin API's wire contract: every request path, query and answer as a
//! typed value, used alike by the server ([`super::server`]), the client
//! ([`super::client`], behind `wssgate ctl`, `wssgate renew` and `wssgate demo`)
//! and the tests. The JSON names here are the ones docs/DESIGN.md publishes.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

pub use crate::keyring::{KeyView, KeyringView};
pub use crate::keystore::{ArchiveRecord, CertificateSummary, HistoryEntry, Pending};

/// `GET /healthz`, `GET /readyz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// `ok`, `ready` or `starting`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
}

/// Whether a route sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteState {
    Active,
    Paused,
}

/// One route, as `GET /v1/routes` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteView {
    pub name: String,
    pub state: RouteState,
    pub in_flight: usize,
    pub held: usize,
    pub alias: String,
    pub path: String,
    pub upstream: String,
    /// `hold` or `reject`.
    pub on_pause: String,
    pub algorithms: String,
    /// An encrypt route's certificate, or a decrypt route's active ring key's.
    pub certificate: CertificateView,
    /// `encrypt`, `pass-through` or `decrypt`.
    #[serde(default = "default_mode")]
    pub mode: String,
}

fn default_mode() -> String {
    "encrypt".into()
}

/// The certificate a route encrypts for now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateView {
    /// Decimal.
    pub serial: String,
    pub issuer: String,
    pub subject: String,
    /// Hex SHA-256 of the DER.
    pub sha256: String,
    /// RFC 3339.
    pub not_after: String,
}

/// `POST /v1/routes/{name}/pause`: the route after the pause.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PauseAnswer {
    #[serde(flatten)]
    pub route: RouteView,
    /// Nothing in flight any more (with `wait`: within the wait; answered 202 if not).
    pub drained: bool,
}

/// `POST /v1/routes/{name}/resume`: the route after the resume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumeAnswer {
    #[serde(flatten)]
    pub route: RouteView,
    /// Held requests released in arrival order.
    pub released: usize,
}

/// `POST /v1/reload`, 200.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadAnswer {
    pub generation: u64,
    pub changed: Vec<String>,
}

/// `POST /v1/reload`, 422: the reload was refused and the running state kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadRefused {
    pub error: String,
    pub generation: u64,
    pub kept: String,
}

/// `PUT /v1/keystore/{alias}`, 200 (`live: true`), or 500 with `error` when the
/// certificate was exchanged on disk but is not live (`live: false`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExchangeAnswer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub alias: String,
    pub previous: Option<CertificateSummary>,
    pub current: CertificateSummary,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
    pub live: bool,
}

/// `PUT /v1/keystore/{alias}?activate=on-resume|activate_at=…`, 202.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageAnswer {
    pub pending: Pending,
}

/// `POST /v1/keystore/{alias}/withdraw`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WithdrawAnswer {
    pub withdrawn: Pending,
}

/// An alias in use, in `GET /v1/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AliasView {
    pub alias: String,
    pub serial: String,
    pub sha256: String,
    pub not_after: String,
    pub days_left: i64,
}

/// Reloads since start, in `GET /v1/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadCounts {
    pub ok: u64,
    pub failed: u64,
}

/// `GET /v1/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusAnswer {
    pub version: String,
    pub generation: u64,
    pub loaded_at: String,
    /// The configuration file's name (not its path).
    pub config: String,
    pub routes: Vec<RouteView>,
    pub aliases: Vec<AliasView>,
    pub reloads: ReloadCounts,
}

/// One alias of `GET /v1/keystore`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeystoreEntry {
    pub alias: String,
    /// The certificate on disk, unless it cannot be read (`error` says why).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<CertificateSummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days_left: Option<i64>,
    pub routes: Vec<String>,
    /// Whether the certificate on disk is the one in use (absent: not in use).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `GET /v1/keystore/{alias}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeystoreAlias {
    pub alias: String,
    /// The certificate messages are encrypted for now (absent: no route uses it).
    pub live: Option<CertificateSummary>,
    pub pending: Option<Pending>,
    pub history: Vec<HistoryEntry>,
    pub archive: Vec<ArchiveRecord>,
}

/// `PUT /v1/keyring/{alias}`, 200: the key is active (500 with `error` set and
/// `live` false: on disk, but the reload failed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyringAddAnswer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub ring: String,
    /// The key that was active, now retained.
    pub previous: Option<CertificateSummary>,
    pub current: CertificateSummary,
    /// When the previous key stops being used (RFC 3339).
    pub previous_retain_until: Option<String>,
    pub generation: Option<u64>,
    pub live: bool,
}

/// Every refusal: 4xx and 5xx answers other than the typed ones above.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorAnswer {
    pub error: String,
}

/// When a certificate sent with `PUT /v1/keystore/{alias}` becomes active.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// Now: an exchange (no query).
    Now,
    /// Staged until the paused routes using the alias resume (`activate=on-resume`).
    OnResume,
    /// Staged until an agreed time (`activate_at=RFC3339`).
    At(SystemTime),
}

/// The query of `PUT /v1/keystore/{alias}`, as sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExchangeQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activate: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activate_at: Option<String>,
}

/// The query of `POST /v1/routes/{name}/pause`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PauseQuery {
    /// Seconds to wait for in-flight requests, 0 to 3600.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<String>,
}

/// Why a query was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("wait must be a number of seconds (0 to 3600)")]
    Wait,
    #[error("use activate=now|on-resume or activate_at=RFC3339")]
    Activation,
    #[error("activate_at is not RFC 3339: {0}")]
    ActivateAt(String),
    #[error("the query is not understood: {0}")]
    Unknown(String),
}

/// Longest `wait` a pause accepts.
pub const MAX_PAUSE_WAIT: Duration = Duration::from_secs(3600);

impl PauseQuery {
    pub fn new(wait: Option<Duration>) -> PauseQuery {
        PauseQuery {
            wait: wait.map(|w| format_seconds(w.as_secs_f64())),
        }
    }

    pub fn wait(&self) -> Result<Option<Duration>, QueryError> {
        let Some(text) = &self.wait else {
            return Ok(None);
        };
        let secs: f64 = text.trim().parse().map_err(|_| QueryError::Wait)?;
        if !secs.is_finite() || secs < 0.0 || secs > MAX_PAUSE_WAIT.as_secs_f64() {
            return Err(QueryError::Wait);
        }
        Ok(Some(Duration::from_secs_f64(secs)))
    }
}

impl ExchangeQuery {
    pub fn new(activation: Activation) -> ExchangeQuery {
        match activation {
            Activation::Now => ExchangeQuery::default(),
            Activation::OnResume => ExchangeQuery {
                activate: Some("on-resume".into()),
                activate_at: None,
            },
            Activation::At(at) => ExchangeQuery {
                activate: None,
                activate_at: Some(crate::time::rfc3339(at)),
            },
        }
    }

    pub fn activation(&self) -> Result<Activation, QueryError> {
        match (self.activate.as_deref(), &self.activate_at) {
            (None | Some("now"), None) => Ok(Activation::Now),
            (Some("on-resume"), None) => Ok(Activation::OnResume),
            (None, Some(at)) => crate::time::parse_rfc3339(at)
                .map(Activation::At)
                .map_err(|e| QueryError::ActivateAt(e.to_string())),
            _ => Err(QueryError::Activation),
        }
    }
}

fn format_seconds(secs: f64) -> String {
    if secs.fract() == 0.0 {
        format!("{}", secs as u64)
    } else {
        format!("{secs}")
    }
}

/// Parse a query string (`a=1&b=2`, percent-decoded) into `T`.
pub fn parse_query<T: for<'de> Deserialize<'de>>(query: Option<&str>) -> Result<T, QueryError> {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let value = serde_json::Value::Object(
        pairs
            .into_iter()
            .map(|(k, v)| (k, serde_json::Value::String(v)))
            .collect(),
    );
    serde_json::from_value(value).map_err(|e| QueryError::Unknown(e.to_string()))
}

/// Format `T` as a query string (`?a=1&b=2`, or empty).
pub fn query_string<T: Serialize>(query: &T) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    if let Ok(serde_json::Value::Object(map)) = serde_json::to_value(query) {
        for (k, v) in map {
            if let serde_json::Value::String(v) = v {
                out.append_pair(&k, &v);
            }
        }
    }
    let q = out.finish();
    if q.is_empty() { q } else { format!("?{q}") }
}

/// The endpoints, with each name escaped as one path segment.
pub mod paths {
    use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};

    /// What must be escaped in a path segment (RFC 3986 pchar, conservatively).
    const SEGMENT: &AsciiSet = &CONTROLS
        .add(b' ')
        .add(b'"')
        .add(b'#')
        .add(b'%')
        .add(b'/')
        .add(b'<')
        .add(b'>')
        .add(b'?')
        .add(b'`')
        .add(b'{')
        .add(b'}')
        .add(b'\\')
        .add(b'^')
        .add(b'|');

    fn segment(name: &str) -> String {
        utf8_percent_encode(name, SEGMENT).to_string()
    }

    pub const HEALTHZ: &str = "/healthz";
    pub const READYZ: &str = "/readyz";
    pub const METRICS: &str = "/metrics";
    pub const STATUS: &str = "/v1/status";
    pub const ROUTES: &str = "/v1/routes";
    pub const RELOAD: &str = "/v1/reload";
    pub const KEYSTORE: &str = "/v1/keystore";
    pub const KEYRING: &str = "/v1/keyring";

    pub fn route(name: &str) -> String {
        format!("{ROUTES}/{}", segment(name))
    }

    pub fn pause(name: &str) -> String {
        format!("{}/pause", route(name))
    }

    pub fn resume(name: &str) -> String {
        format!("{}/resume", route(name))
    }

    pub fn keystore_alias(alias: &str) -> String {
        format!("{KEYSTORE}/{}", segment(alias))
    }

    pub fn keyring_alias(ring: &str) -> String {
        format!("{KEYRING}/{}", segment(ring))
    }

    pub fn withdraw(alias: &str) -> String {
        format!("{}/withdraw", keystore_alias(alias))
    }

    /// The path's segments, percent-decoded (for the server's routing).
    pub fn segments(path: &str) -> Vec<String> {
        path.trim_matches('/')
            .split('/')
            .map(|s| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8_lossy()
                    .into_owned()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_round_trip_through_the_wire_form() {
        let q = PauseQuery::new(Some(Duration::from_secs(60)));
        assert_eq!(query_string(&q), "?wait=60");
        let back: PauseQuery = parse_query(Some("wait=60")).unwrap();
        assert_eq!(back.wait().unwrap(), Some(Duration::from_secs(60)));
        assert_eq!(query_string(&PauseQuery::new(None)), "");
        for bad in ["wait=-1", "wait=3601", "wait=NaN", "wait=soon"] {
            let q: PauseQuery = parse_query(Some(bad)).unwrap();
            assert_eq!(q.wait(), Err(QueryError::Wait), "{bad}");
        }
        assert!(parse_query::<PauseQuery>(Some("wiat=1")).is_err());

        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let q = ExchangeQuery::new(Activation::At(at));
        let text = query_string(&q);
        assert_eq!(text, "?activate_at=2027-01-15T08%3A00%3A00Z");
        let back: ExchangeQuery = parse_query(Some(&text[1..])).unwrap();
        assert_eq!(back.activation().unwrap(), Activation::At(at));
        let q: ExchangeQuery = parse_query(Some("activate=on-resume")).unwrap();
        assert_eq!(q.activation().unwrap(), Activation::OnResume);
        let q: ExchangeQuery = parse_query(Some("activate=later")).unwrap();
        assert_eq!(q.activation(), Err(QueryError::Activation));
        let q: ExchangeQuery = parse_query(Some("activate_at=tomorrow")).unwrap();
        assert!(matches!(q.activation(), Err(QueryError::ActivateAt(_))));
    }

    #[test]
    fn names_are_escaped_as_one_segment() {
        assert_eq!(paths::pause("orders"), "/v1/routes/orders/pause");
        assert_eq!(paths::pause("a/b?c"), "/v1/routes/a%2Fb%3Fc/pause");
        assert_eq!(
            paths::segments("/v1/routes/a%2Fb%3Fc/pause"),
            ["v1", "routes", "a/b?c", "pause"]
        );
    }
}
