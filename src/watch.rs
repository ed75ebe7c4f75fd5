//! Reload when the configuration or the keystore changes on disk.
//!
//! The directories holding the configuration file and the keystore are watched
//! (not recursively). Kubernetes updates a mounted Secret or ConfigMap by making a
//! new hidden directory and renaming a `..data` symlink onto it; that rename is an
//! event in the watched directory like any other. Events are debounced — a burst of
//! them triggers one reload once the directory has been quiet for a moment — and the
//! reload is the same all-or-nothing path as SIGHUP.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::control::Control;
use crate::state::ReloadTrigger;

/// How long the watched directories must be quiet before the reload.
pub const DEBOUNCE: Duration = Duration::from_millis(500);

/// Watch the configuration's and the keystore's directories and reload on change,
/// until the returned watcher is dropped.
pub fn spawn(control: Arc<Control>) -> notify::Result<notify::RecommendedWatcher> {
    let snapshot = control.shared().load();
    let mut dirs: Vec<PathBuf> = vec![snapshot.config.keystore.dir.clone()];
    if let Some(dir) = snapshot.config.path.parent() {
        dirs.push(dir.to_path_buf());
    }
    dirs.sort();
    dirs.dedup();
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event
            && !event.kind.is_access()
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
