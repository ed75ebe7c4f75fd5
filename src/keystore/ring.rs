//! The key rings: the tenant's own private keys by alias, for the receiver side
//! (decrypt routes, decrypted answers). The same mechanisms as the certificate
//! keystore — the file lock, crash-safe writes, [`ArchiveRecord`]s with
//! `retain_until`, the audit log — with owner-only files.
//!
//! On disk:
//! - `private_dir/ALIAS.pem`: the active private key and its certificate (mode
//!   0600 or stricter, else refused).
//! - `state_dir/private-archive/ALIAS/RETIRED-SHA256.pem` and `.json`: the keys it
//!   replaced, usable for decryption until their `retain_until` (0600).
//! - `state_dir/private-active/ALIAS.json`: since when the active key is active.
//!
//! Adding a key archives the active one and makes the new one active; nothing
//! else ever removes a key but `purge` after `retain_until`. No private key byte
//! is ever written to the audit log or returned: only certificate summaries.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::archive::{
    ArchivePlace, archive_files, purge_archive, read_archive_record, retain_until,
};
use super::audit::AuditRecord;
use super::{ArchiveRecord, CertificateSummary, Keystore, KeystoreError, PurgeReport, files};
use crate::wss::Recipient;
use crate::wss::certificate::{CertificatePolicy, first_reason};
use crate::wss::keys::{self, PrivateKeyEntry};

/// Largest key file read (a key and its certificate chain).
const MAX_KEY_FILE: u64 = 1 << 20;

/// Whether a key is the one new keys are announced with, or an older one kept
/// for the messages still encrypted for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyState {
    Active,
    Retained,
}

/// One usable key of a ring, as loaded.
#[derive(Debug)]
pub struct RingKey {
    /// The private key and its certificate (never printed).
    pub entry: PrivateKeyEntry,
    pub summary: CertificateSummary,
    pub state: KeyState,
    /// When a retained key stops being used (`None` for the active key).
    pub retain_until: Option<SystemTime>,
}

/// One key as views show it: the certificate's facts, never the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RingKeySummary {
    pub serial: String,
    pub sha256: String,
    pub not_after: String,
    pub state: KeyState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retain_until: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired_at: Option<String>,
}

/// A ring on disk: its keys, active first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RingView {
    pub ring: String,
    pub keys: Vec<RingKeySummary>,
}

/// What adding a key did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RingAddOutcome {
    pub ring: String,
    /// The key that was active and is now retained.
    pub previous: Option<CertificateSummary>,
    pub current: CertificateSummary,
    /// When the previous key stops being used.
    pub previous_retain_until: Option<String>,
}

/// Read a key file that must be readable by its owner only; checked on the open
/// file (not by name, which could be swapped in between).
fn read_owner_only(path: &Path) -> Result<Vec<u8>, KeystoreError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(KeystoreError::io(path))?;
    let meta = file.metadata().map_err(KeystoreError::io(path))?;
    if !meta.is_file() {
        return Err(KeystoreError::KeyRefused {
            ring: String::new(),
            file: path.display().to_string(),
            reason: "not a regular file".into(),
        });
    }
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(KeystoreError::KeyFileExposed {
            file: path.display().to_string(),
        });
    }
    let mut bytes = Vec::new();
    file.take(MAX_KEY_FILE)
        .read_to_end(&mut bytes)
        .map_err(KeystoreError::io(path))?;
    Ok(bytes)
}

/// A key and its certificate from PEM, checked against `policy`.
fn parse_key(
    ring: &str,
    file: &Path,
    pem: &[u8],
    policy: Option<&CertificatePolicy>,
) -> Result<(PrivateKeyEntry, CertificateSummary), KeystoreError> {
    let refused = |reason: String| KeystoreError::KeyRefused {
        ring: ring.to_string(),
        file: file.display().to_string(),
        reason,
    };
    let entry = keys::from_pem(pem, &file.display().to_string()).map_err(|e| match e {
        keys::KeyError::Mismatch { .. } => {
            refused("the certificate does not belong to the private key".into())
        }
        keys::KeyError::NoPrivateKey { .. } => refused(
            "no PEM private key found (PKCS#12: wssgate keyring add --password-file)".into(),
        ),
        other => refused(other.to_string()),
    })?;
    let (Some(certificate), Some(info)) = (&entry.certificate, &entry.info) else {
        return Err(refused(
            "no certificate beside the key: a ring key is named by its certificate".into(),
        ));
    };
    if let Some(policy) = policy {
        let recipient = Recipient::new(certificate.clone()).map_err(|e| refused(e.to_string()))?;
        recipient
            .check(policy)
            .map_err(|e| refused(e.to_string()))?;
    }
    let summary = CertificateSummary::of(info);
    Ok((entry, summary))
}

/// The PEM a ring key is stored as: PKCS#8 key, then its certificate.
fn stored_pem(ring: &str, file: &Path, entry: &PrivateKeyEntry) -> Result<Vec<u8>, KeystoreError> {
    let fail = |e: openssl::error::ErrorStack| KeystoreError::KeyRefused {
        ring: ring.to_string(),
        file: file.display().to_string(),
        reason: first_reason(&e),
    };
    let mut pem = entry.key.private_key_to_pem_pkcs8().map_err(fail)?;
    if let Some(cert) = &entry.certificate {
        pem.extend_from_slice(&cert.to_pem().map_err(fail)?);
    }
    Ok(pem)
}

/// A PKCS#12 file (with its password) as the PEM a ring stores.
pub fn pem_from_pkcs12(
    file: &Path,
    bytes: &[u8],
    password: &str,
) -> Result<Vec<u8>, KeystoreError> {
    let name = file.display().to_string();
    let entry = keys::from_pkcs12(bytes, password, &name).map_err(|e| KeystoreError::Pkcs12 {
        file: name.clone(),
        reason: match e {
            keys::KeyError::Pkcs12 { reason, .. } => reason,
            other => other.to_string(),
        },
    })?;
    stored_pem("", file, &entry)
}

impl Keystore {
    fn ring_path(&self, ring: &str) -> PathBuf {
        self.config.private_dir.join(format!("{ring}.pem"))
    }

    fn ring_archive(&self, ring: &str) -> ArchivePlace {
        ArchivePlace {
            dir: self.config.state_dir.join("private-archive").join(ring),
            write: files::write_atomic_private,
        }
    }

    fn ring_active_record(&self, ring: &str) -> PathBuf {
        self.config
            .state_dir
            .join("private-active")
            .join(format!("{ring}.json"))
    }

    /// The usable keys of `ring` at `now`: the active one first, then retained
    /// ones whose `retain_until` has not passed, newest retirement first.
    pub fn ring_keys(&self, ring: &str, now: SystemTime) -> Result<Vec<RingKey>, KeystoreError> {
        Self::check_alias(ring)?;
        let path = self.ring_path(ring);
        let pem = match read_owner_only(&path) {
            Err(KeystoreError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                return Err(KeystoreError::UnknownRing(ring.to_string()));
            }
            other => other?,
        };
        let (entry, summary) = parse_key(ring, &path, &pem, None)?;
        let mut keys = vec![RingKey {
            entry,
            summary,
            state: KeyState::Active,
            retain_until: None,
        }];
        let mut archived = Vec::new();
        for (json, pem_path) in archive_files(&self.ring_archive(ring).dir)? {
            let record = read_archive_record(&json)?;
            let until = retain_until(&record, &json)?;
            if until < now || keys.iter().any(|k| k.summary.sha256 == record.sha256) {
                continue;
            }
            let pem = match read_owner_only(&pem_path) {
                // A purge that stopped between the key and its metadata.
                Err(KeystoreError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    continue;
                }
                other => other?,
            };
            let (entry, summary) = parse_key(ring, &pem_path, &pem, None)?;
            archived.push((record.retired_at.clone(), entry, summary, until));
        }
        archived.sort_by(|a, b| b.0.cmp(&a.0));
        keys.extend(
            archived
                .into_iter()
                .map(|(_, entry, summary, until)| RingKey {
                    entry,
                    summary,
                    state: KeyState::Retained,
                    retain_until: Some(until),
                }),
        );
        Ok(keys)
    }

    /// The rings in `private_dir`, by name.
    pub fn rings(&self) -> Result<Vec<String>, KeystoreError> {
        let dir = &self.config.private_dir;
        let listing = match fs::read_dir(dir) {
            Ok(l) => l,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(KeystoreError::io(dir)(e)),
        };
        let mut out: Vec<String> = listing
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter_map(|n| n.strip_suffix(".pem").map(str::to_string))
            .filter(|n| crate::config::is_valid_alias(n))
            .collect();
        out.sort();
        Ok(out)
    }

    /// Every key `ring` has had (active, retained, and retired past
    /// `retain_until` but not purged), the active one first.
    pub fn ring_history(&self, ring: &str) -> Result<RingView, KeystoreError> {
        Self::check_alias(ring)?;
        let path = self.ring_path(ring);
        let mut keys = Vec::new();
        match fs::metadata(&path) {
            Ok(_) => {
                let pem = read_owner_only(&path)?;
                let (_, summary) = parse_key(ring, &path, &pem, None)?;
                let since = self.ring_active_from(ring, &summary.sha256, &path);
                keys.push(RingKeySummary {
                    serial: summary.serial,
                    sha256: summary.sha256,
                    not_after: summary.not_after,
                    state: KeyState::Active,
                    retain_until: None,
                    active_from: since.map(crate::time::rfc3339_millis),
                    retired_at: None,
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(KeystoreError::io(&path)(e)),
        }
        let mut archived: Vec<ArchiveRecord> = Vec::new();
        for (json, _) in archive_files(&self.ring_archive(ring).dir)? {
            archived.push(read_archive_record(&json)?);
        }
        if keys.is_empty() && archived.is_empty() {
            return Err(KeystoreError::UnknownRing(ring.to_string()));
        }
        archived.sort_by(|a, b| b.retired_at.cmp(&a.retired_at));
        for r in archived {
            if keys.iter().any(|k| k.sha256 == r.sha256) {
                continue;
            }
            keys.push(RingKeySummary {
                serial: r.serial,
                sha256: r.sha256,
                not_after: r.not_after,
                state: KeyState::Retained,
                retain_until: Some(r.retain_until),
                active_from: Some(r.active_from),
                retired_at: Some(r.retired_at),
            });
        }
        Ok(RingView {
            ring: ring.to_string(),
            keys,
        })
    }

    fn ring_active_from(&self, ring: &str, sha256: &str, file: &Path) -> Option<SystemTime> {
        if let Ok(bytes) = fs::read(self.ring_active_record(ring))
            && let Ok(rec) = serde_json::from_slice::<super::ActiveRecord>(&bytes)
            && rec.sha256 == sha256
            && let Ok(t) = humantime::parse_rfc3339(&rec.active_from)
        {
            return Some(t);
        }
        fs::metadata(file).and_then(|m| m.modified()).ok()
    }

    /// Add a key (PEM: private key and its certificate) to `ring` and make it
    /// active; the active key is archived and stays usable until its
    /// `retain_until`. Creates the ring when it does not exist. Audited.
    /// `usable` says whether the key can serve what uses the ring (the routes
    /// that sign with it); a key it refuses is refused before anything changes.
    pub fn ring_add(
        &self,
        ring: &str,
        pem: &[u8],
        actor: &str,
        policy: &CertificatePolicy,
        usable: &dyn Fn(&PrivateKeyEntry) -> Result<(), String>,
        now: SystemTime,
    ) -> Result<RingAddOutcome, KeystoreError> {
        Self::check_alias(ring)?;
        let _lock = self.lock()?;
        let mut record = AuditRecord::new(actor, "keyring-add", now);
        record.alias = Some(ring.to_string());
        let path = self.ring_path(ring);
        let (entry, current) = match parse_key(ring, &path, pem, Some(policy)) {
            Ok(parsed) => parsed,
            Err(e) => return self.refused(record, e),
        };
        if let Err(reason) = usable(&entry) {
            let e = KeystoreError::KeyRefused {
                ring: ring.to_string(),
                file: path.display().to_string(),
                reason,
            };
            return self.refused(record, e);
        }
        let previous = match fs::metadata(&path) {
            Ok(_) => Some(read_owner_only(&path).and_then(|bytes| {
                parse_key(ring, &path, &bytes, None).map(|(e, s)| (bytes, e, s))
            })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(KeystoreError::io(&path)(e)),
        };
        let previous = match previous {
            Some(Ok(p)) => Some(p),
            Some(Err(e)) => return self.refused(record, e),
            None => None,
        };
        if let Some((_, _, prev)) = &previous
            && prev.sha256 == current.sha256
        {
            let e = KeystoreError::SameKey {
                ring: ring.to_string(),
                sha256: current.sha256.clone(),
            };
            return self.refused(record, e);
        }
        let new_pem = stored_pem(ring, &path, &entry)?;
        let mut previous_retain_until = None;
        if let Some((bytes, _, prev)) = &previous {
            let since = self
                .ring_active_from(ring, &prev.sha256, &path)
                .unwrap_or(now);
            self.archive_in(&self.ring_archive(ring), ring, bytes, prev, since, now)?;
            previous_retain_until = Some(crate::time::rfc3339_millis(
                now + std::time::Duration::from_secs(
                    u64::from(self.config.retention_days) * 86_400,
                ),
            ));
        }
        files::create_dir_all(&self.config.private_dir)
            .map_err(KeystoreError::io(&self.config.private_dir))?;
        files::write_atomic_private(&path, &new_pem).map_err(KeystoreError::io(&path))?;
        self.record_ring_active(ring, &current.sha256, now)?;
        record.before = previous.as_ref().map(|(_, _, s)| s.clone());
        record.after = Some(current.clone());
        self.audit(&record)?;
        Ok(RingAddOutcome {
            ring: ring.to_string(),
            previous: previous.map(|(_, _, s)| s),
            current,
            previous_retain_until,
        })
    }

    fn record_ring_active(
        &self,
        ring: &str,
        sha256: &str,
        now: SystemTime,
    ) -> Result<(), KeystoreError> {
        self.write_active_record(&self.ring_active_record(ring), sha256, now)
    }

    /// A ring's key replaced on disk without an add (a Secret updated, a file
    /// copied): archive `previous` — the active key of the running snapshot, the
    /// only copy left — so that it stays usable until its `retain_until`, and
    /// audit the change as `actor`'s. `false` when it is in the ring already.
    pub fn ring_adopt(
        &self,
        ring: &str,
        previous: &RingKey,
        actor: &str,
        now: SystemTime,
    ) -> Result<bool, KeystoreError> {
        Self::check_alias(ring)?;
        let _lock = self.lock()?;
        let path = self.ring_path(ring);
        let bytes = read_owner_only(&path)?;
        let (_, current) = parse_key(ring, &path, &bytes, None)?;
        let place = self.ring_archive(ring);
        let mut archived = false;
        for (json, _) in archive_files(&place.dir)? {
            archived |= read_archive_record(&json)?.sha256 == previous.summary.sha256;
        }
        if archived || current.sha256 == previous.summary.sha256 {
            return Ok(false);
        }
        let pem = stored_pem(ring, &path, &previous.entry)?;
        let since = self
            .ring_active_from(ring, &previous.summary.sha256, &path)
            .unwrap_or(now);
        self.archive_in(&place, ring, &pem, &previous.summary, since, now)?;
        self.record_ring_active(ring, &current.sha256, now)?;
        let mut record = AuditRecord::new(actor, "keyring-add", now);
        record.alias = Some(ring.to_string());
        record.before = Some(previous.summary.clone());
        record.after = Some(current);
        record.detail = Some(serde_json::json!({ "source": "file" }));
        self.audit(&record)?;
        Ok(true)
    }

    /// Delete retained keys whose `retain_until` has passed; audited.
    pub fn ring_purge(&self, actor: &str, now: SystemTime) -> Result<PurgeReport, KeystoreError> {
        let _lock = self.lock()?;
        let report = purge_archive(&self.config.state_dir.join("private-archive"), now)?;
        self.audit_purge("keyring-purge", actor, &report, now)?;
        Ok(report)
    }
}
