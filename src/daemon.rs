//! `wssgate serve`: load the configuration and keystore, restore the pause state,
//! bind the proxy and admin listeners, log what is served, and run until asked to
//! stop, reloading on request.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::admin::{self, Admin};
use crate::config::Config;
use crate::control::Control;
use crate::proxy::gate::Gates;
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
    #[error("pause state: {0}")]
    PauseState(std::io::Error),
    #[error("admin TLS: {0}")]
    AdminTls(String),
    #[error(transparent)]
    Descriptors(#[from] crate::descriptors::OverBudget),
}

/// Everything the daemon runs on, before any socket is bound.
pub struct Daemon {
    pub shared: Arc<Shared>,
    /// Pause state per route, restored from disk.
    pub gates: Arc<Gates>,
    /// The operations the admin API, the scheduler, the paused-routes file and
    /// reload signals call.
    pub control: Arc<Control>,
}

impl Daemon {
    /// Load and validate the configuration and keystore, and restore the routes
    /// that were paused when the daemon last stopped.
    pub async fn load(config_path: &Path) -> Result<Daemon, StartError> {
        Daemon::load_notifying(config_path, crate::systemd::Notifier::default()).await
    }

    /// [`Daemon::load`], telling the service manager through `notifier` when the
    /// daemon is ready, reloading and stopping.
    pub async fn load_notifying(
        config_path: &Path,
        notifier: crate::systemd::Notifier,
    ) -> Result<Daemon, StartError> {
        let config = Config::load(config_path).map_err(ReloadError::from)?;
        let path = config.path.clone();
        let snapshot =
            Snapshot::build(Arc::new(config), 1, SystemTime::now()).map_err(ReloadError::from)?;
        let shared = Arc::new(Shared::new(snapshot, path));
        let gates = Arc::new(Gates::default());
        let control = {
            let (shared, gates) = (shared.clone(), gates.clone());
            tokio::task::spawn_blocking(move || Control::new(shared, gates).notifying(notifier))
                .await
                .map_err(|e| StartError::PauseState(std::io::Error::other(e.to_string())))?
        };
        let control = Arc::new(control);
        for (route, by) in control.restore().await {
            tracing::warn!(route = %route, by = %by.by, since = %by.since, "route restored paused: resume it when the renewal is done");
        }
        Ok(Daemon {
            shared,
            gates,
            control,
        })
    }

    /// Bind the configured proxy and admin addresses.
    pub async fn bind(&self) -> Result<(TcpListener, TcpListener), StartError> {
        let snapshot = self.shared.load();
        let bind = |addr: std::net::SocketAddr| async move {
            listen(addr).map_err(|source| StartError::Bind { addr, source })
        };
        Ok((
            bind(snapshot.config.proxy.listen).await?,
            bind(snapshot.config.admin.listen).await?,
        ))
    }

    /// Log the routes and certificates of the current snapshot.
    pub fn log_startup(&self) {
        let snapshot = self.shared.load();
        for route in &snapshot.routes {
            let Some(recipient) = &route.recipient else {
                tracing::info!(
                    route = %route.config.name,
                    path = %route.config.path,
                    upstream = %route.config.upstream,
                    mode = route.config.mode.name(),
                    ring = %route.config.alias,
                    paused = self.gates.get(&route.config.name).is_paused(),
                    "route"
                );
                continue;
            };
            let info = recipient.info();
            tracing::info!(
                route = %route.config.name,
                path = %route.config.path,
                upstream = %route.config.upstream,
                alias = %route.config.alias,
                serial = %info.serial,
                not_after = %crate::time::rfc3339(info.not_after),
                sha256 = %info.sha256,
                algorithms = %route.config.algorithms,
                paused = self.gates.get(&route.config.name).is_paused(),
                "route"
            );
        }
        for ring in snapshot.rings.values() {
            for key in &ring.keys {
                tracing::info!(
                    ring = %ring.name,
                    serial = %key.key.summary.serial,
                    not_after = %key.key.summary.not_after,
                    sha256 = %key.key.summary.sha256,
                    state = ?key.key.state,
                    "key ring key"
                );
            }
        }
        snapshot.log_expiry(SystemTime::now());
    }

    /// Run the proxy and the admin API; `intents` delivers reloads and the shutdown.
    pub async fn run(
        self,
        proxy_listener: TcpListener,
        admin_listener: TcpListener,
        mut intents: mpsc::Receiver<Intent>,
    ) -> Result<(), StartError> {
        let snapshot = self.shared.load();
        let tls = match &snapshot.config.admin.tls {
            Some((cert, key)) => {
                Some(admin::tls_acceptor(cert, key).map_err(StartError::AdminTls)?)
            }
            None => None,
        };
        let admin_addr = admin_listener
            .local_addr()
            .map_err(|source| StartError::Bind {
                addr: snapshot.config.admin.listen,
                source,
            })?;
        let admin = Arc::new(Admin::new(self.control.clone(), admin_addr));
        let limit = crate::descriptors::raise_limit();
        let config = &snapshot.config;
        // What the admin and probe ports may hold comes off the proxy's budget.
        let other = [
            config.admin.listener.max_connections,
            config
                .probe
                .as_ref()
                .and_then(|p| p.listener.max_connections),
        ]
        .into_iter()
        .flatten()
        .fold(0, usize::saturating_add);
        let connections = crate::descriptors::proxy_connections(
            snapshot.routes.iter().map(|r| r.config.hold_max),
            limit,
            other,
            config.proxy.listener.max_connections,
        )?;
        let idle_upstream = crate::descriptors::idle_upstream_places(limit, other);
        tracing::info!(
            open_files = limit,
            max_connections = connections,
            idle_upstream,
            "descriptor budget"
        );
        let proxy = Arc::new(Proxy::with_connections(
            self.shared.clone(),
            self.gates.clone(),
            connections,
            idle_upstream,
        ));
        let probe_listener = match &snapshot.config.probe {
            Some(probe) => {
                let addr = probe.listen;
                let listener = listen(addr).map_err(|source| StartError::Bind { addr, source })?;
                if let Ok(addr) = listener.local_addr() {
                    tracing::info!(%addr, "probe listening (healthz, readyz, metrics; no token)");
                }
                Some((listener, probe.listener))
            }
            None => None,
        };
        if let Ok(addr) = proxy_listener.local_addr() {
            tracing::info!(%addr, generation = snapshot.generation, "proxy listening");
        }
        tracing::info!(addr = %admin_addr, tls = tls.is_some(), "admin API listening");
        let (stop_tx, stop_rx) = watch::channel(false);
        let reloader = {
            let (control, admin) = (self.control.clone(), admin.clone());
            let drain_delay = snapshot.config.proxy.drain_delay;
            tokio::spawn(async move {
                while let Some(intent) = intents.recv().await {
                    match intent {
                        Intent::Reload => {
                            // Failures are logged and counted inside the reload.
                            let _ = control.reload(ReloadTrigger::Signal, None).await;
                        }
                        Intent::Shutdown => break,
                    }
                }
                // Drain: readiness goes first, so load balancers stop sending while
                // the proxy still serves; then it stops accepting.
                admin.draining.store(true, Ordering::SeqCst);
                control.notifier().stopping();
                tracing::info!(
                    drain_delay_secs = drain_delay.as_secs_f64(),
                    "draining: /readyz answers 503; new connections are accepted until the drain delay ends"
                );
                tokio::select! {
                    () = tokio::time::sleep(drain_delay) => {}
                    // A second SIGTERM/SIGINT cuts the drain short.
                    Some(Intent::Shutdown) = intents.recv() => {}
                }
                // What is still held will not be released by a resume: answer it.
                control.gates().refuse_held();
                let _ = stop_tx.send(true);
            })
        };
        let stopped = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        let admin_task = tokio::spawn(admin::run(
            admin.clone(),
            admin_listener,
            tls,
            stopped(stop_rx.clone()),
        ));
        let probe_task = probe_listener.map(|(listener, limits)| {
            tokio::spawn(admin::run_probe(
                admin.clone(),
                listener,
                limits,
                stopped(stop_rx.clone()),
            ))
        });
        // Staged certificates with an agreed activation time.
        let scheduler = {
            let control = self.control.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
                loop {
                    tick.tick().await;
                    // Outcomes are logged by `activate_due`.
                    let _ = control.activate_due(SystemTime::now()).await;
                }
            })
        };
        // Reload on file change, when asked for; the watcher lives until shutdown.
        let _watcher = if snapshot.config.keystore.watch {
            match crate::watch::spawn(self.control.clone()) {
                Ok(w) => Some(w),
                Err(e) => {
                    tracing::error!(error = %e, "cannot watch the configuration and keystore; reload with SIGHUP");
                    None
                }
            }
        } else {
            None
        };
        // Expiry warnings at rising severity, daily (also logged at each reload).
        let expiry = {
            let shared = self.shared.clone();
            tokio::spawn(async move {
                let mut day = tokio::time::interval(std::time::Duration::from_secs(86_400));
                day.tick().await; // the first tick is now; startup already logged
                loop {
                    day.tick().await;
                    shared.load().log_expiry(std::time::SystemTime::now());
                }
            })
        };
        // Routes paused through a (watched, shared) file: one change on a ConfigMap
        // pauses them on every replica.
        let paused_by_file = {
            let control = self.control.clone();
            // Applied once before the proxy accepts: a new replica sends nothing on
            // a route the fleet has paused.
            let mut by_file = std::collections::BTreeSet::new();
            control.apply_paused_routes_file(&mut by_file).await;
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
                loop {
                    tick.tick().await;
                    control.apply_paused_routes_file(&mut by_file).await;
                }
            })
        };
        admin.ready.store(true, Ordering::SeqCst);
        self.control.notifier().ready();
        proxy::run(proxy, proxy_listener, stopped(stop_rx)).await;
        reloader.abort();
        scheduler.abort();
        expiry.abort();
        paused_by_file.abort();
        let _ = admin_task.await;
        if let Some(probe) = probe_task {
            let _ = probe.await;
        }
        Ok(())
    }
}

/// Pending connections the kernel may queue per listener (capped by
/// `net.core.somaxconn`): a burst of clients connecting at once is queued, not
/// dropped, where the default of 1024 overflows.
const LISTEN_BACKLOG: u32 = 8192;

fn listen(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}
