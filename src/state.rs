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

use crate::config::{Config, RouteConfig};
use crate::keystore::{self, ExpiryWarning, Keystore, KeystoreError};
use crate::wss::{KeyIdentifier, Recipient};

/// Why a snapshot could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("route {route:?}: {source}")]
    Route {
        route: String,
        source: KeystoreError,
    },
    #[error(transparent)]
    Keystore(#[from] KeystoreError),
}

/// A route with the certificate it encrypts for.
#[derive(Debug, Clone)]
pub struct Route {
    pub config: RouteConfig,
    pub recipient: Arc<Recipient>,
}

/// Everything a request needs, immutable once built.
#[derive(Debug)]
pub struct Snapshot {
    pub config: Arc<Config>,
    /// Routes in configuration order.
    pub routes: Vec<Route>,
    /// Active certificate per alias in use.
    pub aliases: BTreeMap<String, Arc<Recipient>>,
    /// Counts successful loads, starting at 1.
    pub generation: u64,
    pub loaded_at: SystemTime,
    pub warnings: Vec<ExpiryWarning>,
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
        let mut routes = Vec::with_capacity(config.routes.len());
        for route in &config.routes {
            let recipient = match aliases.get(&route.alias) {
                Some(r) => r.clone(),
                None => {
                    let needs_ski = config
                        .routes_for_alias(&route.alias)
                        .any(|r| r.algorithms.key_identifier == KeyIdentifier::Ski);
                    let policy = keystore::policy(&config.keystore, needs_ski);
                    let r = keystore.active(&route.alias, &policy).map_err(|source| {
                        SnapshotError::Route {
                            route: route.name.clone(),
                            source,
                        }
                    })?;
                    aliases.insert(route.alias.clone(), r.clone());
                    r
                }
            };
            routes.push(Route {
                config: route.clone(),
                recipient,
            });
        }
        let in_use: Vec<(String, Arc<Recipient>)> = aliases
            .iter()
            .map(|(a, r)| (a.clone(), r.clone()))
            .collect();
        let warnings = keystore.expiry_warnings(&in_use, now);
        Ok(Snapshot {
            config,
            routes,
            aliases,
            generation,
            loaded_at: now,
            warnings,
        })
    }

    /// The route whose path is the longest prefix of `path`.
    pub fn route_for(&self, path: &str) -> Option<&Route> {
        self.routes
            .iter()
            .filter(|r| path_matches(&r.config.path, path))
            .max_by_key(|r| r.config.path.len())
    }

    pub fn route(&self, name: &str) -> Option<&Route> {
        self.routes.iter().find(|r| r.config.name == name)
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
