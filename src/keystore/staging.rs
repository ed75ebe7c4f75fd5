//! Staged certificates: validated now, active later — when the paused routes
//! using the alias resume, or at an agreed time. On disk under
//! `state_dir/pending/ALIAS.pem` and `.json`; activation is an exchange (archive
//! and audit included) done under one hold of the keystore lock.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::audit::AuditRecord;
use super::{CertificateSummary, ExchangeOutcome, Keystore, KeystoreError, files};
use crate::time::rfc3339;
use crate::wss::certificate::CertificatePolicy;

/// When a staged certificate becomes active.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "activate", rename_all = "kebab-case")]
pub enum Activation {
    /// When the paused routes using the alias resume.
    OnResume,
    /// At an agreed time (RFC 3339 in the records).
    At {
        #[serde(with = "crate::time::as_rfc3339")]
        at: SystemTime,
    },
}

/// A validated certificate waiting to become active under an alias.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    pub alias: String,
    pub certificate: CertificateSummary,
    #[serde(flatten)]
    pub activation: Activation,
    pub staged_by: String,
    pub staged_at: String,
}

impl Keystore {
    fn pending_paths(&self, alias: &str) -> (PathBuf, PathBuf) {
        let dir = self.config.state_dir.join("pending");
        (
            dir.join(format!("{alias}.pem")),
            dir.join(format!("{alias}.json")),
        )
    }

    /// Stage a validated certificate for `alias` (replacing an earlier staged one).
    /// A certificate whose validity has not started may be staged.
    pub fn stage(
        &self,
        alias: &str,
        certificate: &[u8],
        activation: Activation,
        actor: &str,
        policy: &CertificatePolicy,
        now: SystemTime,
    ) -> Result<Pending, KeystoreError> {
        Self::check_alias(alias)?;
        let _lock = self.lock()?;
        let mut record = AuditRecord::new(actor, "stage", now);
        record.alias = Some(alias.to_string());
        if !self.certificate_path(alias).exists() {
            return self.refused(record, KeystoreError::UnknownAlias(alias.to_string()));
        }
        let staging = CertificatePolicy {
            allow_not_yet_valid: true,
            ..*policy
        };
        let (pem_path, json_path) = self.pending_paths(alias);
        let recipient = match self.validated(alias, &pem_path, certificate, &staging) {
            Ok(r) => r,
            Err(e) => return self.refused(record, e),
        };
        let pending = Pending {
            alias: alias.to_string(),
            certificate: CertificateSummary::of(recipient.info()),
            activation,
            staged_by: actor.to_string(),
            staged_at: rfc3339(now),
        };
        let dir = pem_path.parent().unwrap_or(Path::new("."));
        files::create_dir_all_within(&self.config.state_dir, dir)
            .map_err(KeystoreError::io(dir))?;
        let pem = super::pem_of(&recipient, &pem_path)?;
        files::write_atomic(&pem_path, &pem).map_err(KeystoreError::io(&pem_path))?;
        let json = serde_json::to_vec_pretty(&pending).map_err(|e| KeystoreError::Metadata {
            file: json_path.display().to_string(),
            reason: e.to_string(),
        })?;
        files::write_atomic(&json_path, &json).map_err(KeystoreError::io(&json_path))?;
        record.after = Some(pending.certificate.clone());
        record.detail = Some(serde_json::to_value(&pending.activation).unwrap_or_default());
        self.audit(&record)?;
        Ok(pending)
    }

    /// The staged certificate of `alias`, if any.
    pub fn pending(&self, alias: &str) -> Result<Option<Pending>, KeystoreError> {
        Self::check_alias(alias)?;
        let (_, json_path) = self.pending_paths(alias);
        match fs::read(&json_path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| KeystoreError::Metadata {
                        file: json_path.display().to_string(),
                        reason: e.to_string(),
                    })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(KeystoreError::io(&json_path)(e)),
        }
    }

    /// Every staged certificate.
    pub fn all_pending(&self) -> Result<Vec<Pending>, KeystoreError> {
        let dir = self.config.state_dir.join("pending");
        let listing = match fs::read_dir(&dir) {
            Ok(l) => l,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(KeystoreError::io(&dir)(e)),
        };
        let mut out = Vec::new();
        for item in listing {
            let path = item.map_err(KeystoreError::io(&dir))?.path();
            let Some(alias) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".json"))
            else {
                continue;
            };
            if let Some(p) = self.pending(alias)? {
                out.push(p);
            }
        }
        Ok(out)
    }

    fn remove_pending(&self, alias: &str) -> Result<(), KeystoreError> {
        let (pem_path, json_path) = self.pending_paths(alias);
        // Metadata first: without it, nothing is pending.
        for p in [&json_path, &pem_path] {
            match fs::remove_file(p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(KeystoreError::io(p)(e)),
            }
        }
        if let Some(dir) = json_path.parent() {
            files::sync_dir(dir).map_err(KeystoreError::io(dir))?;
        }
        Ok(())
    }

    /// Withdraw the staged certificate of `alias`.
    pub fn withdraw(
        &self,
        alias: &str,
        actor: &str,
        now: SystemTime,
    ) -> Result<Pending, KeystoreError> {
        let _lock = self.lock()?;
        let pending = self
            .pending(alias)?
            .ok_or_else(|| KeystoreError::UnknownAlias(format!("{alias} (nothing staged)")))?;
        self.remove_pending(alias)?;
        let mut record = AuditRecord::new(actor, "withdraw", now);
        record.alias = Some(alias.to_string());
        record.before = Some(pending.certificate.clone());
        self.audit(&record)?;
        Ok(pending)
    }

    /// Make the staged certificate of `alias` the active one (an exchange, with
    /// archive and audit), and drop it from the staging area.
    pub fn activate_pending(
        &self,
        alias: &str,
        actor: &str,
        policy: &CertificatePolicy,
        now: SystemTime,
    ) -> Result<ExchangeOutcome, KeystoreError> {
        Self::check_alias(alias)?;
        // One hold of the lock: no other change can come between the exchange
        // and the removal of what was staged.
        let _lock = self.lock()?;
        let (pem_path, _) = self.pending_paths(alias);
        let pem = fs::read(&pem_path).map_err(KeystoreError::io(&pem_path))?;
        let outcome = self.exchange_locked(alias, &pem, actor, policy, now)?;
        self.remove_pending(alias)?;
        Ok(outcome)
    }
}
