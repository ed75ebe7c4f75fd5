//! Process signals as intents: SIGHUP means [`Intent::Reload`], SIGTERM and SIGINT
//! mean [`Intent::Shutdown`]. Nothing else in the crate touches signals.

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

/// What a signal asks the daemon to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    Reload,
    Shutdown,
}

/// Deliver intents from process signals on the returned channel.
pub fn intents() -> std::io::Result<mpsc::Receiver<Intent>> {
    let mut hangup = signal(SignalKind::hangup())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let (tx, rx) = mpsc::channel(8);
    tokio::spawn(async move {
        loop {
            let intent = tokio::select! {
                Some(()) = hangup.recv() => Intent::Reload,
                Some(()) = terminate.recv() => Intent::Shutdown,
                Some(()) = interrupt.recv() => Intent::Shutdown,
                else => return,
            };
            if tx.send(intent).await.is_err() {
                return;
            }
        }
    });
    Ok(rx)
}
