//! Reload when the configuration or the keystore changes on disk.
//!
//! What is watched is what a snapshot is built from: the configuration file, the
//! admin token files, the keystore directory and the key rings' `private_dir` —
//! by watching their directories (not recursively) and keeping only the events about those files (anything in
//! the keystore directory). Other files beside the configuration, such as the
//! daemon's own log, trigger nothing. Kubernetes updates a mounted Secret or ConfigMap by making a
//! new hidden directory and renaming a `..data` symlink onto it; that rename is an
//! event in the watched directory like any other. Events are debounced — a burst of
//! them triggers one reload once the directory has been quiet for a moment — and the
//! reload is the same all-or-nothing path as SIGHUP.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::control::Control;
use crate::state::ReloadTrigger;

/// How long the watched directories must be quiet before the reload.
pub const DEBOUNCE: Duration = Duration::from_millis(500);

/// The files a snapshot is built from.
#[derive(Debug, Clone)]
struct Watched {
    /// Any change in here counts: the keystore directory, and the key rings'
    /// `private_dir` when it exists.
    keystore: Vec<PathBuf>,
    /// The configuration and token files.
    files: Vec<PathBuf>,
}

impl Watched {
    fn of(config: &crate::config::Config) -> Watched {
        let mut files = vec![config.path.clone()];
        files.extend(config.admin.tokens.iter().map(|t| t.file.clone()));
        let mut keystore = vec![config.keystore.dir.clone()];
        if config.keystore.private_dir.is_dir()
            && config.keystore.private_dir != config.keystore.dir
        {
            keystore.push(config.keystore.private_dir.clone());
        }
        Watched { keystore, files }
    }

    /// The directories to watch.
    fn dirs(&self) -> Vec<PathBuf> {
        let mut dirs = self.keystore.clone();
        dirs.extend(
            self.files
                .iter()
                .filter_map(|f| f.parent().map(Path::to_path_buf)),
        );
        dirs.sort();
        dirs.dedup();
        dirs
    }

    /// Whether a change at `path` can change the snapshot. A Kubernetes volume
    /// update renames `..data` in the watched file's directory.
    fn concerns(&self, path: &Path) -> bool {
        if self
            .keystore
            .iter()
            .any(|dir| path.parent() == Some(dir.as_path()) || path == dir)
        {
            return true;
        }
        if self.files.iter().any(|f| f == path) {
            return true;
        }
        let kubernetes = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("..data"));
        kubernetes
            && self
                .files
                .iter()
                .any(|f| f.parent().is_some() && f.parent() == path.parent())
    }
}

/// Watch what the snapshot is built from and reload on change, until the
/// returned watcher is dropped.
pub fn spawn(control: Arc<Control>) -> notify::Result<notify::RecommendedWatcher> {
    let snapshot = control.shared().load();
    let watched = Watched::of(&snapshot.config);
    let dirs = watched.dirs();
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event
            && !event.kind.is_access()
            && event.paths.iter().any(|p| watched.concerns(p))
        {
            let _ = tx.send(());
        }
    })?;
    for dir in &dirs {
        watcher.watch(dir, RecursiveMode::NonRecursive)?;
        tracing::info!(dir = %dir.display(), "watching for changes");
    }
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            // Debounce: wait until nothing has happened for DEBOUNCE.
            loop {
                match tokio::time::timeout(DEBOUNCE, rx.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            // Failures are logged and counted inside the reload; the old state stays.
            let _ = control.reload(ReloadTrigger::FileChange, None).await;
        }
    });
    Ok(watcher)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_a_snapshot_is_built_from_concerns_the_watcher() {
        let watched = Watched {
            keystore: vec![PathBuf::from("/etc/wssgate/keystore")],
            files: vec![
                PathBuf::from("/etc/wssgate/wssgate.toml"),
                PathBuf::from("/run/secrets/admin.token"),
            ],
        };
        for yes in [
            "/etc/wssgate/wssgate.toml",
            "/etc/wssgate/keystore/orders.pem",
            "/etc/wssgate/keystore/..data",
            "/etc/wssgate/..data",
            "/run/secrets/admin.token",
            "/run/secrets/..data_tmp",
        ] {
            assert!(watched.concerns(Path::new(yes)), "{yes}");
        }
        for no in [
            "/etc/wssgate/wssgate.log",
            "/etc/wssgate/.wssgate.toml.swp",
            "/run/secrets/other",
            "/etc/wssgate/keystore/sub/x.pem",
        ] {
            assert!(!watched.concerns(Path::new(no)), "{no}");
        }
        assert_eq!(
            watched.dirs(),
            [
                PathBuf::from("/etc/wssgate"),
                PathBuf::from("/etc/wssgate/keystore"),
                PathBuf::from("/run/secrets")
            ]
        );
    }
}
