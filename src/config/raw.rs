//! The configuration file as written: serde structs that mirror the TOML, unknown
//! keys refused, spans kept so that every error can name its line.

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub(super) proxy: RawProxy,
    #[serde(default)]
    pub(super) admin: RawAdmin,
    #[serde(default)]
    pub(super) keystore: RawKeystore,
    #[serde(default, rename = "route")]
    pub(super) routes: Vec<RawRoute>,
    #[serde(default)]
    pub(super) log: RawLog,
    #[serde(default)]
    pub(super) probe: RawProbe,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProbe {
    pub(super) listen: Option<Spanned<String>>,
    pub(super) header_timeout: Option<Spanned<String>>,
    pub(super) max_connections: Option<Spanned<i64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProxy {
    pub(super) listen: Option<Spanned<String>>,
    pub(super) max_body: Option<Spanned<String>>,
    pub(super) stream_threshold: Option<Spanned<String>>,
    pub(super) upstream_timeout: Option<Spanned<String>>,
    pub(super) connect_timeout: Option<Spanned<String>>,
    pub(super) shutdown_grace: Option<Spanned<String>>,
    pub(super) drain_delay: Option<Spanned<String>>,
    pub(super) body_idle_timeout: Option<Spanned<String>>,
    pub(super) header_timeout: Option<Spanned<String>>,
    pub(super) request_timeout: Option<Spanned<String>>,
    pub(super) max_connections: Option<Spanned<i64>>,
    pub(super) max_depth: Option<Spanned<i64>>,
    pub(super) xml_limits: Option<RawXmlLimits>,
}

/// `[proxy.xml_limits]`, or a route's `xml_limits = { ... }`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawXmlLimits {
    pub(super) max_depth: Option<Spanned<i64>>,
    pub(super) max_attributes_per_element: Option<Spanned<i64>>,
    pub(super) max_name_length: Option<Spanned<i64>>,
    pub(super) max_namespace_declarations: Option<Spanned<i64>>,
    pub(super) max_text_length: Option<Spanned<RawSize>>,
    pub(super) max_elements: Option<Spanned<i64>>,
}

/// A byte size written as a number of bytes or as text (`"64KiB"`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawSize {
    Bytes(i64),
    Text(String),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    pub(super) listen: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) tokens: Vec<RawToken>,
    pub(super) tls_cert: Option<Spanned<String>>,
    pub(super) tls_key: Option<Spanned<String>>,
    pub(super) url: Option<Spanned<String>>,
    pub(super) paused_routes_file: Option<Spanned<String>>,
    pub(super) allow_insecure_token_files: Option<bool>,
    pub(super) header_timeout: Option<Spanned<String>>,
    pub(super) request_timeout: Option<Spanned<String>>,
    pub(super) max_connections: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawToken {
    pub(super) name: Spanned<String>,
    pub(super) role: Spanned<String>,
    pub(super) file: Spanned<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawKeystore {
    pub(super) dir: Option<Spanned<String>>,
    pub(super) private_dir: Option<Spanned<String>>,
    pub(super) state_dir: Option<Spanned<String>>,
    pub(super) retention_days: Option<Spanned<i64>>,
    pub(super) min_rsa_bits: Option<Spanned<i64>>,
    pub(super) expiry_warning_days: Option<Spanned<i64>>,
    pub(super) min_days_left: Option<Spanned<i64>>,
    pub(super) watch: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    pub(super) name: Spanned<String>,
    pub(super) path: Spanned<String>,
    pub(super) upstream: Spanned<String>,
    /// Required on encrypt and pass-through routes; a decrypt route names its `ring`.
    pub(super) alias: Option<Spanned<String>>,
    pub(super) ring: Option<Spanned<String>>,
    pub(super) require_encryption: Option<bool>,
    pub(super) response: Option<Spanned<String>>,
    pub(super) response_ring: Option<Spanned<String>>,
    pub(super) profile: Option<Spanned<String>>,
    pub(super) key_identifier: Option<Spanned<String>>,
    pub(super) issuer_name_format: Option<Spanned<String>>,
    pub(super) data_encryption: Option<Spanned<String>>,
    pub(super) key_transport: Option<Spanned<String>>,
    pub(super) oaep_digest: Option<Spanned<String>>,
    pub(super) allow_legacy: Option<bool>,
    pub(super) must_understand: Option<bool>,
    pub(super) on_pause: Option<Spanned<String>>,
    pub(super) hold_timeout: Option<Spanned<String>>,
    pub(super) hold_max: Option<Spanned<i64>>,
    pub(super) already_encrypted: Option<Spanned<String>>,
    pub(super) mode: Option<Spanned<String>>,
    pub(super) xml_limits: Option<RawXmlLimits>,
    pub(super) ca_file: Option<Spanned<String>>,
    pub(super) client_cert: Option<Spanned<String>>,
    pub(super) client_key: Option<Spanned<String>>,
    pub(super) sign: Option<Spanned<bool>>,
    pub(super) signing_ring: Option<Spanned<String>>,
    pub(super) signature_algorithm: Option<Spanned<String>>,
    pub(super) digest_algorithm: Option<Spanned<String>>,
    pub(super) signature_key_identifier: Option<Spanned<String>>,
    pub(super) sign_parts: Option<Spanned<Vec<String>>>,
    pub(super) timestamp: Option<Spanned<bool>>,
    pub(super) timestamp_ttl: Option<Spanned<String>>,
    pub(super) order: Option<Spanned<String>>,
    pub(super) encrypt_signature: Option<Spanned<bool>>,
    pub(super) sign_max_body: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLog {
    pub(super) format: Option<Spanned<String>>,
}

// ---- stage two: validated values ----------------------------------------------
