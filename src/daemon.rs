//! `wssgate serve`: load the configuration and keystore, bind the listener, log
//! what is served, and run the proxy until asked to stop, reloading on request.

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::config::Config;
use crate::proxy::{self, Proxy};
use crate::signal::Intent;
use crate::state::{ReloadError, ReloadTrigger, Shared, Snapshot};

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Load(#[from] ReloadError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

/// Load and validate everything the daemon needs, without binding.
pub fn load(config_path: &Path) -> Result<Arc<Shared>, StartError> {
    let config = Config::load(config_path).map_err(ReloadError::from)?;
    let path = config.path.clone();
    let snapshot =
        Snapshot::build(Arc::new(config), 1, SystemTime::now()).map_err(ReloadError::from)?;
    Ok(Arc::new(Shared::new(snapshot, path)))
}

/// Log the routes and certificates of the current snapshot.
pub fn log_startup(shared: &Shared) {
    let snapshot = shared.load();
    for route in &snapshot.routes {
        let info = route.recipient.info();
        tracing::info!(
            route = %route.config.name,
            path = %route.config.path,
            upstream = %route.config.upstream,
            alias = %route.config.alias,
            serial = %info.serial,
            not_after = %crate::wss::certificate::rfc3339(info.not_after),
            sha256 = %info.sha256,
            algorithms = %route.config.algorithms,
            "route"
        );
    }
    for w in &snapshot.warnings {
        tracing::warn!(alias = %w.alias, serial = %w.serial, days_left = w.days_left, "certificate expires soon");
    }
}

/// Run the proxy on `listener`; `intents` delivers reloads and the shutdown.
pub async fn run(shared: Arc<Shared>, listener: TcpListener, mut intents: mpsc::Receiver<Intent>) {
    let proxy = Arc::new(Proxy::new(shared.clone()));
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, generation = shared.load().generation, "proxy listening");
    }
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let reloader = {
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut stop = Some(stop_tx);
            while let Some(intent) = intents.recv().await {
                match intent {
                    Intent::Reload => {
                        let shared = shared.clone();
                        // Failures are logged and counted inside reload().
                        let _ = tokio::task::spawn_blocking(move || {
                            shared.reload(ReloadTrigger::Signal)
                        })
                        .await;
                    }
                    Intent::Shutdown => {
                        if let Some(tx) = stop.take() {
                            let _ = tx.send(());
                        }
                    }
                }
            }
            if let Some(tx) = stop.take() {
                let _ = tx.send(());
            }
        })
    };
    proxy::run(proxy, listener, shutdown_future(stop_rx)).await;
    reloader.abort();
}

async fn shutdown_future(rx: tokio::sync::oneshot::Receiver<()>) {
    let _ = rx.await;
}

/// Bind the configured proxy address.
pub async fn bind(shared: &Shared) -> Result<TcpListener, StartError> {
    let addr = shared.load().config.proxy.listen;
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })
}
