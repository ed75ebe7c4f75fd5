//! The runtime state a request uses: configuration, routes and the parsed
//! certificate of each route's alias, bundled in one immutable [`Snapshot`].
//!
//! A snapshot is built aside from the current one and validated completely before
//! anything uses it, so a reload that fails changes nothing. The daemon publishes
//! snapshots through `arc_swap`; a request loads one and keeps it to the end, so a
//! message is never encrypted half with one certificate and half with another.
//! Pause state is not part of the snapshot: it outlives reloads.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use crate::config::{Config, RouteConfig, RouteMode};
use crate::keyring::Ring;
use crate::keystore::{ExpiryWarning, Keystore, KeystoreError};
use crate::wss::Recipient;
use crate::wss::sign::SigningKey;

/// Why a snapshot could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("route {route:?}: {source}")]
    Route {
        route: String,
        source: KeystoreError,
    },
    #[error("key ring {ring:?}: {source}")]
    Ring { ring: String, source: KeystoreError },
    #[error("route {route:?}: signing_ring {ring:?}: {reason}")]
    SigningKey {
        route: String,
        ring: String,
        reason: String,
    },
    #[error(transparent)]
    Keystore(#[from] KeystoreError),
    #[error("keystore.state_dir {0} is not a directory")]
    StateDir(String),
    #[error("admin token {name:?} ({file}): {reason}")]
    Token {
        name: String,
        file: String,
        reason: String,
    },
}

/// An admin API token as read from its file.
#[derive(Clone)]
pub struct AdminToken {
    /// The actor in the audit log.
    pub name: String,
    pub role: crate::config::Role,
    /// SHA-256 of the token: compared in constant time, and the token itself is
    /// not kept in memory longer than needed.
    pub digest: [u8; 32],
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminToken")
            .field("name", &self.name)
            .field("role", &self.role)
            .finish()
    }
}

/// Whether anyone but this process's user and group may read a token file (what
/// `check` warns about and `serve` refuses unless `admin.allow_insecure_token_files`).
/// Group access is tolerated for the daemon's own group only: a Kubernetes Secret
/// is mounted group-readable for the pod's `fsGroup`, which is the daemon's group.
pub fn token_file_exposed(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let mode = meta.permissions().mode();
    let own_group = meta.gid() == rustix::process::getegid().as_raw();
    mode & 0o007 != 0 || (mode & 0o070 != 0 && !own_group)
}

/// Largest token file read (a token is a line of text).
const MAX_TOKEN_FILE: u64 = 4096;

/// SHA-256, as tokens are compared.
pub fn token_digest(token: &str) -> [u8; 32] {
    openssl::sha::sha256(token.trim().as_bytes())
}

/// A route with the certificate it encrypts for and the key rings it decrypts with.
#[derive(Debug, Clone)]
pub struct Route {
    pub config: RouteConfig,
    /// The certificate of `alias` (none on a decrypt route).
    pub recipient: Option<Arc<Recipient>>,
    /// A decrypt route's `ring`.
    pub ring: Option<Arc<Ring>>,
    /// `response = "decrypt"`: the `response_ring`.
    pub response_ring: Option<Arc<Ring>>,
    /// `sign = true`: the active key of `signing_ring`, checked against its
    /// certificate when the snapshot was built, so that a request signs with the
    /// key of the same snapshot as the certificate it encrypts for.
    pub signing_key: Option<Arc<SigningKey>>,
    /// `sign = true`: the `signing_ring` itself, whose active key's resolved
    /// counter each signature increments.
    pub signing_ring: Option<Arc<Ring>>,
    /// What the access line names, made once per snapshot and shared by its
    /// requests instead of copied into each.
    pub labels: RouteLabels,
}

/// A route's fields in the access line.
#[derive(Debug, Clone)]
pub struct RouteLabels {
    pub name: Arc<str>,
    pub alias: Arc<str>,
    pub algorithms: Arc<str>,
    /// The SHA-256 of the certificate encrypted for (none on a decrypt route).
    pub certificate_sha256: Option<Arc<str>>,
}

/// The signing key of a `sign = true` route: its ring's active key, refused when
/// it cannot sign as the route's plan says.
fn signing_key(
    route: &str,
    sign: &crate::config::SignConfig,
    rings: &BTreeMap<String, Arc<Ring>>,
) -> Result<SigningKey, SnapshotError> {
    let fail = |reason: String| SnapshotError::SigningKey {
        route: route.to_string(),
        ring: sign.ring.clone(),
        reason,
    };
    let active = rings
        .get(&sign.ring)
        .and_then(|r| r.keys.first())
        .ok_or_else(|| fail("the ring has no active key".into()))?;
    signing_key_for(sign, &active.key.entry).map_err(fail)
}

/// `entry` as the signing key of a route that signs as `sign` says, or why it
/// cannot be one.
fn signing_key_for(
    sign: &crate::config::SignConfig,
    entry: &crate::wss::keys::PrivateKeyEntry,
) -> Result<SigningKey, String> {
    let key = SigningKey::from_entry(entry).map_err(|e| e.to_string())?;
    if sign.plan.key_identifier == crate::wss::KeyIdentifier::Ski && key.info().ski.is_none() {
        return Err(
            "its certificate has no SubjectKeyIdentifier, which signature_key_identifier = \"ski\" needs".into(),
        );
    }
    Ok(key)
}

/// Whether `entry`, added to `ring`, could sign for every route of `config`
/// that signs with that ring: checked before the key is written, so that a key
/// the next snapshot would refuse never becomes the ring's active key (the
/// reload would fail, and so would every later one and the next start).
pub fn usable_for_signing(
    config: &Config,
    ring: &str,
    entry: &crate::wss::keys::PrivateKeyEntry,
) -> Result<(), String> {
    for route in &config.routes {
        if let Some(sign) = route.sign.as_ref().filter(|s| s.ring == ring) {
            signing_key_for(sign, entry)
                .map_err(|reason| format!("route {:?} signs with it: {reason}", route.name))?;
        }
    }
    Ok(())
}

/// Everything a request needs, immutable once built.
#[derive(Debug)]
pub struct Snapshot {
    pub config: Arc<Config>,
    /// Routes in configuration order; shared, so a request keeps its route
    /// without copying its configuration.
    pub routes: Vec<Arc<Route>>,
    /// Active certificate per alias in use.
    pub aliases: BTreeMap<String, Arc<Recipient>>,
    /// The key rings the routes use, with their usable keys.
    pub rings: BTreeMap<String, Arc<Ring>>,
    /// Counts successful loads, starting at 1.
    pub generation: u64,
    pub loaded_at: SystemTime,
    /// Admin API tokens, read from their files at each load.
    pub admin_tokens: Vec<AdminToken>,
}

impl Snapshot {
    /// Build and validate a snapshot: every route's alias must hold a certificate
    /// that passes the checks the route needs.
    pub fn build(
        config: Arc<Config>,
        generation: u64,
        now: SystemTime,
    ) -> Result<Snapshot, SnapshotError> {
        let keystore = Keystore::new(config.keystore.clone());
        let mut aliases: BTreeMap<String, Arc<Recipient>> = BTreeMap::new();
        let mut rings: BTreeMap<String, Arc<Ring>> = BTreeMap::new();
        for name in config.rings() {
            let keys = keystore
                .ring_keys(name, now)
                .map_err(|source| SnapshotError::Ring {
                    ring: name.to_string(),
                    source,
                })?;
            rings.insert(name.to_string(), Arc::new(Ring::new(name, keys)));
        }
        let ring = |name: &Option<String>| name.as_ref().and_then(|n| rings.get(n)).cloned();
        let mut routes = Vec::with_capacity(config.routes.len());
        for route in &config.routes {
            let recipient = match aliases.get(&route.alias) {
                _ if route.mode == RouteMode::Decrypt => None,
                Some(r) => Some(r.clone()),
                None => {
                    let policy = config.certificate_policy(&route.alias);
                    let r = keystore.active(&route.alias, &policy).map_err(|source| {
                        SnapshotError::Route {
                            route: route.name.clone(),
                            source,
                        }
                    })?;
                    aliases.insert(route.alias.clone(), r.clone());
                    Some(r)
                }
            };
            let signing_key = match &route.sign {
                None => None,
                Some(sign) => Some(Arc::new(signing_key(&route.name, sign, &rings)?)),
            };
            let labels = RouteLabels {
                name: route.name.as_str().into(),
                alias: route.alias.as_str().into(),
                algorithms: route.algorithms.to_string().into(),
                certificate_sha256: recipient.as_ref().map(|r| r.info().sha256.as_str().into()),
            };
            routes.push(Arc::new(Route {
                labels,
                config: route.clone(),
                recipient,
                ring: ring(&route.ring),
                response_ring: ring(&route.response_ring),
                signing_ring: route
                    .sign
                    .as_ref()
                    .and_then(|s| rings.get(&s.ring))
                    .cloned(),
                signing_key,
            }));
        }
        let state_dir = &config.keystore.state_dir;
        if state_dir.exists() && !state_dir.is_dir() {
            return Err(SnapshotError::StateDir(state_dir.display().to_string()));
        }
        let mut admin_tokens = Vec::new();
        for t in &config.admin.tokens {
            let fail = |reason: String| SnapshotError::Token {
                name: t.name.clone(),
                file: t.file.display().to_string(),
                reason,
            };
            // Opened without blocking and checked on the open file (not by name,
            // which could be swapped in between): a FIFO or device is refused
            // instead of blocking the load for ever, and a token is small.
            let file = {
                use std::os::unix::fs::OpenOptionsExt;
                std::fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NONBLOCK)
                    .open(&t.file)
                    .map_err(|e| fail(e.to_string()))?
            };
            let meta = file.metadata().map_err(|e| fail(e.to_string()))?;
            if !meta.is_file() {
                return Err(fail("not a regular file".into()));
            }
            if token_file_exposed(&meta) && !config.admin.allow_insecure_token_files {
                return Err(fail(
                    "readable by group or others: chmod 600 it (or set admin.allow_insecure_token_files = true)"
                        .into(),
                ));
            }
            let mut text = String::new();
            {
                use std::io::Read;
                file.take(MAX_TOKEN_FILE)
                    .read_to_string(&mut text)
                    .map_err(|e| fail(e.to_string()))?;
            }
            let token = text.trim();
            if token.len() < 16 {
                return Err(fail("a token must have at least 16 characters".into()));
            }
            admin_tokens.push(AdminToken {
                name: t.name.clone(),
                role: t.role,
                digest: token_digest(token),
            });
        }
        Ok(Snapshot {
            admin_tokens,
            config,
            routes,
            aliases,
            rings,
            generation,
            loaded_at: now,
        })
    }

    /// Resolve the metric handles of every ring key (once, before publishing).
    fn bind_metrics(&self, metrics: &crate::telemetry::Metrics) {
        for ring in self.rings.values() {
            ring.bind_metrics(metrics);
        }
    }

    /// Certificates in use that expire within `keystore.expiry_warning_days` of `now`.
    pub fn expiry_warnings(&self, now: SystemTime) -> Vec<ExpiryWarning> {
        let within = i64::from(self.config.keystore.expiry_warning_days);
        self.aliases
            .iter()
            .map(|(alias, r)| ExpiryWarning {
                alias: alias.clone(),
                serial: r.info().serial.clone(),
                days_left: r.info().days_left(now),
            })
            .filter(|w| w.days_left <= within)
            .collect()
    }

    /// Log certificates in use that expire soon, at rising severity: within the
    /// warning period (default 30 days) a warning, within 7 days an error, within
    /// a day an error saying so. Days are counted from `now`, not from the load.
    pub fn log_expiry(&self, now: SystemTime) {
        for w in self.expiry_warnings(now) {
            let (alias, serial, days_left) = (&w.alias, &w.serial, w.days_left);
            if days_left <= 1 {
                tracing::error!(alias = %alias, serial = %serial, days_left, "certificate expires within a day: exchange it now");
            } else if days_left <= 7 {
                tracing::error!(alias = %alias, serial = %serial, days_left, "certificate expires within a week");
            } else {
                tracing::warn!(alias = %alias, serial = %serial, days_left, "certificate expires soon");
            }
        }
    }

    /// The route whose path is the longest prefix of `path`.
    pub fn route_for(&self, path: &str) -> Option<&Arc<Route>> {
        self.routes
            .iter()
            .filter(|r| path_matches(&r.config.path, path))
            .max_by_key(|r| r.config.path.len())
    }

    pub fn route(&self, name: &str) -> Option<&Route> {
        self.routes
            .iter()
            .find(|r| r.config.name == name)
            .map(|r| &**r)
    }
}

/// A prefix matches whole path segments: `/orders` matches `/orders` and
/// `/orders/x`, not `/ordersx`.
fn path_matches(prefix: &str, path: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => prefix.ends_with('/') || rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_match_whole_segments() {
        assert!(path_matches("/orders", "/orders"));
        assert!(path_matches("/orders", "/orders/v2"));
        assert!(!path_matches("/orders", "/ordersx"));
        assert!(path_matches("/", "/anything"));
        assert!(path_matches("/a/", "/a/b"));
    }
}

/// What started a reload (for logs and metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadTrigger {
    Signal,
    Api,
    Exchange,
    FileChange,
}

impl ReloadTrigger {
    pub const ALL: [ReloadTrigger; 4] = [
        ReloadTrigger::Signal,
        ReloadTrigger::Api,
        ReloadTrigger::Exchange,
        ReloadTrigger::FileChange,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ReloadTrigger::Signal => "signal",
            ReloadTrigger::Api => "api",
            ReloadTrigger::Exchange => "exchange",
            ReloadTrigger::FileChange => "file",
        }
    }
}

/// Why a reload was rejected (the running snapshot stays).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("{0}")]
    Snapshot(#[from] SnapshotError),
}

/// What a successful reload changed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReloadOutcome {
    pub generation: u64,
    /// Human-readable changes: routes added, removed or changed; certificates exchanged.
    pub changed: Vec<String>,
}

/// The published snapshot and the one code path that replaces it.
pub struct Shared {
    current: arc_swap::ArcSwap<Snapshot>,
    config_path: std::path::PathBuf,
    /// Serializes reloads so that two never interleave build and swap. Reloads are
    /// rare and never on the request path, which only loads `current`.
    reload_lock: std::sync::Mutex<()>,
    /// Prometheus metrics of the proxy, the admin API and reloads.
    pub metrics: crate::telemetry::Metrics,
}

impl Shared {
    pub fn new(snapshot: Snapshot, config_path: std::path::PathBuf) -> Shared {
        let metrics = crate::telemetry::Metrics::default();
        snapshot.bind_metrics(&metrics);
        Shared {
            current: arc_swap::ArcSwap::from_pointee(snapshot),
            config_path,
            reload_lock: std::sync::Mutex::new(()),
            metrics,
        }
    }

    /// Reloads since start that succeeded and that were rejected, whatever
    /// triggered them (read from the `wssgate_reloads_total` counters).
    pub fn reload_counts(&self) -> (u64, u64) {
        let count = |result: &str| -> u64 {
            ReloadTrigger::ALL
                .iter()
                .filter_map(|t| {
                    self.metrics
                        .reloads
                        .get(&vec![
                            ("trigger", t.name().to_string()),
                            ("result", result.to_string()),
                        ])
                        .map(|c| c.get())
                })
                .sum()
        };
        (count("ok"), count("failed"))
    }

    /// The current snapshot; a request calls this once and keeps the result.
    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Build a new snapshot from the configuration file and keystore, validate it,
    /// and publish it. On error nothing changes. Blocking (reads files).
    pub fn reload(&self, trigger: ReloadTrigger) -> Result<ReloadOutcome, ReloadError> {
        let _guard = self.reload_lock.lock().unwrap_or_else(|p| p.into_inner());
        let old = self.load();
        let result = Config::load(&self.config_path)
            .map_err(ReloadError::from)
            .and_then(|config| {
                Snapshot::build(Arc::new(config), old.generation + 1, SystemTime::now())
                    .map_err(ReloadError::from)
            });
        match result {
            // A file event that changed nothing (an editor's save of the same
            // text, a touch) is no new generation: nothing to publish or count.
            Ok(new) if trigger == ReloadTrigger::FileChange && same_content(&old, &new) => {
                tracing::debug!(
                    generation = old.generation,
                    "files changed on disk but the configuration did not"
                );
                Ok(ReloadOutcome {
                    generation: old.generation,
                    changed: Vec::new(),
                })
            }
            Ok(new) => {
                let changed = changes(&old, &new);
                let generation = new.generation;
                new.log_expiry(SystemTime::now());
                for (name, ring) in &old.rings {
                    ring.unbind_gone(new.rings.get(name).map(|r| &**r), &self.metrics);
                }
                new.bind_metrics(&self.metrics);
                self.current.store(Arc::new(new));
                self.metrics
                    .reloads
                    .get_or_create(&vec![
                        ("trigger", trigger.name().to_string()),
                        ("result", "ok".to_string()),
                    ])
                    .inc();
                tracing::info!(trigger = trigger.name(), generation, changed = %changed.join("; "), "reloaded");
                Ok(ReloadOutcome {
                    generation,
                    changed,
                })
            }
            Err(e) => {
                self.metrics
                    .reloads
                    .get_or_create(&vec![
                        ("trigger", trigger.name().to_string()),
                        ("result", "failed".to_string()),
                    ])
                    .inc();
                tracing::error!(trigger = trigger.name(), error = %e, generation = old.generation, "reload rejected; the running configuration stays");
                Err(e)
            }
        }
    }
}

/// Whether two snapshots would serve alike: the same configuration, the same
/// certificate per alias, the same admin tokens.
fn same_content(old: &Snapshot, new: &Snapshot) -> bool {
    old.config == new.config
        && old.aliases.len() == new.aliases.len()
        && old.aliases.iter().all(|(alias, cert)| {
            new.aliases
                .get(alias)
                .is_some_and(|n| n.info().sha256 == cert.info().sha256)
        })
        && old.rings.len() == new.rings.len()
        && old.rings.iter().all(|(name, ring)| {
            new.rings
                .get(name)
                .is_some_and(|n| n.fingerprints() == ring.fingerprints())
        })
        && old.admin_tokens.len() == new.admin_tokens.len()
        && old
            .admin_tokens
            .iter()
            .zip(&new.admin_tokens)
            .all(|(a, b)| a.name == b.name && a.role == b.role && a.digest == b.digest)
}

/// What differs between two snapshots, in words.
fn changes(old: &Snapshot, new: &Snapshot) -> Vec<String> {
    let mut out = Vec::new();
    for r in &new.routes {
        match old.route(&r.config.name) {
            None => out.push(format!("route {} added", r.config.name)),
            Some(o) if o.config != r.config => out.push(format!("route {} changed", r.config.name)),
            _ => {}
        }
    }
    for r in &old.routes {
        if new.route(&r.config.name).is_none() {
            out.push(format!("route {} removed", r.config.name));
        }
    }
    for (alias, cert) in &new.aliases {
        match old.aliases.get(alias) {
            Some(o) if o.info().sha256 != cert.info().sha256 => out.push(format!(
                "alias {alias}: certificate serial {} replaced by serial {}",
                o.info().serial,
                cert.info().serial
            )),
            _ => {}
        }
    }
    for (name, ring) in &new.rings {
        let before = old
            .rings
            .get(name)
            .map(|r| r.fingerprints())
            .unwrap_or_default();
        for key in &ring.keys {
            if !before.contains(&key.key.summary.sha256.as_str()) {
                out.push(format!(
                    "key ring {name}: key serial {} added",
                    key.key.summary.serial
                ));
            }
        }
        if let Some(o) = old.rings.get(name) {
            for key in &o.keys {
                if !ring
                    .fingerprints()
                    .contains(&key.key.summary.sha256.as_str())
                {
                    out.push(format!(
                        "key ring {name}: key serial {} gone",
                        key.key.summary.serial
                    ));
                }
            }
        }
    }
    if old.config.proxy != new.config.proxy {
        out.push("proxy settings changed (listen address changes need a restart)".into());
    }
    out
}
