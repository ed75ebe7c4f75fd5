//! The pause state on disk, `state_dir/paused.json`: which routes are paused, by
//! whom and since when, so that a daemon restarted inside a renewal window keeps
//! those routes paused. Written only by [`super::Control`], under its lock.

/// The pause state on disk (`state_dir/paused.json`), so a daemon restarted inside
/// a renewal window keeps its routes paused.
#[derive(Debug, Clone)]
pub struct PauseFile {
    path: std::path::PathBuf,
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct PauseRecord {
    /// Route name → who paused it and when (RFC 3339).
    paused: std::collections::BTreeMap<String, PausedBy>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PausedBy {
    pub by: String,
    pub since: String,
}

impl PauseFile {
    pub fn new(state_dir: &std::path::Path) -> PauseFile {
        PauseFile {
            path: state_dir.join("paused.json"),
        }
    }

    /// The routes recorded as paused; a missing file means none.
    pub fn load(&self) -> std::io::Result<std::collections::BTreeMap<String, PausedBy>> {
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

    /// Record `route` as paused (`Some`) or active (`None`), durably.
    pub fn set(&self, route: &str, paused: Option<PausedBy>) -> std::io::Result<()> {
        let mut record = PauseRecord {
            paused: self.load()?,
        };
        match paused {
            Some(p) => {
                record.paused.entry(route.to_string()).or_insert(p);
            }
            None => {
                record.paused.remove(route);
            }
        }
        if let Some(dir) = self.path.parent() {
            crate::keystore::files::create_dir_all(dir)?;
        }
        let json = serde_json::to_vec_pretty(&record).map_err(std::io::Error::other)?;
        crate::keystore::files::write_atomic(&self.path, &json)
    }
}
