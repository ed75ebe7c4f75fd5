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

use serde::Deserialize;
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    proxy: RawProxy,
    #[serde(default)]
    admin: RawAdmin,
    #[serde(default)]
    keystore: RawKeystore,
    #[serde(default, rename = "route")]
    routes: Vec<RawRoute>,
    #[serde(default)]
    log: RawLog,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProxy {
    listen: Option<Spanned<String>>,
    max_body: Option<Spanned<String>>,
    stream_threshold: Option<Spanned<String>>,
    upstream_timeout: Option<Spanned<String>>,
    connect_timeout: Option<Spanned<String>>,
    shutdown_grace: Option<Spanned<String>>,
    body_idle_timeout: Option<Spanned<String>>,
    max_depth: Option<Spanned<i64>>,
    xml_limits: Option<RawXmlLimits>,
}

/// `[proxy.xml_limits]`, or a route's `xml_limits = { ... }`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawXmlLimits {
    max_depth: Option<Spanned<i64>>,
    max_attributes_per_element: Option<Spanned<i64>>,
    max_name_length: Option<Spanned<i64>>,
    max_namespace_declarations: Option<Spanned<i64>>,
    max_text_length: Option<Spanned<RawSize>>,
    max_elements: Option<Spanned<i64>>,
}

/// A byte size written as a number of bytes or as text (`"64KiB"`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawSize {
    Bytes(i64),
    Text(String),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    listen: Option<Spanned<String>>,
    #[serde(default)]
    tokens: Vec<RawToken>,
    tls_cert: Option<Spanned<String>>,
    tls_key: Option<Spanned<String>>,
    url: Option<Spanned<String>>,
    paused_routes_file: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToken {
    name: Spanned<String>,
    role: Spanned<String>,
    file: Spanned<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKeystore {
    dir: Option<Spanned<String>>,
    state_dir: Option<Spanned<String>>,
    retention_days: Option<Spanned<i64>>,
    min_rsa_bits: Option<Spanned<i64>>,
    expiry_warning_days: Option<Spanned<i64>>,
    min_days_left: Option<Spanned<i64>>,
    watch: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    name: Spanned<String>,
    path: Spanned<String>,
    upstream: Spanned<String>,
    alias: Spanned<String>,
    profile: Option<Spanned<String>>,
    key_identifier: Option<Spanned<String>>,
    issuer_name_format: Option<Spanned<String>>,
    data_encryption: Option<Spanned<String>>,
    key_transport: Option<Spanned<String>>,
    oaep_digest: Option<Spanned<String>>,
    allow_legacy: Option<bool>,
    must_understand: Option<bool>,
    on_pause: Option<Spanned<String>>,
    hold_timeout: Option<Spanned<String>>,
    hold_max: Option<Spanned<i64>>,
    already_encrypted: Option<Spanned<String>>,
    mode: Option<Spanned<String>>,
    xml_limits: Option<RawXmlLimits>,
    ca_file: Option<Spanned<String>>,
    client_cert: Option<Spanned<String>>,
    client_key: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    format: Option<Spanned<String>>,
}

// ---- stage two: validated values ----------------------------------------------

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
    /// Longest wait for the next piece of a request body (slow-drip clients).
    pub body_idle_timeout: Duration,
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
}

#[derive(Debug, Clone, PartialEq)]
pub struct KeystoreConfig {
    /// `ALIAS.pem` per alias.
    pub dir: PathBuf,
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
}

impl RouteMode {
    pub fn name(self) -> &'static str {
        match self {
            RouteMode::Encrypt => "encrypt",
            RouteMode::PassThrough => "pass-through",
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
    pub alias: String,
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

/// Parse a byte size such as `16MiB`, `512KiB`, `1GB` or `1048576`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size like 16MiB"))?;
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "K" | "k" => 1 << 10,
        "MiB" | "M" => 1 << 20,
        "GiB" | "G" => 1 << 30,
        "KB" | "kB" => 1000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => {
            return Err(format!(
                "unknown size unit {other:?} (use B, KiB, MiB, GiB)"
            ));
        }
    };
    number
        .checked_mul(factor)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// Parse a duration such as `30s`, `2m` or `1h 30m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("{text:?} is not a duration like 30s: {e}"))
}

struct Ctx<'a> {
    file: &'a str,
    source: &'a str,
    base: &'a Path,
}

impl Ctx<'_> {
    fn line_of(&self, offset: usize) -> usize {
        self.source[..offset.min(self.source.len())]
            .bytes()
            .filter(|b| *b == b'\n')
            .count()
            + 1
    }

    fn err<T>(
        &self,
        span: Option<std::ops::Range<usize>>,
        key: &str,
        message: impl Into<String>,
    ) -> Result<T, ConfigError> {
        Err(ConfigError {
            file: self.file.to_string(),
            line: span.map(|s| self.line_of(s.start)),
            key: key.to_string(),
            message: message.into(),
        })
    }

    fn path(&self, value: &str) -> PathBuf {
        let p = Path::new(value);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    fn parsed<T>(
        &self,
        value: &Option<Spanned<String>>,
        key: &str,
        default: &str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        match value {
            Some(v) => parse(v.get_ref()).or_else(|m| self.err(Some(v.span()), key, m)),
            None => parse(default).or_else(|m| self.err(None, key, m)),
        }
    }

    fn number(
        &self,
        value: &Option<Spanned<i64>>,
        key: &str,
        default: i64,
        min: i64,
        max: i64,
    ) -> Result<i64, ConfigError> {
        match value {
            Some(v) if (min..=max).contains(v.get_ref()) => Ok(*v.get_ref()),
            Some(v) => self.err(
                Some(v.span()),
                key,
                format!("{} is out of range ({min} to {max})", v.get_ref()),
            ),
            None => Ok(default),
        }
    }

    fn named<T: std::str::FromStr>(
        &self,
        value: &Option<Spanned<String>>,
        key: &str,
    ) -> Result<Option<T>, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        match value {
            Some(v) => v
                .get_ref()
                .parse()
                .map(Some)
                .or_else(|e: T::Err| self.err(Some(v.span()), key, e.to_string())),
            None => Ok(None),
        }
    }
}

fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    text.parse()
        .map_err(|_| format!("{text:?} is not an address like 127.0.0.1:8080"))
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
            body_idle_timeout: ctx.parsed(
                &p.body_idle_timeout,
                "proxy.body_idle_timeout",
                "30s",
                parse_duration,
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
        })
    }

    /// The route names using `alias`.
    pub fn routes_for_alias(&self, alias: &str) -> impl Iterator<Item = &RouteConfig> {
        self.routes.iter().filter(move |r| r.alias == alias)
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

/// Limits from `raw` over `base`, checked; `key` is where they are in the file.
fn xml_limits(
    ctx: &Ctx<'_>,
    raw: Option<&RawXmlLimits>,
    key: &str,
    base: Limits,
) -> Result<Limits, ConfigError> {
    let Some(raw) = raw else {
        return Ok(base);
    };
    let key = |k: &str| format!("{key}.{k}");
    let count = |value: &Option<Spanned<i64>>, k: &str, default: usize, min: i64, max: i64| {
        ctx.number(value, &key(k), default as i64, min, max)
            .map(|n| n as usize)
    };
    let max_text_length = match &raw.max_text_length {
        None => base.max_text_length,
        Some(v) => {
            let bytes = match v.get_ref() {
                RawSize::Bytes(n) => u64::try_from(*n).map_err(|_| format!("{n} is negative")),
                RawSize::Text(t) => parse_size(t),
            };
            match bytes {
                Ok(0) => {
                    return ctx.err(
                        Some(v.span()),
                        &key("max_text_length"),
                        "must be more than 0",
                    );
                }
                Ok(n) => Some(n),
                Err(m) => return ctx.err(Some(v.span()), &key("max_text_length"), m),
            }
        }
    };
    Ok(Limits {
        max_depth: count(&raw.max_depth, "max_depth", base.max_depth, 4, 100_000)?,
        max_bytes: base.max_bytes,
        max_attributes_per_element: count(
            &raw.max_attributes_per_element,
            "max_attributes_per_element",
            base.max_attributes_per_element,
            1,
            10_000_000,
        )?,
        max_name_length: count(
            &raw.max_name_length,
            "max_name_length",
            base.max_name_length,
            1,
            1 << 30,
        )?,
        max_namespace_declarations: count(
            &raw.max_namespace_declarations,
            "max_namespace_declarations",
            base.max_namespace_declarations,
            1,
            10_000_000,
        )?,
        max_text_length,
        max_elements: match &raw.max_elements {
            None => base.max_elements,
            Some(_) => {
                Some(ctx.number(&raw.max_elements, &key("max_elements"), 1, 1, i64::MAX)? as u64)
            }
        },
    })
}

fn route(
    ctx: &Ctx<'_>,
    r: &RawRoute,
    earlier: &[RouteConfig],
    global_limits: Limits,
) -> Result<RouteConfig, ConfigError> {
    let name = r.name.get_ref().trim().to_string();
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return ctx.err(
            Some(r.name.span()),
            "route.name",
            format!("{name:?} is not a route name (letters, digits, . _ -)"),
        );
    }
    if earlier.iter().any(|e| e.name == name) {
        return ctx.err(
            Some(r.name.span()),
            "route.name",
            format!("route {name:?} is defined twice"),
        );
    }
    let key = |k: &str| format!("route.{name}.{k}");
    let path = r.path.get_ref().to_string();
    if !path.starts_with('/') || path.contains(['?', '#', ' ']) {
        return ctx.err(
            Some(r.path.span()),
            &key("path"),
            format!("{path:?} is not a path prefix starting with /"),
        );
    }
    if let Some(other) = earlier.iter().find(|e| e.path == path) {
        return ctx.err(
            Some(r.path.span()),
            &key("path"),
            format!("{path:?} is already the path of route {:?}", other.name),
        );
    }
    let upstream: http::Uri = r.upstream.get_ref().parse().or_else(|e| {
        ctx.err(
            Some(r.upstream.span()),
            &key("upstream"),
            format!("not a URL: {e}"),
        )
    })?;
    if !matches!(upstream.scheme_str(), Some("http" | "https")) || upstream.host().is_none() {
        return ctx.err(
            Some(r.upstream.span()),
            &key("upstream"),
            "must be an http:// or https:// URL with a host",
        );
    }
    let alias = r.alias.get_ref().to_string();
    if !is_valid_alias(&alias) {
        return ctx.err(
            Some(r.alias.span()),
            &key("alias"),
            format!("{alias:?} is not a valid alias (letters, digits, . _ -; at most 128)"),
        );
    }
    let profile: Profile = ctx
        .named(&r.profile, &key("profile"))?
        .unwrap_or(Profile::Default);
    let overrides = AlgorithmOverrides {
        key_identifier: ctx.named::<KeyIdentifier>(&r.key_identifier, &key("key_identifier"))?,
        issuer_name_format: ctx
            .named::<IssuerNameFormat>(&r.issuer_name_format, &key("issuer_name_format"))?,
        data_encryption: ctx
            .named::<DataEncryption>(&r.data_encryption, &key("data_encryption"))?,
        key_transport: ctx.named::<KeyTransport>(&r.key_transport, &key("key_transport"))?,
        oaep_digest: ctx.named::<OaepDigest>(&r.oaep_digest, &key("oaep_digest"))?,
    };
    let algorithms = Algorithms::resolve(profile, overrides, r.allow_legacy.unwrap_or(false))
        .or_else(|e| {
            let span = r
                .key_transport
                .as_ref()
                .or(r.oaep_digest.as_ref())
                .map(|v| v.span());
            ctx.err(span, &key("key_transport"), e.to_string())
        })?;
    let on_pause = match r
        .on_pause
        .as_ref()
        .map(|v| (v.get_ref().as_str(), v.span()))
    {
        None | Some(("hold", _)) => OnPause::Hold,
        Some(("reject", _)) => OnPause::Reject,
        Some((other, span)) => {
            return ctx.err(
                Some(span),
                &key("on_pause"),
                format!("{other:?} is not hold or reject"),
            );
        }
    };
    let already_encrypted = match r
        .already_encrypted
        .as_ref()
        .map(|v| (v.get_ref().as_str(), v.span()))
    {
        None | Some(("refuse", _)) => AlreadyEncrypted::Refuse,
        Some(("pass", _)) => AlreadyEncrypted::Pass,
        Some((other, span)) => {
            return ctx.err(
                Some(span),
                &key("already_encrypted"),
                format!("{other:?} is not refuse or pass"),
            );
        }
    };
    let mode = match r.mode.as_ref().map(|v| (v.get_ref().as_str(), v.span())) {
        None | Some(("encrypt", _)) => RouteMode::Encrypt,
        Some(("pass-through", _)) => RouteMode::PassThrough,
        Some((other, span)) => {
            return ctx.err(
                Some(span),
                &key("mode"),
                format!("{other:?} is not encrypt or pass-through"),
            );
        }
    };
    let client_identity = match (&r.client_cert, &r.client_key) {
        (Some(c), Some(k)) => Some((ctx.path(c.get_ref()), ctx.path(k.get_ref()))),
        (None, None) => None,
        (Some(c), None) => {
            return ctx.err(
                Some(c.span()),
                &key("client_key"),
                "client_cert needs client_key",
            );
        }
        (None, Some(k)) => {
            return ctx.err(
                Some(k.span()),
                &key("client_cert"),
                "client_key needs client_cert",
            );
        }
    };
    Ok(RouteConfig {
        upstream,
        alias,
        algorithms,
        must_understand: r.must_understand.unwrap_or(true),
        on_pause,
        hold_timeout: ctx.parsed(&r.hold_timeout, &key("hold_timeout"), "30s", parse_duration)?,
        hold_max: ctx.number(&r.hold_max, &key("hold_max"), 1000, 0, 1_000_000)? as usize,
        already_encrypted,
        mode,
        tls: UpstreamTls {
            ca_file: r.ca_file.as_ref().map(|v| ctx.path(v.get_ref())),
            client_identity,
        },
        xml_limits: xml_limits(
            ctx,
            r.xml_limits.as_ref(),
            &key("xml_limits"),
            global_limits,
        )?,
        path,
        name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/wssgate/wssgate.toml"))
    }

    const ROUTE: &str = r#"
[[route]]
name = "orders"
path = "/orders"
upstream = "http://127.0.0.1:9000/orders"
alias = "orders-receiver"
"#;

    #[test]
    fn defaults_and_relative_paths() {
        let c = parse(ROUTE).unwrap();
        assert_eq!(c.proxy.max_body, 16 << 20);
        assert_eq!(c.proxy.stream_threshold, 1 << 20);
        assert_eq!(c.proxy.upstream_timeout, Duration::from_secs(60));
        assert_eq!(c.admin.listen, "127.0.0.1:9090".parse().unwrap());
        assert_eq!(c.keystore.dir, Path::new("/etc/wssgate/keystore"));
        assert_eq!(c.keystore.retention_days, 90);
        let r = &c.routes[0];
        assert_eq!(r.algorithms, Profile::Default.algorithms());
        assert_eq!(r.on_pause, OnPause::Hold);
        assert_eq!(r.hold_max, 1000);
        assert!(r.must_understand);
    }

    #[test]
    fn explicit_algorithms_override_the_profile() {
        let text = format!("{ROUTE}profile = \"wcf-basic256\"\ndata_encryption = \"aes128-gcm\"\n");
        let r = &parse(&text).unwrap().routes[0];
        assert_eq!(r.algorithms.key_identifier, KeyIdentifier::Thumbprint);
        assert_eq!(r.algorithms.data_encryption, DataEncryption::Aes128Gcm);
    }

    #[test]
    fn issuer_name_format_policy_profiles_and_mgf1p_digest() {
        let r = &parse(&format!("{ROUTE}issuer_name_format = \"wcf\"\n"))
            .unwrap()
            .routes[0];
        assert_eq!(r.algorithms.issuer_name_format, IssuerNameFormat::Wcf);
        assert_eq!(r.algorithms.key_identifier, KeyIdentifier::IssuerSerial);
        let text =
            format!("{ROUTE}profile = \"wcf-basic128\"\nkey_identifier = \"issuer-serial\"\n");
        let r = &parse(&text).unwrap().routes[0];
        assert_eq!(r.algorithms.issuer_name_format, IssuerNameFormat::Wcf);
        let text = format!("{ROUTE}profile = \"wcf-basic128\"\nissuer_name_format = \"rfc2253\"\n");
        let r = &parse(&text).unwrap().routes[0];
        assert_eq!(r.algorithms.issuer_name_format, IssuerNameFormat::Rfc2253);

        let text = format!("{ROUTE}profile = \"basic256sha256\"\noaep_digest = \"sha256\"\n");
        let r = &parse(&text).unwrap().routes[0];
        assert_eq!(r.algorithms.key_transport, KeyTransport::RsaOaepMgf1p);
        assert_eq!(r.algorithms.oaep_digest, OaepDigest::Sha256);
        let r = &parse(&format!("{ROUTE}profile = \"basic128\"\n"))
            .unwrap()
            .routes[0];
        assert_eq!(r.algorithms.data_encryption, DataEncryption::Aes128Cbc);

        let e = parse(&format!("{ROUTE}issuer_name_format = \"rfc1779\"\n")).unwrap_err();
        assert_eq!(e.key, "route.orders.issuer_name_format");
        assert!(e.message.contains("wcf"), "{e}");
        let e = parse(&format!("{ROUTE}profile = \"basic192\"\n")).unwrap_err();
        assert!(e.message.contains("basic256sha256"), "{e}");
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let e = parse("[proxy]\nlisten = \"127.0.0.1:8080\"\nbogus = 1\n").unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
        assert!(
            e.to_string().starts_with("/etc/wssgate/wssgate.toml:3: "),
            "{e}"
        );
        assert!(e.to_string().contains("bogus"), "{e}");

        let e = parse("[keystore]\nretention_days = 30\n").unwrap_err();
        assert_eq!(
            (e.line, e.key.as_str()),
            (Some(2), "keystore.retention_days")
        );
        assert!(e.message.contains("90"));

        let e = parse(&format!("{ROUTE}key_transport = \"rsa-1_5\"\n")).unwrap_err();
        assert_eq!(e.key, "route.orders.key_transport");
        assert!(e.message.contains("allow_legacy"), "{e}");

        let e = parse(&format!("{ROUTE}mode = \"plain\"\n")).unwrap_err();
        assert_eq!(e.key, "route.orders.mode");
        assert!(e.message.contains("pass-through"), "{e}");

        let e = parse(&format!("{ROUTE}hold_timeout = \"soon\"\n")).unwrap_err();
        assert_eq!(e.key, "route.orders.hold_timeout");
        assert_eq!(e.line, Some(7));

        let e = parse("[admin]\nlisten = \"0.0.0.0:9090\"\n").unwrap_err();
        assert!(e.message.contains("requires tls"), "{e}");

        let e = parse(&format!("{ROUTE}{ROUTE}")).unwrap_err();
        assert!(e.message.contains("twice"), "{e}");

        let e = parse("[proxy]\nmax_body = \"lots\"\n").unwrap_err();
        assert_eq!(e.key, "proxy.max_body");

        let e = parse(&ROUTE.replace("orders-receiver", "../etc/passwd")).unwrap_err();
        assert_eq!(e.key, "route.orders.alias");

        let e = parse(&ROUTE.replace("http://127.0.0.1:9000/orders", "ftp://x/")).unwrap_err();
        assert_eq!(e.key, "route.orders.upstream");
    }

    #[test]
    fn sizes_and_roles() {
        assert_eq!(parse_size("16MiB"), Ok(16 << 20));
        assert_eq!(parse_size("512 KiB"), Ok(512 << 10));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert!(parse_size("1TB").is_err());
        assert!(Role::Admin.allows(Role::Keys));
        assert!(Role::Keys.allows(Role::Read));
        assert!(!Role::Keys.allows(Role::Operator));
        assert!(!Role::Read.allows(Role::Operator));
        assert!(is_valid_alias("orders-receiver.v2"));
        assert!(!is_valid_alias(".hidden") && !is_valid_alias("a/b") && !is_valid_alias(""));
    }
    #[test]
    fn xml_limits_have_their_defaults_and_routes_override_them() {
        let c = parse(ROUTE).unwrap();
        let defaults = Limits {
            max_bytes: Some(16 << 20),
            ..Limits::default()
        };
        assert_eq!(c.proxy.xml_limits, defaults);
        assert_eq!(c.routes[0].xml_limits, defaults);
        assert_eq!(defaults.max_attributes_per_element, 256);
        assert_eq!(defaults.max_name_length, 1024);
        assert_eq!(defaults.max_namespace_declarations, 1024);
        assert_eq!(defaults.max_text_length, None);
        assert_eq!(defaults.max_elements, None);

        let text = format!(
            "[proxy]\nmax_depth = 100\n[proxy.xml_limits]\nmax_name_length = 64\nmax_text_length = \"1KiB\"\n{ROUTE}xml_limits = {{ max_elements = 10, max_text_length = 512, max_depth = 50 }}\n"
        );
        let c = parse(&text).unwrap();
        assert_eq!(c.proxy.xml_limits.max_depth, 100);
        assert_eq!(c.proxy.xml_limits.max_name_length, 64);
        assert_eq!(c.proxy.xml_limits.max_text_length, Some(1024));
        let r = c.routes[0].xml_limits;
        assert_eq!(
            (
                r.max_depth,
                r.max_name_length,
                r.max_text_length,
                r.max_elements
            ),
            (50, 64, Some(512), Some(10))
        );
    }

    #[test]
    fn xml_limits_refuse_unknown_keys_and_bad_values() {
        let e = parse(&format!("[proxy.xml_limits]\nmax_entities = 1\n{ROUTE}")).unwrap_err();
        assert!(e.message.contains("max_entities"), "{e}");
        let e = parse(&format!(
            "{ROUTE}xml_limits = {{ max_attributes_per_element = 0 }}\n"
        ))
        .unwrap_err();
        assert_eq!(
            e.key, "route.orders.xml_limits.max_attributes_per_element",
            "{e}"
        );
        let e = parse(&format!(
            "[proxy.xml_limits]\nmax_text_length = \"lots\"\n{ROUTE}"
        ))
        .unwrap_err();
        assert_eq!(e.key, "proxy.xml_limits.max_text_length", "{e}");
    }
}

#[cfg(test)]
mod shipped_example {
    use super::*;

    #[test]
    fn the_kubernetes_configmap_holds_a_valid_configuration() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes/configmap.yaml");
        let yaml = std::fs::read_to_string(path).unwrap();
        let start = yaml.find("wssgate.toml: |").unwrap();
        // The block scalar: the lines indented under the key.
        let toml: String = yaml[start..]
            .lines()
            .skip(1)
            .take_while(|l| l.starts_with("    ") || l.is_empty())
            .map(|l| l.strip_prefix("    ").unwrap_or(l))
            .collect::<Vec<_>>()
            .join("\n");
        let config = Config::parse(&toml, Path::new("/etc/wssgate/config/wssgate.toml")).unwrap();
        assert!(config.keystore.watch);
        assert_eq!(config.keystore.dir, Path::new("/etc/wssgate/keystore"));
    }

    #[test]
    fn the_configuration_is_found_where_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let (local, installed) = (dir.path().join("local.toml"), dir.path().join("etc.toml"));
        let among = |explicit: Option<&Path>| {
            resolve_path_among(explicit, &[local.as_path(), installed.as_path()])
        };
        assert_eq!(among(None), local, "neither exists: the first is named");
        std::fs::write(&installed, "").unwrap();
        assert_eq!(among(None), installed);
        std::fs::write(&local, "").unwrap();
        assert_eq!(among(None), local, "the current directory first");
        assert_eq!(among(Some(Path::new("x.toml"))), Path::new("x.toml"));
    }

    #[test]
    fn the_shipped_example_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_PATH);
        let config = Config::load(&path).unwrap();
        assert_eq!(config.routes.len(), 1);
        assert_eq!(config.admin.tokens[0].role, Role::Admin);
    }
}
