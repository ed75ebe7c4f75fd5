//! The pause state on disk, `state_dir/paused.json`: which routes are paused, by
//! whom and since when, so that a daemon restarted inside a renewal window keeps
//! those routes paused. Written only by [`super::Control`], under its lock, from
//! the state it holds in memory (never read back and patched), so writers cannot
//! lose each other's records.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The pause state on disk (`state_dir/paused.json`), so a daemon restarted inside
/// a renewal window keeps its routes paused.
#[derive(Debug, Clone)]
pub struct PauseFile {
    path: PathBuf,
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct PauseRecord {
    /// Route name → who paused it and when (RFC 3339).
    paused: BTreeMap<String, PausedBy>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PausedBy {
    pub by: String,
    pub since: String,
}

/// The paused routes by name.
pub type PausedRoutes = BTreeMap<String, PausedBy>;

/// What [`PauseFile::recover`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovered {
    /// The file was whole (or absent: nothing paused).
    Whole(PausedRoutes),
    /// The file was damaged or unreadable: these routes must stay paused until an
    /// operator resumes them — what it named, or every route when it named none
    /// or could not be read.
    Damaged {
        paused: PausedRoutes,
        reason: String,
    },
}

impl PauseFile {
    pub fn new(state_dir: &Path) -> PauseFile {
        PauseFile {
            path: state_dir.join("paused.json"),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The routes recorded as paused; a missing file means none.
    pub fn load(&self) -> std::io::Result<PausedRoutes> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice::<PauseRecord>(&bytes)
                .map(|r| r.paused)
                .map_err(|e| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("{}: {e}", self.path.display()),
                    )
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Default::default()),
            Err(e) => Err(e),
        }
    }

    /// The pause state at start, whatever shape the file is in: a damaged file
    /// never resumes a route silently. `routes` are the configured route names.
    pub fn recover(&self, routes: &[String], now: SystemTime) -> Recovered {
        let reason = match self.load() {
            Ok(paused) => return Recovered::Whole(paused),
            Err(e) => e.to_string(),
        };
        let by = |why: &str| PausedBy {
            by: format!("wssgate ({why})"),
            since: crate::time::rfc3339(now),
        };
        // What a torn or edited file still names.
        let named: PausedRoutes = std::fs::read(&self.path)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .map(|text| {
                routes
                    .iter()
                    .filter(|r| text.contains(&format!("\"{r}\"")))
                    .map(|r| (r.clone(), by("named in a damaged paused.json")))
                    .collect()
            })
            .unwrap_or_default();
        let paused = if named.is_empty() {
            routes
                .iter()
                .map(|r| (r.clone(), by("paused.json unreadable")))
                .collect()
        } else {
            named
        };
        Recovered::Damaged { paused, reason }
    }

    /// Write the whole pause state, durably (replacing the file in one rename).
    pub fn save(&self, paused: &PausedRoutes) -> std::io::Result<()> {
        let record = PauseRecord {
            paused: paused.clone(),
        };
        if let Some(dir) = self.path.parent() {
            crate::keystore::files::create_dir_all(dir)?;
        }
        let json = serde_json::to_vec_pretty(&record).map_err(std::io::Error::other)?;
        crate::keystore::files::write_atomic(&self.path, &json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes() -> Vec<String> {
        vec!["a".into(), "b".into(), "c".into()]
    }

    #[test]
    fn a_damaged_file_keeps_routes_paused() {
        let dir = tempfile::tempdir().unwrap();
        let file = PauseFile::new(dir.path());
        let now = SystemTime::now();
        assert_eq!(
            file.recover(&routes(), now),
            Recovered::Whole(Default::default())
        );
        let mut paused = PausedRoutes::new();
        paused.insert(
            "b".into(),
            PausedBy {
                by: "ops".into(),
                since: "2026-12-01T00:00:00Z".into(),
            },
        );
        file.save(&paused).unwrap();
        assert_eq!(file.recover(&routes(), now), Recovered::Whole(paused));
        // Torn in the middle of a record: what it names stays paused.
        std::fs::write(file.path(), br#"{"paused": {"b": {"by": "ops", "sin"#).unwrap();
        let Recovered::Damaged { paused, .. } = file.recover(&routes(), now) else {
            panic!("damaged")
        };
        assert_eq!(paused.keys().collect::<Vec<_>>(), ["b"]);
        // Names nothing, or cannot be read: every route stays paused.
        std::fs::write(file.path(), b"{").unwrap();
        let Recovered::Damaged { paused, .. } = file.recover(&routes(), now) else {
            panic!("damaged")
        };
        assert_eq!(paused.len(), 3);
        std::fs::remove_file(file.path()).unwrap();
        std::fs::create_dir(file.path()).unwrap();
        let Recovered::Damaged { paused, reason } = file.recover(&routes(), now) else {
            panic!("unreadable")
        };
        assert_eq!(paused.len(), 3, "{reason}");
    }
}
