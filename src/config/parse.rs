//! Checking the raw values: sizes, durations, addresses, and the route and XML
//! limit tables, each error naming the file, line and key.

use super::raw::*;
use super::*;

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

pub(super) struct Ctx<'a> {
    pub(super) file: &'a str,
    pub(super) source: &'a str,
    pub(super) base: &'a Path,
}

impl Ctx<'_> {
    pub(super) fn line_of(&self, offset: usize) -> usize {
        self.source[..offset.min(self.source.len())]
            .bytes()
            .filter(|b| *b == b'\n')
            .count()
            + 1
    }

    pub(super) fn err<T>(
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

    pub(super) fn path(&self, value: &str) -> PathBuf {
        let p = Path::new(value);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    pub(super) fn parsed<T>(
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

    pub(super) fn number(
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

    pub(super) fn named<T: std::str::FromStr>(
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

pub(super) fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    text.parse()
        .map_err(|_| format!("{text:?} is not an address like 127.0.0.1:8080"))
}

/// A listener's `header_timeout` (10s), `request_timeout` and `max_connections`
/// in table `table`, with the table's defaults for the last two.
pub(super) fn listener_limits(
    ctx: &Ctx,
    table: &str,
    [header, request]: [&Option<Spanned<String>>; 2],
    connections: &Option<Spanned<i64>>,
    (default_request, default_connections): (&str, Option<i64>),
) -> Result<ListenerLimits, ConfigError> {
    let mut durations = [Duration::ZERO; 2];
    for ((value, name, default), slot) in [
        (header, "header_timeout", "10s"),
        (request, "request_timeout", default_request),
    ]
    .into_iter()
    .zip(&mut durations)
    {
        let key = format!("{table}.{name}");
        *slot = ctx.parsed(value, &key, default, parse_duration)?;
        if slot.is_zero() {
            return ctx.err(
                value.as_ref().map(|v| v.span()),
                &key,
                "must be more than 0s: every request would time out",
            );
        }
    }
    let key = format!("{table}.max_connections");
    let max_connections = match (connections, default_connections) {
        (None, None) => None,
        (value, default) => {
            Some(ctx.number(value, &key, default.unwrap_or(0), 1, 1 << 24)? as usize)
        }
    };
    Ok(ListenerLimits {
        header_timeout: durations[0],
        request_timeout: durations[1],
        max_connections,
    })
}

/// Limits from `raw` over `base`, checked; `key` is where they are in the file.
pub(super) fn xml_limits(
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

pub(super) fn route(
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
        Some(("decrypt", _)) => RouteMode::Decrypt,
        Some((other, span)) => {
            return ctx.err(
                Some(span),
                &key("mode"),
                format!("{other:?} is not encrypt, pass-through or decrypt"),
            );
        }
    };
    let ring_name = |value: &Spanned<String>, k: &str| -> Result<String, ConfigError> {
        let name = value.get_ref().to_string();
        if is_valid_alias(&name) {
            Ok(name)
        } else {
            ctx.err(
                Some(value.span()),
                &key(k),
                format!("{name:?} is not a valid alias (letters, digits, . _ -; at most 128)"),
            )
        }
    };
    let ring = r.ring.as_ref().map(|v| ring_name(v, "ring")).transpose()?;
    let alias = match (mode, &r.alias, &ring) {
        (RouteMode::Decrypt, None, Some(ring)) => ring.clone(),
        (RouteMode::Decrypt, None, None) => {
            return ctx.err(
                r.mode.as_ref().map(|v| v.span()),
                &key("ring"),
                "a decrypt route needs ring = \"ALIAS\" (the key ring it decrypts with)",
            );
        }
        (RouteMode::Decrypt, Some(a), _) => {
            return ctx.err(
                Some(a.span()),
                &key("alias"),
                "a decrypt route encrypts for no certificate: name its key ring with ring = \"ALIAS\"",
            );
        }
        (_, None, _) => {
            return ctx.err(Some(r.name.span()), &key("alias"), "missing alias");
        }
        (_, Some(a), _) => ring_name(a, "alias")?,
    };
    if mode != RouteMode::Decrypt
        && let Some(v) = &r.ring
    {
        return ctx.err(
            Some(v.span()),
            &key("ring"),
            "ring is for mode = \"decrypt\" (an encrypt route decrypts answers with response_ring)",
        );
    }
    if mode != RouteMode::Decrypt && r.require_encryption.is_some() {
        return ctx.err(
            Some(r.name.span()),
            &key("require_encryption"),
            "require_encryption is for mode = \"decrypt\"",
        );
    }
    let response = match r
        .response
        .as_ref()
        .map(|v| (v.get_ref().as_str(), v.span()))
    {
        None | Some(("pass", _)) => ResponseMode::Pass,
        Some(("decrypt", span)) if mode == RouteMode::Decrypt => {
            return ctx.err(
                Some(span),
                &key("response"),
                "a decrypt route passes answers unchanged",
            );
        }
        Some(("decrypt", _)) => ResponseMode::Decrypt,
        Some((other, span)) => {
            return ctx.err(
                Some(span),
                &key("response"),
                format!("{other:?} is not pass or decrypt"),
            );
        }
    };
    let response_ring = r
        .response_ring
        .as_ref()
        .map(|v| ring_name(v, "response_ring"))
        .transpose()?;
    match (response, &response_ring) {
        (ResponseMode::Decrypt, None) => {
            return ctx.err(
                r.response.as_ref().map(|v| v.span()),
                &key("response_ring"),
                "response = \"decrypt\" needs response_ring = \"ALIAS\"",
            );
        }
        (ResponseMode::Pass, Some(_)) => {
            return ctx.err(
                r.response_ring.as_ref().map(|v| v.span()),
                &key("response_ring"),
                "response_ring is for response = \"decrypt\"",
            );
        }
        _ => {}
    }
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
    let allow_legacy = r.allow_legacy.unwrap_or(false);
    let max_body = global_limits.max_bytes.unwrap_or(u64::MAX);
    let sign = super::sign::signing(ctx, r, &key, (profile, mode, allow_legacy, max_body))?;
    Ok(RouteConfig {
        sign,
        upstream,
        alias,
        ring,
        require_encryption: r.require_encryption.unwrap_or(true),
        allow_legacy: r.allow_legacy.unwrap_or(false),
        response,
        response_ring,
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
