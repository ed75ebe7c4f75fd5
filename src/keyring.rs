//! The key rings as the running daemon uses them: each ring's usable keys
//! (active first, then retained ones until their `retain_until`), and per key
//! the handles of its metrics, resolved once when the snapshot is published so
//! that a decryption or a signature only increments a counter and stores a
//! time — no label is built on the request path.
//!
//! Storage (files, archive, audit) is [`crate::keystore`]'s; this module only
//! holds what a snapshot loaded.

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

use crate::keystore::{KeyState, RingKey};
use crate::telemetry::{Labels, Metrics};
use crate::wss::keys::PrivateKeyEntry;

/// One key ring of a snapshot.
#[derive(Debug)]
pub struct Ring {
    pub name: String,
    /// Active first, then retained keys, newest retirement first.
    pub keys: Vec<LiveKey>,
}

/// A ring key with its usage.
#[derive(Debug)]
pub struct LiveKey {
    pub key: RingKey,
    /// Set once when the snapshot is published ([`Ring::bind_metrics`]); the
    /// counters live in the metrics registry, so they outlive snapshots.
    usage: OnceLock<Usage>,
}

#[derive(Debug)]
struct Usage {
    decryptions: Counter,
    /// Messages a signing route signed with this key (only the active key signs).
    signatures: Counter,
    /// The last decryption or signature.
    last_used: Gauge,
}

fn unix_seconds(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl LiveKey {
    /// Messages this key decrypted since the daemon started.
    pub fn decryptions(&self) -> u64 {
        self.usage.get().map_or(0, |u| u.decryptions.get())
    }

    /// Messages this key signed since the daemon started.
    pub fn signatures(&self) -> u64 {
        self.usage.get().map_or(0, |u| u.signatures.get())
    }

    /// When it last decrypted or signed a message, if it has.
    pub fn last_used(&self) -> Option<SystemTime> {
        let secs = self.usage.get().map_or(0, |u| u.last_used.get());
        (secs > 0).then(|| UNIX_EPOCH + std::time::Duration::from_secs(secs as u64))
    }

    pub fn state(&self) -> KeyState {
        self.key.state
    }

    /// Whether the key may still decrypt at `now`.
    pub fn usable_at(&self, now: SystemTime) -> bool {
        self.key.retain_until.is_none_or(|until| now < until)
    }
}

impl Ring {
    pub fn new(name: &str, keys: Vec<RingKey>) -> Ring {
        Ring {
            name: name.to_string(),
            keys: keys
                .into_iter()
                .map(|key| LiveKey {
                    key,
                    usage: OnceLock::new(),
                })
                .collect(),
        }
    }

    /// The keys usable at `now`, in the order they are tried, with their index
    /// in [`Ring::keys`]: a key past its `retain_until` is gone at that moment,
    /// not at the next reload.
    pub fn usable(&self, now: SystemTime) -> (Vec<usize>, Vec<&PrivateKeyEntry>) {
        self.keys
            .iter()
            .enumerate()
            .filter(|(_, k)| k.usable_at(now))
            .map(|(i, k)| (i, &k.key.entry))
            .unzip()
    }

    /// Count a decryption by key `index` at `now`.
    pub fn record_use(&self, index: usize, now: SystemTime) {
        if let Some(usage) = self.keys.get(index).and_then(|k| k.usage.get()) {
            usage.decryptions.inc();
            usage.last_used.set(unix_seconds(now));
        }
    }

    /// Count a signature by the active key at `now`.
    pub fn record_signature(&self, now: SystemTime) {
        if let Some(usage) = self.keys.first().and_then(|k| k.usage.get()) {
            usage.signatures.inc();
            usage.last_used.set(unix_seconds(now));
        }
    }

    fn labels(&self, key: &LiveKey) -> Labels {
        vec![
            ("ring", self.name.clone()),
            ("serial", key.key.summary.serial.clone()),
        ]
    }

    /// Resolve each key's metric handles, and publish its expiry.
    pub fn bind_metrics(&self, metrics: &Metrics) {
        for key in &self.keys {
            let labels = self.labels(key);
            let not_after = key
                .key
                .entry
                .info
                .as_ref()
                .map_or(0, |i| unix_seconds(i.not_after));
            metrics
                .keyring_not_after
                .get_or_create(&labels)
                .set(not_after);
            let _ = key.usage.set(Usage {
                decryptions: metrics.decryptions.get_or_create(&labels).clone(),
                signatures: metrics.signatures.get_or_create(&labels).clone(),
                last_used: metrics.keyring_last_used.get_or_create(&labels).clone(),
            });
        }
    }

    /// Remove the metrics of keys that `next` no longer holds.
    pub fn unbind_gone(&self, next: Option<&Ring>, metrics: &Metrics) {
        for key in &self.keys {
            let kept = next.is_some_and(|n| {
                n.keys
                    .iter()
                    .any(|k| k.key.summary.sha256 == key.key.summary.sha256)
            });
            if !kept {
                let labels = self.labels(key);
                metrics.keyring_not_after.remove(&labels);
                metrics.decryptions.remove(&labels);
                metrics.signatures.remove(&labels);
                metrics.keyring_last_used.remove(&labels);
            }
        }
    }

    /// The SHA-256 of each key, in order (to compare snapshots).
    pub fn fingerprints(&self) -> Vec<&str> {
        self.keys
            .iter()
            .map(|k| k.key.summary.sha256.as_str())
            .collect()
    }
}

/// One key of a ring as `GET /v1/keyring/{alias}` and `wssgate keyring show`
/// report it: its certificate's facts and its use, never the key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KeyView {
    /// Decimal.
    pub serial: String,
    pub sha256: String,
    /// RFC 3339.
    pub not_after: String,
    pub state: KeyState,
    /// When a retained key stops being used (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retain_until: Option<String>,
    /// Messages it decrypted since the daemon started.
    pub decryptions: u64,
    /// Messages it signed since the daemon started (a signing route signs
    /// with the active key only).
    #[serde(default)]
    pub signatures: u64,
    /// When it last decrypted or signed one (RFC 3339), if it has.
    #[serde(default)]
    pub last_used: Option<String>,
}

/// A ring: its usable keys, active first, and the routes that use it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KeyringView {
    pub ring: String,
    /// Routes that decrypt requests (`ring`) or answers (`response_ring`) with it.
    pub routes: Vec<String>,
    /// Routes that sign requests with its active key (`signing_ring`).
    #[serde(default)]
    pub signing_routes: Vec<String>,
    /// Whether the running snapshot holds the ring (false: no route uses it,
    /// or it changed on disk since the last reload; usage is then not counted).
    pub live: bool,
    pub keys: Vec<KeyView>,
}

impl KeyView {
    /// A key as loaded, with its use when it is `live` in the snapshot.
    pub fn of(key: &RingKey, live: Option<&LiveKey>) -> KeyView {
        KeyView {
            serial: key.summary.serial.clone(),
            sha256: key.summary.sha256.clone(),
            not_after: key.summary.not_after.clone(),
            state: key.state,
            retain_until: key.retain_until.map(crate::time::rfc3339),
            decryptions: live.map_or(0, LiveKey::decryptions),
            signatures: live.map_or(0, LiveKey::signatures),
            last_used: live.and_then(LiveKey::last_used).map(crate::time::rfc3339),
        }
    }
}

impl Ring {
    /// The key with this SHA-256, if the ring holds it.
    pub fn key(&self, sha256: &str) -> Option<&LiveKey> {
        self.keys.iter().find(|k| k.key.summary.sha256 == sha256)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keystore::CertificateSummary;
    use crate::receiver::{CertSpec, KeyPair};

    fn ring_key(serial: u32, state: KeyState) -> RingKey {
        let pair = KeyPair::generate(&CertSpec {
            bits: 1024,
            serial,
            ..CertSpec::default()
        })
        .unwrap();
        let entry = pair.entry("k").unwrap();
        let summary = CertificateSummary::of(entry.info.as_ref().unwrap());
        RingKey {
            entry,
            summary,
            state,
            retain_until: None,
        }
    }

    #[test]
    fn a_signature_is_counted_for_the_active_key_only_through_its_handles() {
        let metrics = Metrics::default();
        let ring = Ring::new(
            "tenant",
            vec![
                ring_key(2, KeyState::Active),
                ring_key(1, KeyState::Retained),
            ],
        );
        // Before the handles are resolved nothing is counted (and nothing fails).
        ring.record_signature(UNIX_EPOCH + std::time::Duration::from_secs(5));
        assert_eq!(ring.keys[0].signatures(), 0);
        ring.bind_metrics(&metrics);
        let at = UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
        ring.record_signature(at);
        ring.record_signature(at);
        ring.record_use(1, at);
        assert_eq!(ring.keys[0].signatures(), 2);
        assert_eq!(ring.keys[0].decryptions(), 0);
        assert_eq!(ring.keys[0].last_used(), Some(at));
        assert_eq!(ring.keys[1].signatures(), 0);
        assert_eq!(ring.keys[1].decryptions(), 1);
        let view = KeyView::of(&ring.keys[0].key, Some(&ring.keys[0]));
        assert_eq!((view.signatures, view.decryptions), (2, 0));
        let text = metrics.encode();
        assert!(
            text.contains(r#"wssgate_signatures_total{ring="tenant",serial="2"} 2"#),
            "{text}"
        );
        // A key gone from the ring takes its series with it.
        ring.unbind_gone(None, &metrics);
        assert!(!metrics.encode().contains("wssgate_signatures_total{"));
    }

    #[test]
    fn a_key_view_without_signatures_reads_as_none_signed() {
        // An answer of a daemon that did not count signatures yet.
        let old = r#"{"serial":"1","sha256":"ab","not_after":"2030-01-01T00:00:00Z","state":"active","decryptions":3,"last_used":null}"#;
        let view: KeyView = serde_json::from_str(old).unwrap();
        assert_eq!((view.decryptions, view.signatures), (3, 0));
    }
}
