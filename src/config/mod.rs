//! Configuration in two stages: serde structs that mirror the TOML file (unknown
//! keys refused) and a validated [`Config`] with real types: addresses, durations,
//! byte sizes, resolved algorithm suites and absolute paths.
//!
//! Every error names the file, the line and the key. Relative paths are relative
//! to the directory of the configuration file. Nothing here touches certificates
//! or sockets: the keystore and the proxy take the validated values.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use crate::wss::{
    AlgorithmOverrides, Algorithms, DataEncryption, IssuerNameFormat, KeyIdentifier, KeyTransport,
    Limits, OaepDigest, Profile,
};

/// The configuration path used when `-c` is not given, under the current directory.
pub const DEFAULT_PATH: &str = "config/wssgate.toml";

/// Where an installed daemon keeps its configuration.
pub const INSTALLED_PATH: &str = "/etc/wssgate/wssgate.toml";

/// The configuration file to use: `explicit` (`-c` or `WSSGATE_CONFIG`), else
/// [`DEFAULT_PATH`] under the current directory when it exists, else
/// [`INSTALLED_PATH`] when it exists, else [`DEFAULT_PATH`] (so the error names it).
pub fn resolve_path(explicit: Option<&Path>) -> PathBuf {
    resolve_path_among(
        explicit,
        &[Path::new(DEFAULT_PATH), Path::new(INSTALLED_PATH)],
    )
}

fn resolve_path_among(explicit: Option<&Path>, candidates: &[&Path]) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    candidates
        .iter()
        .find(|p| p.is_file())
        .or(candidates.first())
        .map_or_else(|| PathBuf::from(DEFAULT_PATH), |p| p.to_path_buf())
}

/// Archived certificates are kept at least this long.
pub const MIN_RETENTION_DAYS: u32 = 90;

/// A configuration that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}{}: {key}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct ConfigError {
    pub file: String,
    pub line: Option<usize>,
    pub key: String,
    pub message: String,
}

// ---- stage one: the file as written -------------------------------------------

mod parse;
mod raw;
mod sign;
#[cfg(test)]
mod tests;

use parse::*;
use raw::*;

/// The whole validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file it was read from (absolute).
    pub path: PathBuf,
    pub proxy: ProxyConfig,
    pub admin: AdminConfig,
    pub keystore: KeystoreConfig,
    pub routes: Vec<RouteConfig>,
    pub log_format: LogFormat,
    /// `[probe]`: health, readiness and metrics without a token (none when absent).
    pub probe: Option<ProbeConfig>,
}

/// `[probe]`: where the token-less read-only endpoints listen.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeConfig {
    pub listen: SocketAddr,
    pub listener: ListenerLimits,
}

/// Bounds on one listener's clients: what a slow or crowding client may hold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ListenerLimits {
    /// A request head must arrive within this; an idle keep-alive connection is
    /// closed after it too.
    pub header_timeout: Duration,
    /// A whole request body must arrive within this, counted from the head (on the
    /// proxy, from the end of any hold).
    pub request_timeout: Duration,
    /// Connections open at once; beyond, clients wait in the listen backlog.
    /// `None` on the proxy: the descriptor budget decides ([`crate::descriptors`]).
    pub max_connections: Option<usize>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProxyConfig {
    pub listen: SocketAddr,
    /// Largest request body accepted, in bytes.
    pub max_body: u64,
    /// Bodies up to this size are buffered and sent with Content-Length; larger
    /// ones are streamed chunked to the upstream.
    pub stream_threshold: u64,
    pub upstream_timeout: Duration,
    pub connect_timeout: Duration,
    pub shutdown_grace: Duration,
    /// After SIGTERM, how long the proxy keeps serving with `/readyz` at 503 (so
    /// load balancers stop sending) before it stops accepting.
    pub drain_delay: Duration,
    /// Longest wait for the next piece of a request body (slow-drip clients).
    pub body_idle_timeout: Duration,
    /// Request-head and whole-body deadlines and the connection cap.
    pub listener: ListenerLimits,
    /// Deepest element nesting accepted (the Envelope is depth 1); the same
    /// as `xml_limits.max_depth`.
    pub max_depth: usize,
    /// `[proxy.xml_limits]` with its defaults, `max_bytes` = `max_body`; each
    /// route has its own copy with its overrides (`RouteConfig::xml_limits`).
    pub xml_limits: Limits,
}

impl ProxyConfig {
    /// The global XML limits (a route's own are in `RouteConfig::xml_limits`).
    pub fn limits(&self) -> Limits {
        self.xml_limits
    }
}

/// What an admin token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Read,
    Operator,
    Keys,
    Admin,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Operator => "operator",
            Role::Keys => "keys",
            Role::Admin => "admin",
        }
    }

    /// Whether this role may do what `needed` allows. `operator` and `keys` are
    /// separate duties (routes vs certificates); both include `read`; `admin` all.
    pub fn allows(self, needed: Role) -> bool {
        self == needed || self == Role::Admin || needed == Role::Read
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct TokenConfig {
    /// The actor name written to the audit log.
    pub name: String,
    pub role: Role,
    /// File holding the token (read at load and on every reload).
    pub file: PathBuf,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    pub tokens: Vec<TokenConfig>,
    /// Certificate and key for serving the admin API over TLS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// URL `wssgate ctl` uses to reach the admin API.
    pub url: String,
    /// A file listing route names, one a line, that are to be paused. Watched: on a
    /// fleet, a ConfigMap with this file pauses the routes on every replica at once.
    pub paused_routes_file: Option<PathBuf>,
    /// Serve although a token file can be read by group or others (refused by
    /// default: a token is a password).
    pub allow_insecure_token_files: bool,
    /// Request-head and body deadlines and the connection cap of the admin port.
    pub listener: ListenerLimits,
}

#[derive(Debug, Clone, PartialEq)]
pub struct KeystoreConfig {
    /// `ALIAS.pem` per alias.
    pub dir: PathBuf,
    /// The key rings: `ALIAS.pem` per ring, the active private key and its
    /// certificate, owner-only (mode 0600 or stricter).
    pub private_dir: PathBuf,
    /// Archive, audit log and pause state.
    pub state_dir: PathBuf,
    pub retention_days: u32,
    pub min_rsa_bits: u32,
    /// Certificates expiring within this many days are warned about.
    pub expiry_warning_days: u32,
    /// `wssgate check` fails when a certificate in use has fewer days left.
    pub min_days_left: Option<u32>,
    /// Reload when the configuration or keystore directory changes.
    pub watch: bool,
}

/// What a paused route does with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnPause {
    /// Park it until resume, within `hold_timeout` and `hold_max`.
    Hold,
    /// Answer 503 with Retry-After at once.
    Reject,
}

/// What a route does to the requests it forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteMode {
    /// Encrypt the Body for the alias's certificate (the point of wssgate).
    Encrypt,
    /// Forward the request unchanged: for a receiver not yet ready for
    /// encrypted messages, and to measure the proxy without encryption. The
    /// alias's certificate is still loaded and checked, so switching the route
    /// to `encrypt` is a reload.
    PassThrough,
    /// The receiver side: decrypt the request with the keys of the route's
    /// `ring` (active or retained) and forward the plaintext.
    Decrypt,
}

/// What an encrypt route does with the upstream's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseMode {
    /// Streamed back unchanged.
    Pass,
    /// Decrypted with the keys of `response_ring` before it reaches the client
    /// (an answer that is not encrypted passes unchanged).
    Decrypt,
}

impl RouteMode {
    pub fn name(self) -> &'static str {
        match self {
            RouteMode::Encrypt => "encrypt",
            RouteMode::PassThrough => "pass-through",
            RouteMode::Decrypt => "decrypt",
        }
    }
}

/// What to do with a request whose Body is already encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlreadyEncrypted {
    Refuse,
    Pass,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UpstreamTls {
    /// CA bundle to verify the upstream with instead of the system roots.
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key for mutual TLS.
    pub client_identity: Option<(PathBuf, PathBuf)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RouteConfig {
    pub name: String,
    /// Path prefix, starting with `/`.
    pub path: String,
    pub upstream: http::Uri,
    /// The certificate alias an encrypt or pass-through route encrypts for; on a
    /// decrypt route, the name of its `ring` (no certificate is loaded for it).
    pub alias: String,
    /// `mode = "decrypt"`: the key ring requests are decrypted with.
    pub ring: Option<String>,
    /// A decrypt route refuses a request without an EncryptedKey (`not-encrypted`);
    /// false: such a request is forwarded as it is.
    pub require_encryption: bool,
    /// `allow_legacy = true`: rsa-1_5 may be used to encrypt and accepted when
    /// decrypting (requests of a decrypt route, answers of `response = "decrypt"`).
    pub allow_legacy: bool,
    pub response: ResponseMode,
    /// `response = "decrypt"`: the key ring answers are decrypted with.
    pub response_ring: Option<String>,
    pub algorithms: Algorithms,
    pub must_understand: bool,
    pub on_pause: OnPause,
    pub hold_timeout: Duration,
    pub hold_max: usize,
    pub already_encrypted: AlreadyEncrypted,
    pub mode: RouteMode,
    pub tls: UpstreamTls,
    /// The global `[proxy.xml_limits]` with this route's `xml_limits` over them.
    pub xml_limits: Limits,
    /// `sign = true`: requests are signed (and timestamped) before they are
    /// encrypted or after, as the plan says.
    pub sign: Option<SignConfig>,
}

/// How a `sign = true` route signs its requests.
#[derive(Debug, Clone, PartialEq)]
pub struct SignConfig {
    /// `signing_ring`: the key ring whose active key signs.
    pub ring: String,
    /// Algorithms, key identifier, parts, Timestamp, order and `sign_max_body`
    /// (always set), validated.
    pub plan: crate::wss::sign::SignPlan,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Whether `alias` is a safe keystore alias (it names a file).
pub fn is_valid_alias(alias: &str) -> bool {
    let mut chars = alias.chars();
    alias.len() <= 128
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

impl Config {
    /// Read and validate a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.display().to_string(),
            line: None,
            key: "file".into(),
            message: format!("cannot read: {e}"),
        })?;
        let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        Config::parse(&text, &absolute)
    }

    /// Validate configuration text as if read from `path`.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let base = path.parent().unwrap_or(Path::new("."));
        let ctx = Ctx {
            file: &file,
            source: text,
            base,
        };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let message = e.message().to_string();
            let key = message
                .split('`')
                .nth(1)
                .map(str::to_string)
                .unwrap_or_else(|| "toml".to_string());
            ConfigError {
                file: file.clone(),
                line: e.span().map(|s| ctx.line_of(s.start)),
                key,
                message,
            }
        })?;

        let p = &raw.proxy;
        let proxy = ProxyConfig {
            listen: ctx.parsed(&p.listen, "proxy.listen", "127.0.0.1:8080", parse_addr)?,
            max_body: ctx.parsed(&p.max_body, "proxy.max_body", "16MiB", parse_size)?,
            stream_threshold: ctx.parsed(
                &p.stream_threshold,
                "proxy.stream_threshold",
                "1MiB",
                parse_size,
            )?,
            upstream_timeout: ctx.parsed(
                &p.upstream_timeout,
                "proxy.upstream_timeout",
                "60s",
                parse_duration,
            )?,
            connect_timeout: ctx.parsed(
                &p.connect_timeout,
                "proxy.connect_timeout",
                "5s",
                parse_duration,
            )?,
            shutdown_grace: ctx.parsed(
                &p.shutdown_grace,
                "proxy.shutdown_grace",
                "30s",
                parse_duration,
            )?,
            drain_delay: ctx.parsed(&p.drain_delay, "proxy.drain_delay", "5s", parse_duration)?,
            body_idle_timeout: ctx.parsed(
                &p.body_idle_timeout,
                "proxy.body_idle_timeout",
                "30s",
                parse_duration,
            )?,
            listener: parse::listener_limits(
                &ctx,
                "proxy",
                [&p.header_timeout, &p.request_timeout],
                &p.max_connections,
                ("120s", None),
            )?,
            max_depth: ctx.number(&p.max_depth, "proxy.max_depth", 256, 4, 100_000)? as usize,
            xml_limits: Limits::default(),
        };
        let mut proxy = proxy;
        let defaults = Limits {
            max_depth: proxy.max_depth,
            max_bytes: Some(proxy.max_body),
            ..Limits::default()
        };
        proxy.xml_limits = xml_limits(&ctx, p.xml_limits.as_ref(), "proxy.xml_limits", defaults)?;
        proxy.max_depth = proxy.xml_limits.max_depth;
        if proxy.max_body == 0 {
            return ctx.err(
                p.max_body.as_ref().map(|v| v.span()),
                "proxy.max_body",
                "must be more than 0",
            );
        }
        // A small max_body with the default threshold means: never stream. Only an
        // explicit threshold above max_body contradicts it.
        if proxy.max_body < proxy.stream_threshold && p.stream_threshold.is_none() {
            proxy.stream_threshold = proxy.max_body;
        }
        if proxy.max_body < proxy.stream_threshold {
            return ctx.err(
                p.max_body.as_ref().map(|v| v.span()),
                "proxy.max_body",
                format!(
                    "{} is below stream_threshold ({}): no body could be streamed",
                    proxy.max_body, proxy.stream_threshold
                ),
            );
        }
        for (value, key, span) in [
            (
                proxy.upstream_timeout,
                "proxy.upstream_timeout",
                &p.upstream_timeout,
            ),
            (
                proxy.connect_timeout,
                "proxy.connect_timeout",
                &p.connect_timeout,
            ),
            (
                proxy.body_idle_timeout,
                "proxy.body_idle_timeout",
                &p.body_idle_timeout,
            ),
        ] {
            if value.is_zero() {
                return ctx.err(
                    span.as_ref().map(|v| v.span()),
                    key,
                    "must be more than 0s: every request would time out",
                );
            }
        }

        let a = &raw.admin;
        let admin_listen = ctx.parsed(&a.listen, "admin.listen", "127.0.0.1:9090", parse_addr)?;
        let tls = match (&a.tls_cert, &a.tls_key) {
            (Some(c), Some(k)) => Some((ctx.path(c.get_ref()), ctx.path(k.get_ref()))),
            (None, None) => None,
            (Some(c), None) => {
                return ctx.err(Some(c.span()), "admin.tls_key", "tls_cert needs tls_key");
            }
            (None, Some(k)) => {
                return ctx.err(Some(k.span()), "admin.tls_cert", "tls_key needs tls_cert");
            }
        };
        if !admin_listen.ip().is_loopback() && tls.is_none() {
            return ctx.err(
                a.listen.as_ref().map(|v| v.span()),
                "admin.listen",
                "a non-loopback admin address requires tls_cert and tls_key",
            );
        }
        let mut tokens = Vec::new();
        for t in &a.tokens {
            let role = match t.role.get_ref().as_str() {
                "read" => Role::Read,
                "operator" => Role::Operator,
                "keys" => Role::Keys,
                "admin" => Role::Admin,
                other => {
                    return ctx.err(
                        Some(t.role.span()),
                        "admin.tokens.role",
                        format!("unknown role {other:?} (read, operator, keys, admin)"),
                    );
                }
            };
            let name = t.name.get_ref().trim().to_string();
            if name.is_empty() || tokens.iter().any(|x: &TokenConfig| x.name == name) {
                return ctx.err(
                    Some(t.name.span()),
                    "admin.tokens.name",
                    "token names must be non-empty and unique",
                );
            }
            tokens.push(TokenConfig {
                name,
                role,
                file: ctx.path(t.file.get_ref()),
            });
        }
        for (i, t) in tokens.iter().enumerate() {
            if let Some(other) = tokens[..i].iter().find(|o| o.file == t.file) {
                return ctx.err(
                    Some(a.tokens[i].file.span()),
                    "admin.tokens.file",
                    format!(
                        "{} is also the file of token {:?}: one token would have two roles",
                        t.file.display(),
                        other.name
                    ),
                );
            }
        }
        if admin_listen == proxy.listen && admin_listen.port() != 0 {
            return ctx.err(
                a.listen.as_ref().map(|v| v.span()),
                "admin.listen",
                format!("{admin_listen} is also proxy.listen"),
            );
        }
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = match &a.url {
            Some(u) => u.get_ref().trim_end_matches('/').to_string(),
            None => format!("{scheme}://{admin_listen}"),
        };
        let admin = AdminConfig {
            listen: admin_listen,
            tokens,
            tls,
            url,
            paused_routes_file: a.paused_routes_file.as_ref().map(|v| ctx.path(v.get_ref())),
            allow_insecure_token_files: a.allow_insecure_token_files.unwrap_or(false),
            listener: parse::listener_limits(
                &ctx,
                "admin",
                [&a.header_timeout, &a.request_timeout],
                &a.max_connections,
                ("30s", Some(16)),
            )?,
        };

        let k = &raw.keystore;
        let retention_days = ctx.number(
            &k.retention_days,
            "keystore.retention_days",
            90,
            i64::MIN,
            36_500,
        )?;
        if retention_days < i64::from(MIN_RETENTION_DAYS) {
            return ctx.err(
                k.retention_days.as_ref().map(|v| v.span()),
                "keystore.retention_days",
                format!("{retention_days} is less than the required minimum of {MIN_RETENTION_DAYS} days"),
            );
        }
        let keystore = KeystoreConfig {
            dir: ctx.path(k.dir.as_ref().map_or("keystore", |v| v.get_ref())),
            private_dir: ctx.path(k.private_dir.as_ref().map_or("private", |v| v.get_ref())),
            state_dir: ctx.path(k.state_dir.as_ref().map_or("var", |v| v.get_ref())),
            retention_days: retention_days as u32,
            min_rsa_bits: ctx.number(
                &k.min_rsa_bits,
                "keystore.min_rsa_bits",
                2048,
                1024,
                16_384,
            )? as u32,
            expiry_warning_days: ctx.number(
                &k.expiry_warning_days,
                "keystore.expiry_warning_days",
                30,
                0,
                3650,
            )? as u32,
            min_days_left: match &k.min_days_left {
                Some(_) => {
                    Some(ctx.number(&k.min_days_left, "keystore.min_days_left", 0, 0, 3650)? as u32)
                }
                None => None,
            },
            watch: k.watch.unwrap_or(false),
        };

        let probe = match &raw.probe.listen {
            None => None,
            Some(_) => Some(ProbeConfig {
                listen: ctx.parsed(&raw.probe.listen, "probe.listen", "", parse_addr)?,
                listener: parse::listener_limits(
                    &ctx,
                    "probe",
                    [&raw.probe.header_timeout, &None],
                    &raw.probe.max_connections,
                    ("10s", Some(8)),
                )?,
            }),
        };
        if let Some(addr) = probe.as_ref().map(|p| p.listen)
            && addr.port() != 0
            && (addr == proxy.listen || addr == admin.listen)
        {
            return ctx.err(
                raw.probe.listen.as_ref().map(|v| v.span()),
                "probe.listen",
                format!("{addr} is also the proxy's or the admin API's address"),
            );
        }

        let mut routes: Vec<RouteConfig> = Vec::new();
        for r in &raw.routes {
            routes.push(route(&ctx, r, &routes, proxy.xml_limits)?);
        }

        let log_format = match raw
            .log
            .format
            .as_ref()
            .map(|v| (v.get_ref().as_str(), v.span()))
        {
            None | Some(("text", _)) => LogFormat::Text,
            Some(("json", _)) => LogFormat::Json,
            Some((other, span)) => {
                return ctx.err(
                    Some(span),
                    "log.format",
                    format!("unknown format {other:?} (text, json)"),
                );
            }
        };

        Ok(Config {
            path: path.to_path_buf(),
            proxy,
            admin,
            keystore,
            routes,
            log_format,
            probe,
        })
    }

    /// The route names using `alias`.
    pub fn routes_for_alias(&self, alias: &str) -> impl Iterator<Item = &RouteConfig> {
        self.routes
            .iter()
            .filter(move |r| r.mode != RouteMode::Decrypt && r.alias == alias)
    }

    /// The key rings the routes use (request or response side, or to sign), each once.
    pub fn rings(&self) -> std::collections::BTreeSet<&str> {
        self.routes
            .iter()
            .flat_map(|r| {
                [
                    r.ring.as_deref(),
                    r.response_ring.as_deref(),
                    r.sign.as_ref().map(|s| s.ring.as_str()),
                ]
            })
            .flatten()
            .collect()
    }

    /// The checks a certificate under `alias` must pass: the keystore's minimum
    /// key size, and a SubjectKeyIdentifier when a route using the alias
    /// identifies the key by it. The one place this rule is decided.
    pub fn certificate_policy(&self, alias: &str) -> crate::wss::CertificatePolicy {
        crate::wss::CertificatePolicy::for_key_identifiers(
            self.keystore.min_rsa_bits,
            self.routes_for_alias(alias)
                .map(|r| r.algorithms.key_identifier),
        )
    }
}
