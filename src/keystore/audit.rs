//! The audit log: one JSON object per line in `state_dir/audit.log`, appended and
//! flushed to disk before the change it records is reported as done.

use std::io::{self, Write};
use std::path::Path;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::CertificateSummary;
use crate::time::rfc3339;

/// One recorded change or attempted change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// RFC 3339.
    pub time: String,
    /// Who: the admin token's name, or `cli:USER` for the command line.
    pub actor: String,
    /// `import`, `exchange`, `purge`, `pause`, `resume`, `reload`, …
    pub action: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub alias: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub before: Option<CertificateSummary>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub after: Option<CertificateSummary>,
    /// `ok`, or `refused: REASON` / `failed: REASON`.
    pub result: String,
    /// Anything else worth keeping (what a purge deleted, a route name, …).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub detail: Option<serde_json::Value>,
}

impl AuditRecord {
    pub fn new(actor: &str, action: &str, now: SystemTime) -> AuditRecord {
        AuditRecord {
            time: rfc3339(now),
            actor: actor.to_string(),
            action: action.to_string(),
            alias: None,
            before: None,
            after: None,
            result: "ok".to_string(),
            detail: None,
        }
    }
}

/// Append one record and fsync the log.
pub fn append(state_dir: &Path, record: &AuditRecord) -> io::Result<()> {
    let mut line = serde_json::to_vec(record).map_err(io::Error::other)?;
    line.push(b'\n');
    let path = state_dir.join("audit.log");
    let mut f = super::files::open_append(&path)?;
    f.write_all(&line)?;
    f.sync_data()
}

/// Read every record of the log (for tests and `history`).
pub fn read(state_dir: &Path) -> io::Result<Vec<AuditRecord>> {
    let text = match std::fs::read_to_string(state_dir.join("audit.log")) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).map_err(io::Error::other))
        .collect()
}
