//! The tenant keystore: aliases mapped to the receiver certificates messages are
//! encrypted for, the exchange of a certificate under the same alias, the archive
//! that keeps every retired certificate for at least the retention period, and the
//! audit log of every change.
//!
//! On disk (all under the configured directories):
//! - `dir/ALIAS.pem`: the active certificate of each alias.
//! - `state_dir/archive/ALIAS/RETIRED-SHA256.pem` and `.json`: retired certificates
//!   with their metadata (when they were active, when they may be purged).
//! - `state_dir/active/ALIAS.json`: since when the current certificate is active.
//! - `state_dir/audit.log`: one JSON line per change.
//! - `state_dir/keystore.lock`: serializes changes between the CLI and the daemon.
//! - the key rings of the receiver side, on the same mechanisms (the `ring` module's
//!   `private_dir/RING.pem`, `state_dir/private-archive/`, `state_dir/private-active/`).
//!
//! Every change is crash-safe: files are replaced by rename after fsync, so the
//! keystore always holds the old or the new certificate, never none and never a
//! torn file. Readers need no lock. This module knows nothing of HTTP or routes;
//! callers pass the certificate policy a route needs.

mod archive;
pub mod audit;
pub mod files;
mod import;
mod ring;
mod staging;

pub use import::certificate_from_file;
pub use ring::{KeyState, RingAddOutcome, RingKey, RingKeySummary, RingView, pem_from_pkcs12};
pub use staging::{Activation, Pending};

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::config::{KeystoreConfig, is_valid_alias};
use crate::time::rfc3339;
use crate::wss::certificate::{CertificateError, CertificatePolicy, first_reason};
use crate::wss::{CertificateInfo, Recipient};
use archive::{ArchivePlace, archive_files, purge_archive, read_archive_record};
use audit::AuditRecord;

/// Why a keystore operation failed. Each names the alias and file concerned.
#[derive(Debug, thiserror::Error)]
pub enum KeystoreError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0:?} is not a valid alias (letters, digits, . _ -; at most 128)")]
    InvalidAlias(String),
    #[error("alias {0:?} is not in the keystore")]
    UnknownAlias(String),
    #[error("alias {alias:?} ({file}): {reason}")]
    Refused {
        alias: String,
        file: String,
        reason: CertificateError,
    },
    #[error("alias {alias:?} already has this certificate (sha256 {sha256}); nothing to exchange")]
    SameCertificate { alias: String, sha256: String },
    #[error("{file}: PKCS#12 could not be opened (wrong password or damaged file): {reason}")]
    Pkcs12 { file: String, reason: String },
    #[error("{file}: no certificate named {name:?} (entries: {available})")]
    NoSuchEntry {
        file: String,
        name: String,
        available: String,
    },
    #[error("{file}: metadata is damaged: {reason}")]
    Metadata { file: String, reason: String },
    #[error(
        "alias {alias:?}: the upload holds a private key; wssgate needs only the receiver's certificate (keep private keys with the receiver)"
    )]
    PrivateKey { alias: String },
    #[error("key ring {0:?} is not in keystore.private_dir")]
    UnknownRing(String),
    #[error(
        "{file}: readable by group or others: a private key file must have mode 0600 or stricter (chmod 600 it)"
    )]
    KeyFileExposed { file: String },
    #[error("key ring {ring:?} ({file}): {reason}")]
    KeyRefused {
        ring: String,
        file: String,
        reason: String,
    },
    #[error("key ring {ring:?} already has this key (sha256 {sha256}); nothing to add")]
    SameKey { ring: String, sha256: String },
    #[error("simulated crash after step {0:?}")]
    SimulatedCrash(ExchangeStep),
}

impl KeystoreError {
    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeystoreError + '_ {
        move |source| KeystoreError::Io {
            path: path.display().to_string(),
            source,
        }
    }

    /// Whether the caller's input is at fault (a refused certificate, alias or file).
    pub fn is_invalid_input(&self) -> bool {
        !matches!(
            self,
            KeystoreError::Io { .. }
                | KeystoreError::Metadata { .. }
                | KeystoreError::SimulatedCrash(_)
        )
    }
}

/// The steps of an exchange, in order (for crash-safety tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExchangeStep {
    /// The new certificate was checked.
    Validated,
    /// The previous certificate was copied to the archive.
    Archived,
    /// `ALIAS.pem` now holds the new certificate.
    Replaced,
    /// The new certificate's activation time was recorded.
    Recorded,
}

/// The facts about a certificate that the archive, audit log and API show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateSummary {
    pub sha256: String,
    /// Decimal.
    pub serial: String,
    pub issuer: String,
    pub subject: String,
    /// RFC 3339.
    pub not_after: String,
}

impl CertificateSummary {
    pub fn of(info: &CertificateInfo) -> CertificateSummary {
        CertificateSummary {
            sha256: info.sha256.clone(),
            serial: info.serial.clone(),
            issuer: info.issuer.clone(),
            subject: info.subject.clone(),
            not_after: rfc3339(info.not_after),
        }
    }
}

/// Metadata kept beside each archived certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveRecord {
    pub alias: String,
    pub sha256: String,
    pub serial: String,
    pub issuer: String,
    pub subject: String,
    pub not_after: String,
    pub active_from: String,
    pub retired_at: String,
    pub retain_until: String,
}

/// Since when an alias's current certificate (or a ring's active key) is active.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ActiveRecord {
    sha256: String,
    active_from: String,
}

/// One alias as found on disk.
#[derive(Debug, Clone)]
pub struct Entry {
    pub alias: String,
    pub file: PathBuf,
    /// The certificate, or why it cannot be read.
    pub certificate: Result<Arc<Recipient>, String>,
}

/// One period in an alias's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub certificate: CertificateSummary,
    pub active_from: Option<String>,
    /// `None` for the certificate active now.
    pub retired_at: Option<String>,
    pub retain_until: Option<String>,
}

/// What an exchange did.
#[derive(Debug, Clone, Serialize)]
pub struct ExchangeOutcome {
    pub alias: String,
    pub previous: Option<CertificateSummary>,
    pub current: CertificateSummary,
}

/// What a purge did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PurgeReport {
    pub deleted: Vec<ArchiveRecord>,
    pub kept: Vec<ArchiveRecord>,
}

/// A certificate about to expire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiryWarning {
    pub alias: String,
    pub serial: String,
    pub days_left: i64,
}

/// The keystore on disk. Cheap to create; holds no open files.
#[derive(Debug, Clone)]
pub struct Keystore {
    config: KeystoreConfig,
    /// Stop an exchange after this step, as a crash would (tests only).
    fail_after: Option<ExchangeStep>,
}

/// The certificate policy for an alias: SKI required when a route asks for it.
pub fn policy(config: &KeystoreConfig, require_ski: bool) -> CertificatePolicy {
    CertificatePolicy {
        min_rsa_bits: config.min_rsa_bits,
        require_ski,
        allow_not_yet_valid: false,
    }
}

impl Keystore {
    pub fn new(config: KeystoreConfig) -> Keystore {
        Keystore {
            config,
            fail_after: None,
        }
    }

    /// Simulate a crash after `step` of the next exchanges (crash-safety tests).
    #[doc(hidden)]
    pub fn fail_after(mut self, step: ExchangeStep) -> Keystore {
        self.fail_after = Some(step);
        self
    }

    pub fn config(&self) -> &KeystoreConfig {
        &self.config
    }

    fn certificate_path(&self, alias: &str) -> PathBuf {
        self.config.dir.join(format!("{alias}.pem"))
    }

    fn archive_dir(&self, alias: &str) -> PathBuf {
        self.config.state_dir.join("archive").join(alias)
    }

    fn active_record_path(&self, alias: &str) -> PathBuf {
        self.config
            .state_dir
            .join("active")
            .join(format!("{alias}.json"))
    }

    fn check_alias(alias: &str) -> Result<(), KeystoreError> {
        if is_valid_alias(alias) {
            Ok(())
        } else {
            Err(KeystoreError::InvalidAlias(alias.to_string()))
        }
    }

    /// Read every `ALIAS.pem`. Unreadable files are reported per entry, so one bad
    /// file does not hide the others; callers decide what is fatal.
    pub fn load(&self) -> Result<BTreeMap<String, Entry>, KeystoreError> {
        let dir = &self.config.dir;
        let mut entries = BTreeMap::new();
        let listing = match fs::read_dir(dir) {
            Ok(l) => l,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(entries),
            Err(e) => return Err(KeystoreError::io(dir)(e)),
        };
        for item in listing {
            let item = item.map_err(KeystoreError::io(dir))?;
            let path = item.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let Some(alias) = name.strip_suffix(".pem") else {
                continue;
            };
            // Hidden files are temporaries of an exchange in progress, or the
            // `..data` machinery of a mounted Kubernetes Secret.
            if alias.starts_with('.') || !path.is_file() {
                continue;
            }
            let certificate = if is_valid_alias(alias) {
                fs::read(&path)
                    .map_err(|e| e.to_string())
                    .and_then(|bytes| Recipient::from_bytes(&bytes).map_err(|e| e.to_string()))
                    .map(Arc::new)
            } else {
                Err("the file name is not a valid alias".to_string())
            };
            entries.insert(
                alias.to_string(),
                Entry {
                    alias: alias.to_string(),
                    file: path,
                    certificate,
                },
            );
        }
        Ok(entries)
    }

    /// The active certificate of one alias, checked against `policy`.
    pub fn active(
        &self,
        alias: &str,
        policy: &CertificatePolicy,
    ) -> Result<Arc<Recipient>, KeystoreError> {
        Self::check_alias(alias)?;
        let file = self.certificate_path(alias);
        let bytes = match fs::read(&file) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(KeystoreError::UnknownAlias(alias.to_string()));
            }
            Err(e) => return Err(KeystoreError::io(&file)(e)),
        };
        self.validated(alias, &file, &bytes, policy).map(Arc::new)
    }

    fn lock(&self) -> Result<fs::File, KeystoreError> {
        let state = &self.config.state_dir;
        files::create_dir_all(state).map_err(KeystoreError::io(state))?;
        let path = state.join("keystore.lock");
        let f = files::open_write(&path).map_err(KeystoreError::io(&path))?;
        f.lock().map_err(KeystoreError::io(&path))?;
        Ok(f)
    }

    fn audit(&self, record: &AuditRecord) -> Result<(), KeystoreError> {
        audit::append(&self.config.state_dir, record)
            .map_err(KeystoreError::io(&self.config.state_dir.join("audit.log")))
    }

    /// Record a refused change in the audit log, then return the error.
    fn refused<T>(
        &self,
        mut record: AuditRecord,
        error: KeystoreError,
    ) -> Result<T, KeystoreError> {
        record.result = format!("refused: {error}");
        self.audit(&record)?;
        Err(error)
    }

    /// Exchange the certificate of an existing alias for `new_pem` (PEM or DER).
    /// The previous certificate goes to the archive; the change is audited.
    pub fn exchange(
        &self,
        alias: &str,
        new_certificate: &[u8],
        actor: &str,
        policy: &CertificatePolicy,
        now: SystemTime,
    ) -> Result<ExchangeOutcome, KeystoreError> {
        Self::check_alias(alias)?;
        let _lock = self.lock()?;
        self.exchange_locked(alias, new_certificate, actor, policy, now)
    }

    /// [`Keystore::exchange`] for a caller that holds the keystore lock.
    fn exchange_locked(
        &self,
        alias: &str,
        new_certificate: &[u8],
        actor: &str,
        policy: &CertificatePolicy,
        now: SystemTime,
    ) -> Result<ExchangeOutcome, KeystoreError> {
        let mut record = AuditRecord::new(actor, "exchange", now);
        record.alias = Some(alias.to_string());
        let file = self.certificate_path(alias);
        let previous = match fs::read(&file) {
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(KeystoreError::io(&file)(e)),
        };
        let Some(previous) = previous else {
            return self.refused(record, KeystoreError::UnknownAlias(alias.to_string()));
        };
        self.replace(alias, previous, new_certificate, policy, now, record)
    }

    /// Add a certificate under a new alias, or replace an existing one (archiving
    /// it as an exchange does). `file` may be PEM, DER or PKCS#12; a PKCS#12
    /// truststore is searched for the entry whose friendly name is `entry_name`
    /// (default: the alias).
    #[allow(clippy::too_many_arguments)]
    pub fn import(
        &self,
        alias: &str,
        file_name: &str,
        file: &[u8],
        password: Option<&str>,
        entry_name: Option<&str>,
        actor: &str,
        policy: &CertificatePolicy,
        now: SystemTime,
    ) -> Result<ExchangeOutcome, KeystoreError> {
        Self::check_alias(alias)?;
        let pem = certificate_from_file(file_name, file, password, entry_name.unwrap_or(alias))?;
        let _lock = self.lock()?;
        let mut record = AuditRecord::new(actor, "import", now);
        record.alias = Some(alias.to_string());
        let path = self.certificate_path(alias);
        match fs::read(&path) {
            Ok(previous) => self.replace(alias, previous, &pem, policy, now, record),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let recipient = match self.validated(alias, &path, &pem, policy) {
                    Ok(r) => r,
                    Err(e) => return self.refused(record, e),
                };
                let current = CertificateSummary::of(recipient.info());
                files::create_dir_all(&self.config.dir)
                    .map_err(KeystoreError::io(&self.config.dir))?;
                files::write_atomic(&path, &pem).map_err(KeystoreError::io(&path))?;
                self.record_active(alias, &current.sha256, now)?;
                record.after = Some(current.clone());
                self.audit(&record)?;
                Ok(ExchangeOutcome {
                    alias: alias.to_string(),
                    previous: None,
                    current,
                })
            }
            Err(e) => Err(KeystoreError::io(&path)(e)),
        }
    }

    fn validated(
        &self,
        alias: &str,
        path: &Path,
        bytes: &[u8],
        policy: &CertificatePolicy,
    ) -> Result<Recipient, KeystoreError> {
        let refused = |reason| KeystoreError::Refused {
            alias: alias.to_string(),
            file: path.display().to_string(),
            reason,
        };
        // A PEM holding a private key is a mistake to stop, not to tidy up:
        // the key has no business on the sender's side.
        if memchr::memmem::find(bytes, b"PRIVATE KEY-----").is_some() {
            return Err(KeystoreError::PrivateKey {
                alias: alias.to_string(),
            });
        }
        let recipient = Recipient::from_bytes(bytes).map_err(refused)?;
        recipient.check(policy).map_err(refused)?;
        Ok(recipient)
    }

    fn step(&self, done: ExchangeStep) -> Result<(), KeystoreError> {
        if self.fail_after == Some(done) {
            return Err(KeystoreError::SimulatedCrash(done));
        }
        Ok(())
    }

    /// Archive the previous certificate and put the new one in its place.
    fn replace(
        &self,
        alias: &str,
        previous_bytes: Vec<u8>,
        new_certificate: &[u8],
        policy: &CertificatePolicy,
        now: SystemTime,
        mut record: AuditRecord,
    ) -> Result<ExchangeOutcome, KeystoreError> {
        let path = self.certificate_path(alias);
        let new = match self.validated(alias, &path, new_certificate, policy) {
            Ok(r) => r,
            Err(e) => return self.refused(record, e),
        };
        let previous = Recipient::from_bytes(&previous_bytes).ok();
        let previous_summary = previous.as_ref().map(|p| CertificateSummary::of(p.info()));
        record.before = previous_summary.clone();
        let current = CertificateSummary::of(new.info());
        if previous_summary
            .as_ref()
            .is_some_and(|p| p.sha256 == current.sha256)
        {
            return self.refused(
                record,
                KeystoreError::SameCertificate {
                    alias: alias.to_string(),
                    sha256: current.sha256,
                },
            );
        }
        self.step(ExchangeStep::Validated)?;
        if let Some(prev) = &previous_summary {
            let active_from = self.active_from(alias, &prev.sha256, &path)?;
            self.archive(alias, &previous_bytes, prev, active_from, now)?;
        }
        self.step(ExchangeStep::Archived)?;
        // The one step that switches: a rename over ALIAS.pem.
        let pem = pem_of(&new, &path)?;
        files::write_atomic(&path, &pem).map_err(KeystoreError::io(&path))?;
        self.step(ExchangeStep::Replaced)?;
        self.record_active(alias, &current.sha256, now)?;
        self.step(ExchangeStep::Recorded)?;
        record.after = Some(current.clone());
        self.audit(&record)?;
        Ok(ExchangeOutcome {
            alias: alias.to_string(),
            previous: previous_summary,
            current,
        })
    }

    /// Record a certificate that changed on disk without an exchange (a
    /// Kubernetes Secret's `..data` swap, a file copied into place) as an exchange
    /// would have: `previous` goes to the archive with its retention, `current` is
    /// recorded as active from `now`, and the change is audited as `actor`'s.
    /// `None` when the keystore's record already names `current` (it came through
    /// an exchange or import here).
    pub fn adopt(
        &self,
        alias: &str,
        previous: &Recipient,
        current: &Recipient,
        actor: &str,
        now: SystemTime,
    ) -> Result<Option<ExchangeOutcome>, KeystoreError> {
        Self::check_alias(alias)?;
        let _lock = self.lock()?;
        let current_summary = CertificateSummary::of(current.info());
        let recorded = fs::read(self.active_record_path(alias))
            .ok()
            .and_then(|b| serde_json::from_slice::<ActiveRecord>(&b).ok());
        let previous_summary = CertificateSummary::of(previous.info());
        if recorded.is_some_and(|r| r.sha256 == current_summary.sha256)
            || previous_summary.sha256 == current_summary.sha256
        {
            return Ok(None);
        }
        let path = self.certificate_path(alias);
        let previous_pem =
            previous
                .certificate()
                .to_pem()
                .map_err(|e| KeystoreError::Metadata {
                    file: path.display().to_string(),
                    reason: first_reason(&e),
                })?;
        let active_from = self.active_from(alias, &previous_summary.sha256, &path)?;
        self.archive(alias, &previous_pem, &previous_summary, active_from, now)?;
        self.record_active(alias, &current_summary.sha256, now)?;
        let mut record = AuditRecord::new(actor, "exchange", now);
        record.alias = Some(alias.to_string());
        record.before = Some(previous_summary.clone());
        record.after = Some(current_summary.clone());
        record.detail = Some(serde_json::json!({ "source": "file" }));
        self.audit(&record)?;
        Ok(Some(ExchangeOutcome {
            alias: alias.to_string(),
            previous: Some(previous_summary),
            current: current_summary,
        }))
    }

    fn record_active(
        &self,
        alias: &str,
        sha256: &str,
        now: SystemTime,
    ) -> Result<(), KeystoreError> {
        self.write_active_record(&self.active_record_path(alias), sha256, now)
    }

    /// Write the record that `sha256` is active since `now` at `path` (in the
    /// state directory): for an alias's certificate or a ring's key alike.
    pub(crate) fn write_active_record(
        &self,
        path: &Path,
        sha256: &str,
        now: SystemTime,
    ) -> Result<(), KeystoreError> {
        let dir = path.parent().unwrap_or(Path::new("."));
        files::create_dir_all_within(&self.config.state_dir, dir)
            .map_err(KeystoreError::io(dir))?;
        let record = ActiveRecord {
            sha256: sha256.to_string(),
            active_from: crate::time::rfc3339_millis(now),
        };
        let json = serde_json::to_vec_pretty(&record).map_err(|e| KeystoreError::Metadata {
            file: path.display().to_string(),
            reason: e.to_string(),
        })?;
        files::write_atomic(path, &json).map_err(KeystoreError::io(path))
    }

    /// Since when the certificate `sha256` is active for `alias`: the recorded time
    /// if it matches, else the latest retirement in the archive (the moment this
    /// certificate replaced that one), else the file's modification time.
    fn active_from(
        &self,
        alias: &str,
        sha256: &str,
        file: &Path,
    ) -> Result<SystemTime, KeystoreError> {
        if let Ok(bytes) = fs::read(self.active_record_path(alias))
            && let Ok(rec) = serde_json::from_slice::<ActiveRecord>(&bytes)
            && rec.sha256 == sha256
            && let Ok(t) = humantime::parse_rfc3339(&rec.active_from)
        {
            return Ok(t);
        }
        let latest_retirement = self
            .archived(alias)?
            .iter()
            .filter(|r| r.sha256 != sha256)
            .filter_map(|r| humantime::parse_rfc3339(&r.retired_at).ok())
            .max();
        if let Some(t) = latest_retirement {
            return Ok(t);
        }
        fs::metadata(file)
            .and_then(|m| m.modified())
            .map_err(KeystoreError::io(file))
    }

    fn archive(
        &self,
        alias: &str,
        pem: &[u8],
        summary: &CertificateSummary,
        active_from: SystemTime,
        now: SystemTime,
    ) -> Result<(), KeystoreError> {
        let place = ArchivePlace {
            dir: self.archive_dir(alias),
            write: files::write_atomic,
        };
        self.archive_in(&place, alias, pem, summary, active_from, now)
    }

    /// Archived certificates of one alias, oldest retirement first.
    pub fn archived(&self, alias: &str) -> Result<Vec<ArchiveRecord>, KeystoreError> {
        Self::check_alias(alias)?;
        let dir = self.archive_dir(alias);
        let mut out: Vec<ArchiveRecord> = Vec::new();
        for (json, _) in archive_files(&dir)? {
            out.push(read_archive_record(&json)?);
        }
        // By retirement; a certificate that became active later retired later.
        out.sort_by(|a, b| (&a.retired_at, &a.active_from).cmp(&(&b.retired_at, &b.active_from)));
        Ok(out)
    }

    /// Every certificate the alias has had, oldest first, the active one last.
    pub fn history(&self, alias: &str) -> Result<Vec<HistoryEntry>, KeystoreError> {
        let archived = self.archived(alias)?;
        let mut out: Vec<HistoryEntry> = archived
            .into_iter()
            .map(|r| HistoryEntry {
                certificate: CertificateSummary {
                    sha256: r.sha256,
                    serial: r.serial,
                    issuer: r.issuer,
                    subject: r.subject,
                    not_after: r.not_after,
                },
                active_from: Some(r.active_from),
                retired_at: Some(r.retired_at),
                retain_until: Some(r.retain_until),
            })
            .collect();
        let file = self.certificate_path(alias);
        match fs::read(&file) {
            Ok(bytes) => {
                if let Ok(current) = Recipient::from_bytes(&bytes) {
                    let summary = CertificateSummary::of(current.info());
                    let since = self.active_from(alias, &summary.sha256, &file)?;
                    // An archive copy of the active certificate (an exchange that
                    // stopped after archiving) is not a separate period.
                    out.retain(|h| h.certificate.sha256 != summary.sha256);
                    out.push(HistoryEntry {
                        certificate: summary,
                        active_from: Some(crate::time::rfc3339_millis(since)),
                        retired_at: None,
                        retain_until: None,
                    });
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if out.is_empty() {
                    return Err(KeystoreError::UnknownAlias(alias.to_string()));
                }
            }
            Err(e) => return Err(KeystoreError::io(&file)(e)),
        }
        Ok(out)
    }

    /// Delete archived certificates whose `retain_until` has passed; keep the rest.
    /// The only way an archived certificate is ever deleted.
    pub fn purge(&self, actor: &str, now: SystemTime) -> Result<PurgeReport, KeystoreError> {
        let _lock = self.lock()?;
        let report = purge_archive(&self.config.state_dir.join("archive"), now)?;
        self.audit_purge("purge", actor, &report, now)?;
        Ok(report)
    }

    fn audit_purge(
        &self,
        action: &str,
        actor: &str,
        report: &PurgeReport,
        now: SystemTime,
    ) -> Result<(), KeystoreError> {
        let mut record = AuditRecord::new(actor, action, now);
        record.detail = Some(serde_json::json!({
            "deleted": report.deleted.iter().map(|r| serde_json::json!({
                "alias": r.alias, "sha256": r.sha256, "serial": r.serial, "retain_until": r.retain_until,
            })).collect::<Vec<_>>(),
            "kept": report.kept.len(),
        }));
        self.audit(&record)
    }
}

/// A certificate as PEM, to be written at `path` (which an error names).
fn pem_of(recipient: &Recipient, path: &Path) -> Result<Vec<u8>, KeystoreError> {
    recipient
        .certificate()
        .to_pem()
        .map_err(|e| KeystoreError::Metadata {
            file: path.display().to_string(),
            reason: first_reason(&e),
        })
}
