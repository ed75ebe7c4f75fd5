//! The archive of retired certificates and keys: a PEM file and its
//! [`ArchiveRecord`] per retirement, kept until `retain_until`, deleted by purge
//! only. The certificate archive (`state_dir/archive/`) and the key rings'
//! (`state_dir/private-archive/`, owner-only files) are both written here.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::{ArchiveRecord, CertificateSummary, Keystore, KeystoreError, PurgeReport, files};

impl Keystore {
    /// Write `pem` and its [`ArchiveRecord`] (retained for `retention_days` from
    /// `now`) into `place`: the certificate archive or the private key archive.
    pub(super) fn archive_in(
        &self,
        place: &ArchivePlace,
        alias: &str,
        pem: &[u8],
        summary: &CertificateSummary,
        active_from: SystemTime,
        now: SystemTime,
    ) -> Result<(), KeystoreError> {
        let dir = &place.dir;
        files::create_dir_all_within(&self.config.state_dir, dir)
            .map_err(KeystoreError::io(dir))?;
        let retain_until =
            now + Duration::from_secs(u64::from(self.config.retention_days) * 86_400);
        let stamp = crate::time::rfc3339_millis(now).replace(':', "");
        let stem = format!("{stamp}-{}", &summary.sha256[..16]);
        let record = ArchiveRecord {
            alias: alias.to_string(),
            sha256: summary.sha256.clone(),
            serial: summary.serial.clone(),
            issuer: summary.issuer.clone(),
            subject: summary.subject.clone(),
            not_after: summary.not_after.clone(),
            active_from: crate::time::rfc3339_millis(active_from),
            retired_at: crate::time::rfc3339_millis(now),
            retain_until: crate::time::rfc3339_millis(retain_until),
        };
        let pem_path = dir.join(format!("{stem}.pem"));
        (place.write)(&pem_path, pem).map_err(KeystoreError::io(&pem_path))?;
        let json_path = dir.join(format!("{stem}.json"));
        let json = serde_json::to_vec_pretty(&record).map_err(|e| KeystoreError::Metadata {
            file: json_path.display().to_string(),
            reason: e.to_string(),
        })?;
        (place.write)(&json_path, &json).map_err(KeystoreError::io(&json_path))
    }
}

/// Where an archive is kept and how its files are written (the private key
/// archive's are owner-only).
pub(super) struct ArchivePlace {
    pub(super) dir: PathBuf,
    pub(super) write: fn(&Path, &[u8]) -> std::io::Result<()>,
}

/// Delete the archived files under `root/ALIAS/` whose `retain_until` has passed.
pub(super) fn purge_archive(root: &Path, now: SystemTime) -> Result<PurgeReport, KeystoreError> {
    let mut report = PurgeReport::default();
    let aliases = match fs::read_dir(root) {
        Ok(l) => l
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .collect::<Vec<_>>(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(KeystoreError::io(root)(e)),
    };
    for alias in aliases {
        let dir = root.join(&alias);
        for (json, pem) in archive_files(&dir)? {
            let record = read_archive_record(&json)?;
            if retain_until(&record, &json)? < now {
                // The certificate first, then its metadata: a crash in between
                // leaves metadata that the next purge finishes.
                match fs::remove_file(&pem) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(KeystoreError::io(&pem)(e)),
                }
                fs::remove_file(&json).map_err(KeystoreError::io(&json))?;
                files::sync_dir(&dir).map_err(KeystoreError::io(&dir))?;
                report.deleted.push(record);
            } else {
                report.kept.push(record);
            }
        }
    }
    Ok(report)
}

/// A record's `retain_until`, parsed (`json` is where it was read, for errors).
pub(super) fn retain_until(
    record: &ArchiveRecord,
    json: &Path,
) -> Result<SystemTime, KeystoreError> {
    humantime::parse_rfc3339(&record.retain_until).map_err(|e| KeystoreError::Metadata {
        file: json.display().to_string(),
        reason: format!("retain_until: {e}"),
    })
}

/// The metadata beside an archived certificate.
pub(super) fn read_archive_record(json: &Path) -> Result<ArchiveRecord, KeystoreError> {
    let bytes = fs::read(json).map_err(KeystoreError::io(json))?;
    serde_json::from_slice(&bytes).map_err(|e| KeystoreError::Metadata {
        file: json.display().to_string(),
        reason: e.to_string(),
    })
}

/// `(metadata.json, certificate.pem)` pairs in an archive directory.
pub(super) fn archive_files(dir: &Path) -> Result<Vec<(PathBuf, PathBuf)>, KeystoreError> {
    let listing = match fs::read_dir(dir) {
        Ok(l) => l,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(KeystoreError::io(dir)(e)),
    };
    let mut out = Vec::new();
    for item in listing {
        let path = item.map_err(KeystoreError::io(dir))?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.starts_with('.') || !name.ends_with(".json") {
            continue;
        }
        let pem = path.with_extension("pem");
        out.push((path, pem));
    }
    out.sort();
    Ok(out)
}
