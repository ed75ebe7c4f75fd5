//! The key ring operations of [`Control`]: add a key and make it live, and the
//! views that join what is on disk with what the running snapshot counted.
//! Same lock discipline as the certificate operations (module top).

use std::time::SystemTime;

use bytes::Bytes;

use super::{Actor, Control, ControlError, blocking};
use crate::keyring::{KeyView, KeyringView};
use crate::keystore::{Keystore, RingAddOutcome};
use crate::state::{ReloadTrigger, Snapshot};

/// A key made live: on disk, the previous one archived, audited, and in the
/// snapshot (when a route uses the ring).
#[derive(Debug, Clone)]
pub struct KeyLive {
    pub outcome: RingAddOutcome,
    /// The snapshot generation that carries it.
    pub generation: u64,
}

impl Control {
    /// Add a key (PEM private key and certificate) to `ring` and make it active:
    /// when this returns `Ok`, the next message is decrypted with the new key as
    /// well as the retained ones.
    pub async fn keyring_add(
        &self,
        ring: &str,
        pem: Bytes,
        actor: Actor<'_>,
    ) -> Result<KeyLive, ControlError> {
        let _changes = self.changes.lock().await;
        let config = self.shared.load().config.clone();
        let store = Keystore::new(config.keystore.clone());
        let policy = crate::keystore::policy(&config.keystore, false);
        let (ring_owned, actor_owned) = (ring.to_string(), actor.0.to_string());
        let outcome = blocking(move || {
            let usable = |entry: &_| crate::state::usable_for_signing(&config, &ring_owned, entry);
            store.ring_add(
                &ring_owned,
                &pem,
                &actor_owned,
                &policy,
                &usable,
                SystemTime::now(),
            )
        })
        .await?
        .inspect_err(|e| {
            tracing::warn!(ring = %ring, by = %actor.0, error = %e, "key refused; the key ring stays as it was");
        })?;
        let shared = self.shared.clone();
        let reloaded = blocking(move || shared.reload(ReloadTrigger::Exchange))
            .await?
            .map_err(|reason| ControlError::KeyNotLive {
                outcome: Box::new(outcome.clone()),
                reason,
            })?;
        tracing::info!(ring = %ring, by = %actor.0, serial = %outcome.current.serial, sha256 = %outcome.current.sha256, generation = reloaded.generation, "key added to the key ring and live");
        Ok(KeyLive {
            outcome,
            generation: reloaded.generation,
        })
    }

    /// Keep the active key of a ring that changed on disk without an add: it
    /// is archived from `before` (the only copy left) and the snapshot reloaded
    /// to hold it as retained. Caller holds `changes`. Between the two reloads
    /// (milliseconds) a message for the replaced key would be refused.
    pub(super) async fn adopt_ring_changes(&self, before: &Snapshot, after: &Snapshot) {
        let mut adopted = false;
        for (name, ring) in &before.rings {
            let (Some(now_ring), Some(previous)) = (after.rings.get(name), ring.keys.first())
            else {
                continue;
            };
            if now_ring.key(&previous.key.summary.sha256).is_some() {
                continue;
            }
            let store = Keystore::new(after.config.keystore.clone());
            let (name_owned, ring_owned) = (name.clone(), ring.clone());
            let result = blocking(move || {
                ring_owned.keys.first().map_or(Ok(false), |k| {
                    store.ring_adopt(&name_owned, &k.key, "file", SystemTime::now())
                })
            })
            .await;
            match result {
                Ok(Ok(true)) => {
                    adopted = true;
                    tracing::info!(ring = %name, serial = %previous.key.summary.serial, "key replaced on disk: the previous one is retained");
                }
                Ok(Ok(false)) => {}
                Ok(Err(e)) => {
                    tracing::error!(ring = %name, error = %e, "key replaced on disk but the previous one could not be retained")
                }
                Err(e) => tracing::error!(ring = %name, error = %e, "key archive not written"),
            }
        }
        if adopted {
            let shared = self.shared.clone();
            if let Ok(Err(e)) = blocking(move || shared.reload(ReloadTrigger::FileChange)).await {
                tracing::error!(error = %e, "the retained key could not be loaded");
            }
        }
    }

    /// One ring: its usable keys with their use (a read: no lock).
    pub async fn keyring(&self, ring: &str) -> Result<KeyringView, ControlError> {
        let snapshot = self.shared.load();
        let store = Keystore::new(snapshot.config.keystore.clone());
        let name = ring.to_string();
        let keys = blocking(move || store.ring_keys(&name, SystemTime::now())).await??;
        let live = snapshot.rings.get(ring);
        let routes = snapshot
            .config
            .routes
            .iter()
            .filter(|r| r.ring.as_deref() == Some(ring) || r.response_ring.as_deref() == Some(ring))
            .map(|r| r.name.clone())
            .collect();
        let signing_routes = snapshot
            .config
            .routes
            .iter()
            .filter(|r| r.sign.as_ref().is_some_and(|s| s.ring == ring))
            .map(|r| r.name.clone())
            .collect();
        let views: Vec<KeyView> = keys
            .iter()
            .map(|k| KeyView::of(k, live.and_then(|l| l.key(&k.summary.sha256))))
            .collect();
        let is_live = live.is_some_and(|l| {
            l.fingerprints()
                == keys
                    .iter()
                    .map(|k| k.summary.sha256.as_str())
                    .collect::<Vec<_>>()
        });
        Ok(KeyringView {
            ring: ring.to_string(),
            routes,
            signing_routes,
            live: is_live,
            keys: views,
        })
    }

    /// Every ring in `private_dir` and every ring a route names.
    pub async fn keyrings(&self) -> Result<Vec<KeyringView>, ControlError> {
        let snapshot = self.shared.load();
        let store = Keystore::new(snapshot.config.keystore.clone());
        let mut names = blocking(move || store.rings()).await??;
        for name in snapshot.config.rings() {
            if !names.iter().any(|n| n == name) {
                names.push(name.to_string());
            }
        }
        names.sort();
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            out.push(self.keyring(&name).await?);
        }
        Ok(out)
    }
}
