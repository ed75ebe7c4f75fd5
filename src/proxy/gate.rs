//! Pause, hold and resume, per route.
//!
//! A request enters its route's gate before it is encrypted. While the route is
//! active, entering costs two atomic operations. While it is paused, the request is
//! refused at once (`on_pause = "reject"`) or parked (`"hold"`, bounded by
//! `hold_max` and `hold_timeout`) in a FIFO queue; `resume` releases the parked
//! requests in arrival order. A parked request whose client goes away leaves the
//! queue and is never sent. Encryption happens after the gate, so a held request
//! is encrypted with the certificate current when it is released.
//!
//! Pause state lives here, outside the snapshot: it survives reloads. Persisting
//! it (so a restart inside a renewal window stays paused) is
//! [`crate::control`]'s, which is also the only caller of `pause` and `resume`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::{Mutex, Notify, OwnedMutexGuard};

use crate::config::OnPause;

/// Why a request did not pass the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Paused and `on_pause = "reject"`.
    Rejected,
    /// `hold_max` requests are already held.
    HoldFull,
    /// Held for `hold_timeout` without a resume.
    HoldTimeout,
    /// The daemon is shutting down: a held request is answered, not cut off.
    ShuttingDown,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refusal::Rejected => "paused and on_pause = reject",
            Refusal::HoldFull => "hold_max requests already held",
            Refusal::HoldTimeout => "held for hold_timeout without a resume",
            Refusal::ShuttingDown => "held when the daemon shut down",
        })
    }
}

/// The gate of one route.
pub struct Gate {
    paused: AtomicBool,
    /// Requests past the gate and not yet answered by the upstream.
    in_flight: AtomicUsize,
    /// Requests parked while paused.
    held: AtomicUsize,
    /// Woken whenever `in_flight` drops, for `pause?wait`.
    drained: Notify,
    /// Set at shutdown: held requests leave with [`Refusal::ShuttingDown`].
    closing: AtomicBool,
    /// Wakes held requests when `closing` is set.
    closing_now: Notify,
    /// Parked requests queue on this mutex, which the pause holds: tokio's mutex
    /// is fair (FIFO), so `resume` releases them in arrival order. Only the paused
    /// path touches it.
    queue: Arc<Mutex<()>>,
    /// The guard that keeps the queue closed while paused.
    closed: std::sync::Mutex<Option<OwnedMutexGuard<()>>>,
    /// Serializes pauses, so a second pause does not wait on the first's guard.
    pausing: Mutex<()>,
    /// Held requests whose client went away before release (never sent).
    pub abandoned_total: AtomicU64,
}

/// Proof that a request is in flight; dropping it ends that.
pub struct InFlight {
    gate: Arc<Gate>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.gate.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.gate.drained.notify_waiters();
    }
}

/// Counts a request as held for as long as it waits (also if its future is
/// dropped because the client went away).
struct Held<'a> {
    gate: &'a Gate,
    released: bool,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.gate.held.fetch_sub(1, Ordering::SeqCst);
        if !self.released {
            self.gate.abandoned_total.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Gate {
    fn new() -> Gate {
        Gate {
            paused: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            held: AtomicUsize::new(0),
            drained: Notify::new(),
            closing: AtomicBool::new(false),
            closing_now: Notify::new(),
            queue: Arc::new(Mutex::new(())),
            closed: std::sync::Mutex::new(None),
            pausing: Mutex::new(()),
            abandoned_total: AtomicU64::new(0),
        }
    }

    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::SeqCst)
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    pub fn held(&self) -> usize {
        self.held.load(Ordering::SeqCst)
    }

    /// Try to pass without waiting: counted in flight unless paused.
    fn try_pass(self: &Arc<Self>) -> Option<InFlight> {
        // Count first, then look: a pause that sets `paused` and then waits for
        // `in_flight` to reach 0 either sees this request or is seen by it.
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        if self.paused.load(Ordering::SeqCst) {
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            self.drained.notify_waiters();
            return None;
        }
        Some(InFlight { gate: self.clone() })
    }

    /// Pass the gate, waiting while paused as the route says.
    pub async fn enter(
        self: &Arc<Self>,
        on_pause: OnPause,
        hold_max: usize,
        hold_timeout: Duration,
    ) -> Result<InFlight, Refusal> {
        // While held requests are being released after a resume, a newcomer
        // queues behind them instead of overtaking: arrival order holds across
        // the resume.
        if self.held.load(Ordering::SeqCst) == 0
            && let Some(pass) = self.try_pass()
        {
            return Ok(pass);
        }
        if on_pause == OnPause::Reject && self.is_paused() {
            return Err(Refusal::Rejected);
        }
        // `hold_max` bounds what a pause holds; a newcomer behind a release in
        // progress waits an instant and is not refused for it.
        if self.held.fetch_add(1, Ordering::SeqCst) >= hold_max && self.is_paused() {
            self.held.fetch_sub(1, Ordering::SeqCst);
            return Err(Refusal::HoldFull);
        }
        let mut held = Held {
            gate: self,
            released: false,
        };
        let deadline = tokio::time::Instant::now() + hold_timeout;
        loop {
            let closing = self.closing_now.notified();
            if self.closing.load(Ordering::SeqCst) {
                held.released = true;
                return Err(Refusal::ShuttingDown);
            }
            let turn = tokio::select! {
                turn = tokio::time::timeout_at(deadline, self.queue.clone().lock_owned()) => turn,
                () = closing => {
                    held.released = true;
                    return Err(Refusal::ShuttingDown);
                }
            };
            let Ok(turn) = turn else {
                held.released = true; // refused, not abandoned
                return Err(Refusal::HoldTimeout);
            };
            let pass = self.try_pass();
            drop(turn); // the next in line may go
            if let Some(pass) = pass {
                held.released = true;
                return Ok(pass);
            }
            // Paused again between the resume and our turn: queue again.
            tokio::task::yield_now().await;
        }
    }

    /// Stop letting requests through. Idempotent.
    pub async fn pause(&self) {
        let _one_at_a_time = self.pausing.lock().await;
        self.paused.store(true, Ordering::SeqCst);
        if self
            .closed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
        {
            return;
        }
        // Held requests hold the queue only for an instant, so this is quick.
        let guard = self.queue.clone().lock_owned().await;
        *self.closed.lock().unwrap_or_else(|p| p.into_inner()) = Some(guard);
    }

    /// Wait until nothing is in flight, up to `timeout`; true if drained.
    pub async fn wait_drained(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.drained.notified();
            if self.in_flight() == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.in_flight() == 0;
            }
        }
    }

    /// Let requests through again, held ones first in arrival order. Idempotent.
    pub fn resume(&self) {
        self.paused.store(false, Ordering::SeqCst);
        let guard = self.closed.lock().unwrap_or_else(|p| p.into_inner()).take();
        drop(guard);
    }
}

/// The gates of all routes, by route name.
#[derive(Default)]
pub struct Gates {
    map: ArcSwap<HashMap<String, Arc<Gate>>>,
}

impl Gates {
    /// The gate of `route`, created (active) on first use.
    pub fn get(&self, route: &str) -> Arc<Gate> {
        if let Some(g) = self.map.load().get(route) {
            return g.clone();
        }
        let gate = Arc::new(Gate::new());
        self.map.rcu(|m| {
            let mut m = HashMap::clone(m);
            m.entry(route.to_string()).or_insert_with(|| gate.clone());
            Arc::new(m)
        });
        self.map.load().get(route).cloned().unwrap_or(gate)
    }

    /// Shutting down: every request held now or later is refused
    /// ([`Refusal::ShuttingDown`]) instead of waiting for a resume that will not come.
    pub fn refuse_held(&self) {
        for gate in self.map.load().values() {
            gate.closing.store(true, Ordering::SeqCst);
            gate.closing_now.notify_waiters();
        }
    }

    /// Names of the paused routes.
    pub fn paused(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .map
            .load()
            .iter()
            .filter(|(_, g)| g.is_paused())
            .map(|(n, _)| n.clone())
            .collect();
        v.sort();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn held_requests_leave_in_arrival_order() {
        let gates = Arc::new(Gates::default());
        let gate = gates.get("r");
        gate.pause().await;
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..20 {
            let (gate, order) = (gate.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let pass = gate
                    .enter(OnPause::Hold, 100, Duration::from_secs(5))
                    .await
                    .unwrap();
                order.lock().unwrap().push(i);
                drop(pass);
            }));
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        assert_eq!(gate.held(), 20);
        gate.resume();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), (0..20).collect::<Vec<_>>());
        assert_eq!(gate.held(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_newcomer_at_the_resume_does_not_overtake_the_held() {
        let gate = Arc::new(Gates::default()).get("r");
        gate.pause().await;
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let enter = |who: usize| {
            let (gate, order) = (gate.clone(), order.clone());
            tokio::spawn(async move {
                let pass = gate
                    .enter(OnPause::Hold, 100, Duration::from_secs(5))
                    .await
                    .unwrap();
                order.lock().unwrap().push(who);
                // Each held request takes a moment at the gate, as a real one does.
                tokio::task::yield_now().await;
                drop(pass);
            })
        };
        let mut tasks: Vec<_> = (0..50).map(enter).collect();
        while gate.held() < 50 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        gate.resume();
        tasks.push(enter(50));
        for t in tasks {
            t.await.unwrap();
        }
        let order = order.lock().unwrap();
        assert_eq!(
            order.last(),
            Some(&50),
            "the newcomer went before the held: {order:?}"
        );
    }

    #[tokio::test]
    async fn reject_full_and_timeout() {
        let gate = Gates::default().get("r");
        gate.pause().await;
        gate.pause().await; // idempotent
        assert_eq!(
            gate.enter(OnPause::Reject, 10, Duration::from_secs(1))
                .await
                .err(),
            Some(Refusal::Rejected)
        );
        assert_eq!(
            gate.enter(OnPause::Hold, 0, Duration::from_secs(1))
                .await
                .err(),
            Some(Refusal::HoldFull)
        );
        assert_eq!(
            gate.enter(OnPause::Hold, 10, Duration::from_millis(20))
                .await
                .err(),
            Some(Refusal::HoldTimeout)
        );
        gate.resume();
        gate.resume();
        assert!(
            gate.enter(OnPause::Hold, 10, Duration::from_millis(20))
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn pause_waits_for_in_flight_and_abandoned_requests_are_counted() {
        let gate = Gates::default().get("r");
        let pass = gate
            .enter(OnPause::Hold, 10, Duration::from_secs(1))
            .await
            .unwrap();
        gate.pause().await;
        assert!(!gate.wait_drained(Duration::from_millis(20)).await);
        drop(pass);
        assert!(gate.wait_drained(Duration::from_millis(20)).await);
        let g = gate.clone();
        let waiter = tokio::spawn(async move {
            g.enter(OnPause::Hold, 10, Duration::from_secs(10))
                .await
                .is_ok()
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(gate.held(), 1);
        waiter.abort(); // the client went away
        let _ = waiter.await;
        assert_eq!(gate.held(), 0);
        assert_eq!(gate.abandoned_total.load(Ordering::Relaxed), 1);
    }
}
