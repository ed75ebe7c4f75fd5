//! File descriptors: the one resource a burst of held requests can run out of.
//!
//! At start the soft limit is raised to the hard limit. The proxy then admits
//! client connections against a budget: every connection may need a second
//! descriptor for its upstream request (a held request needs it at release), so at
//! most `(limit - RESERVE) / 2` client connections are open at once; more wait in
//! the kernel's listen backlog instead of failing with EMFILE. `RESERVE` keeps
//! room for the admin listener and its connections, the keystore, the logs and
//! file watching. A configuration whose `hold_max` cannot fit is refused at start.

use std::time::Duration;

/// Descriptors kept for everything but proxy connections and their upstreams.
pub const RESERVE: u64 = 64;

/// The open-file limit after raising the soft limit to the hard one.
pub fn raise_limit() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if let Some(hard) = limit.maximum
        && limit.current != Some(hard)
    {
        let raised = rustix::process::Rlimit {
            current: Some(hard),
            maximum: Some(hard),
        };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::warn!(error = %e, "cannot raise the open-file limit to the hard limit");
        }
    }
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

/// How many client connections the proxy admits under `limit` descriptors.
pub fn connection_budget(limit: u64) -> usize {
    let budget = limit.saturating_sub(RESERVE) / 2;
    usize::try_from(budget).unwrap_or(usize::MAX).max(1)
}

/// Why a configuration cannot run under the descriptor limit.
#[derive(Debug, thiserror::Error)]
#[error(
    "the routes may hold {held} requests (hold_max) but {limit} open files (ulimit -n) admit {budget} connections: raise the limit (LimitNOFILE) or lower hold_max"
)]
pub struct OverBudget {
    pub held: usize,
    pub limit: u64,
    pub budget: usize,
}

/// Refuse `hold_max`s that the connection budget cannot carry.
pub fn check_hold_max(
    hold_max: impl IntoIterator<Item = usize>,
    limit: u64,
) -> Result<usize, OverBudget> {
    let budget = connection_budget(limit);
    let held: usize = hold_max.into_iter().fold(0, usize::saturating_add);
    if held > budget {
        return Err(OverBudget {
            held,
            limit,
            budget,
        });
    }
    Ok(budget)
}

/// Back-off after failed accepts (out of descriptors and the like): waits grow from
/// 10 ms to 1 s while accepts keep failing, and the failure is logged once per wait
/// rather than once per attempt.
#[derive(Debug, Default)]
pub struct AcceptBackoff {
    failures: u32,
}

impl AcceptBackoff {
    /// An accept failed: how long to wait before the next.
    pub fn failed(&mut self, listener: &str, error: &std::io::Error) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let wait = Duration::from_millis(10u64.saturating_mul(1 << self.failures.min(7)))
            .min(Duration::from_secs(1));
        if self.failures.is_power_of_two() {
            tracing::warn!(listener, error = %error, failures = self.failures, wait_ms = wait.as_millis() as u64, "accept failed; backing off");
        }
        wait
    }

    /// An accept succeeded.
    pub fn succeeded(&mut self) {
        self.failures = 0;
    }

    /// The next connection on `listener`, waiting out failed accepts.
    pub async fn accept(
        &mut self,
        listener: &tokio::net::TcpListener,
        name: &str,
    ) -> (tokio::net::TcpStream, std::net::SocketAddr) {
        loop {
            match listener.accept().await {
                Ok(accepted) => {
                    self.succeeded();
                    return accepted;
                }
                Err(e) => tokio::time::sleep(self.failed(name, &e)).await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_and_hold_max() {
        assert_eq!(connection_budget(1024), 480);
        assert_eq!(connection_budget(10), 1);
        assert!(check_hold_max([1000], 1024).is_err());
        assert_eq!(check_hold_max([200, 200], 1024).unwrap(), 480);
        let e = check_hold_max([100], 128).unwrap_err();
        assert_eq!((e.held, e.budget), (100, 32));
    }

    #[test]
    fn backoff_grows_and_resets() {
        let mut b = AcceptBackoff::default();
        let e = std::io::Error::other("EMFILE");
        let waits: Vec<Duration> = (0..10).map(|_| b.failed("proxy", &e)).collect();
        assert!(waits.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(*waits.last().unwrap(), Duration::from_secs(1));
        b.succeeded();
        assert_eq!(b.failed("proxy", &e), Duration::from_millis(20));
    }
}
