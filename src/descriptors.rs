//! File descriptors: the one resource a burst of held requests can run out of.
//!
//! At start the soft limit is raised to the hard limit. The proxy then admits
//! client connections against a budget: every connection may need a second
//! descriptor for its upstream request (a held request needs it at release), and
//! the upstream connections left idle in the pool by connections that closed have
//! a share of their own ([`idle_upstream_places`]). So, of the `usable`
//! descriptors, `limit - RESERVE - other`, where `other` is what the admin and
//! probe listeners may hold (their own `max_connections`), the pool may hold a
//! sixteenth (at most [`MAX_IDLE_UPSTREAM`]) and half the rest is the number of
//! client connections open at once; more wait in the kernel's listen backlog
//! instead of failing with EMFILE. `RESERVE` keeps room for the listeners, the
//! keystore, the logs and file watching. A configuration whose `hold_max` cannot
//! fit is refused at start.

use std::time::Duration;

/// Descriptors kept for everything but connections: listeners, keystore and
/// state files, logs, file watching.
pub const RESERVE: u64 = 32;

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

/// Idle upstream connections the pool keeps at most, however many descriptors
/// there are: more than the requests in flight at once to most deployments'
/// receivers.
pub const MAX_IDLE_UPSTREAM: usize = 1024;

/// Descriptors for connections under `limit` while the admin and probe
/// listeners may hold `other`.
fn usable(limit: u64, other: usize) -> u64 {
    limit.saturating_sub(RESERVE.saturating_add(other as u64))
}

/// How many idle upstream connections the pool may keep under `limit`
/// descriptors: a sixteenth of the usable ones, at most [`MAX_IDLE_UPSTREAM`].
/// A client connection's own upstream connection, in use or kept for its next
/// request, is the second of its two descriptors; one it leaves behind when it
/// closes needs a place of this share, or is closed.
pub fn idle_upstream_places(limit: u64, other: usize) -> usize {
    usize::try_from(usable(limit, other) / 16)
        .unwrap_or(usize::MAX)
        .min(MAX_IDLE_UPSTREAM)
}

/// How many client connections the proxy admits under `limit` descriptors while
/// the admin and probe listeners may hold `other` connections: half of what the
/// pool's share leaves.
pub fn connection_budget(limit: u64, other: usize) -> usize {
    let pool = idle_upstream_places(limit, other) as u64;
    let budget = usable(limit, other).saturating_sub(pool) / 2;
    usize::try_from(budget).unwrap_or(usize::MAX).max(1)
}

/// Why a configuration cannot run under the descriptor limit.
#[derive(Debug, thiserror::Error)]
#[error(
    "the routes may hold {held} requests (hold_max) but the proxy admits {budget} connections ({limit} open files, ulimit -n, or proxy.max_connections): raise the limit (LimitNOFILE) or max_connections, or lower hold_max"
)]
pub struct OverBudget {
    pub held: usize,
    pub limit: u64,
    pub budget: usize,
}

/// The proxy's connection cap: `max_connections` when set, within the descriptor
/// budget; refused when the routes' `hold_max`s cannot fit in it.
pub fn proxy_connections(
    hold_max: impl IntoIterator<Item = usize>,
    limit: u64,
    other: usize,
    max_connections: Option<usize>,
) -> Result<usize, OverBudget> {
    let mut budget = connection_budget(limit, other);
    if let Some(cap) = max_connections {
        if cap > budget {
            tracing::warn!(
                max_connections = cap,
                budget,
                open_files = limit,
                "proxy.max_connections is above what the open-file limit admits; using the budget"
            );
        }
        budget = budget.min(cap);
    }
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
        // 1,024 - 32 - 24 = 968 usable: 60 for idle upstream connections, 454
        // client connections with two each.
        assert_eq!(idle_upstream_places(1024, 24), 60);
        assert_eq!(connection_budget(1024, 24), 454);
        assert_eq!(connection_budget(10, 24), 1);
        assert_eq!(idle_upstream_places(10, 24), 0);
        assert!(proxy_connections([1000], 1024, 24, None).is_err());
        assert_eq!(proxy_connections([200, 200], 1024, 24, None).unwrap(), 454);
        let e = proxy_connections([100], 128, 24, None).unwrap_err();
        assert_eq!((e.held, e.budget), (100, 34));
        // An explicit cap below the budget is the cap, and hold_max must fit in it.
        assert_eq!(proxy_connections([50], 1024, 24, Some(100)).unwrap(), 100);
        assert!(proxy_connections([150], 1024, 24, Some(100)).is_err());
        assert_eq!(proxy_connections([1], 128, 24, Some(1000)).unwrap(), 34);
    }

    #[test]
    fn connections_and_the_idle_pool_fit_in_the_limit() {
        for limit in [0, 10, 64, 128, 1024, 4096, 65_536, 1 << 20] {
            for other in [0, 8, 24, 1000] {
                let (budget, pool) = (
                    connection_budget(limit, other) as u64,
                    idle_upstream_places(limit, other) as u64,
                );
                assert!(pool <= MAX_IDLE_UPSTREAM as u64);
                if usable(limit, other) >= 2 {
                    assert!(
                        RESERVE + other as u64 + 2 * budget + pool <= limit,
                        "limit {limit}, other {other}: {budget} connections, {pool} idle"
                    );
                }
            }
        }
        assert_eq!(idle_upstream_places(1 << 20, 24), MAX_IDLE_UPSTREAM);
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
