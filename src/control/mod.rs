//! Control: what an operator or a keystore administrator can do to a running
//! daemon — the operations of both renewal procedures — in one type with typed
//! outcomes. The admin API, the staged-activation scheduler, the paused-routes
//! file, reload signals and file watching only translate to and from it; none of
//! them holds renewal logic of its own.
//!
//! Every operation is audited (certificate changes by the keystore itself, route
//! and reload changes here) and pause state is persisted here, so that what the
//! audit log and `paused.json` say is what happened, whoever asked.
//!
//! # Lock discipline
//! 1. `changes` (in process, async) is taken first by every mutation and held
//!    until all its effects — keystore on disk, published snapshot, gate, pause
//!    file, audit line — are complete. So two operations never interleave: an
//!    exchange cannot fall between a resume's staged activation and its release
//!    of held requests, and `paused.json` has one writer at a time. It is never
//!    held while a pause waits for in-flight requests to drain.
//! 2. Inside it, the keystore's file lock (`state_dir/keystore.lock`, shared with
//!    the command line in other processes) is taken by each keystore operation,
//!    once per operation.
//! 3. Inside that, [`Shared::reload`]'s lock serializes build-and-swap.
//!
//! Reads (views of routes, the keystore) take none of these. Blocking work (files,
//! certificate parsing, reloads) runs on the blocking pool, never on the async
//! workers.

mod keyring;
mod pause_file;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::Mutex;

pub use keyring::KeyLive;
pub use pause_file::{PauseFile, PausedBy, PausedRoutes, Recovered};

use crate::keystore::audit::{self, AuditRecord};
use crate::keystore::{
    Activation, CertificateSummary, ExchangeOutcome, Keystore, KeystoreError, Pending,
};
use crate::proxy::gate::Gates;
use crate::state::{ReloadError, ReloadOutcome, ReloadTrigger, Shared, Snapshot};

/// Why an operation did not (entirely) happen.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("no route named {0:?}")]
    UnknownRoute(String),
    #[error("nothing is staged for alias {0:?}")]
    NothingStaged(String),
    #[error(transparent)]
    Keystore(#[from] KeystoreError),
    /// The route is paused (and stays so) but `paused.json` does not say it.
    #[error("paused, but the pause state could not be saved: {0}")]
    PauseNotSaved(std::io::Error),
    /// The route stays paused.
    #[error("not resumed: the pause state could not be saved: {0}")]
    ResumeNotSaved(std::io::Error),
    /// The route stays paused: what it holds would go out under the wrong key.
    #[error("not resumed: the new certificate could not be made live: {0}")]
    ActivationFailed(Box<ControlError>),
    /// The keystore holds the new certificate; the running snapshot does not.
    #[error("the certificate was exchanged on disk but the reload failed: {reason}")]
    NotLive {
        outcome: Box<ExchangeOutcome>,
        reason: ReloadError,
    },
    /// The key ring on disk holds the new key; the running snapshot does not.
    #[error("the key was added on disk but the reload failed: {reason}")]
    KeyNotLive {
        outcome: Box<crate::keystore::RingAddOutcome>,
        reason: ReloadError,
    },
    /// The running snapshot (generation `kept_generation`) stays.
    #[error("{reason}")]
    Reload {
        reason: ReloadError,
        kept_generation: u64,
    },
    /// A blocking task died (a bug, not an input).
    #[error("internal error: {0}")]
    Internal(String),
}

/// What a pause did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paused {
    pub route: String,
    /// Nothing was in flight when the call returned (after the wait, if any).
    pub drained: bool,
}

/// What a resume did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resumed {
    pub route: String,
    /// Held requests released, in arrival order.
    pub released: usize,
    /// The staged certificate activated before the release, if there was one.
    pub activated: Option<CertificateSummary>,
}

/// A certificate made live: on disk, archived, audited, and in the snapshot.
#[derive(Debug, Clone)]
pub struct Live {
    pub outcome: ExchangeOutcome,
    /// The snapshot generation that carries it.
    pub generation: u64,
}

/// Who asked, for the audit log.
#[derive(Debug, Clone, Copy)]
pub struct Actor<'a>(pub &'a str);

/// The operations, and the state they change.
pub struct Control {
    /// The published snapshot and its reload path.
    shared: Arc<Shared>,
    /// Pause state per route (outside the snapshot: it survives reloads).
    gates: Arc<Gates>,
    /// Where pause state is persisted.
    pause_file: PauseFile,
    /// Rule 1 of the lock discipline; guards what this type is the only writer of.
    changes: Mutex<Changes>,
    /// Tells the service manager when a reload is under way (none in tests).
    notifier: crate::systemd::Notifier,
}

/// The state only [`Control`] changes, under its lock.
#[derive(Debug, Default)]
struct Changes {
    /// Timed activations of staged certificates, alias → when (parsed once).
    schedule: BTreeMap<String, Scheduled>,
    /// Paused routes with who paused them: what `paused.json` says, written
    /// whole from here.
    paused: PausedRoutes,
}

/// A staged certificate's agreed activation.
#[derive(Debug, Clone)]
struct Scheduled {
    at: SystemTime,
    staged_by: String,
}

impl Control {
    /// Operate on `shared` and `gates`; the schedule of timed activations is read
    /// from the keystore's staging area once (blocking).
    pub fn new(shared: Arc<Shared>, gates: Arc<Gates>) -> Control {
        let snapshot = shared.load();
        let pause_file = PauseFile::new(&snapshot.config.keystore.state_dir);
        let schedule = Keystore::new(snapshot.config.keystore.clone())
            .all_pending()
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "cannot read the staged certificates; none is scheduled");
                Vec::new()
            })
            .into_iter()
            .filter_map(|p| match p.activation {
                Activation::At { at } => Some((
                    p.alias,
                    Scheduled {
                        at,
                        staged_by: p.staged_by,
                    },
                )),
                Activation::OnResume => None,
            })
            .collect();
        Control {
            shared,
            gates,
            pause_file,
            changes: Mutex::new(Changes {
                schedule,
                paused: PausedRoutes::new(),
            }),
            notifier: crate::systemd::Notifier::default(),
        }
    }

    /// Reloads are announced to the service manager through `notifier`.
    pub fn notifying(mut self, notifier: crate::systemd::Notifier) -> Control {
        self.notifier = notifier;
        self
    }

    pub fn notifier(&self) -> &crate::systemd::Notifier {
        &self.notifier
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    pub fn gates(&self) -> &Arc<Gates> {
        &self.gates
    }

    /// Pause the routes `paused.json` names (a restart inside a renewal window).
    /// A damaged or unreadable file pauses what it still names, or every route,
    /// says so at error level and is written anew: a route is never resumed
    /// because its record was lost. Returns what is paused now.
    pub async fn restore(&self) -> PausedRoutes {
        let mut changes = self.changes.lock().await;
        let routes: Vec<String> = self
            .shared
            .load()
            .routes
            .iter()
            .map(|r| r.config.name.clone())
            .collect();
        let file = self.pause_file.clone();
        let recovered = blocking(move || file.recover(&routes, SystemTime::now()))
            .await
            .unwrap_or_else(|e| Recovered::Damaged {
                paused: PausedRoutes::new(),
                reason: e.to_string(),
            });
        let paused = match recovered {
            Recovered::Whole(paused) => paused,
            Recovered::Damaged { paused, reason } => {
                let names: Vec<&str> = paused.keys().map(String::as_str).collect();
                tracing::error!(file = %self.pause_file.path().display(), error = %reason, paused = %names.join(", "), "the pause state is damaged: these routes stay paused until an operator resumes them");
                let (file, state) = (self.pause_file.clone(), paused.clone());
                match blocking(move || file.save(&state)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        tracing::error!(error = %e, "the pause state cannot be written anew; pauses and resumes will fail until it can")
                    }
                    Err(e) => tracing::error!(error = %e, "the pause state was not written"),
                }
                paused
            }
        };
        for route in paused.keys() {
            self.gates.get(route).pause().await;
        }
        changes.paused = paused.clone();
        paused
    }

    /// Stop sending on `route`. With `wait`, return once nothing is in flight or
    /// the wait ran out (`drained` says which).
    pub async fn pause(
        &self,
        route: &str,
        actor: Actor<'_>,
        wait: Option<Duration>,
    ) -> Result<Paused, ControlError> {
        let gate = {
            let mut changes = self.changes.lock().await;
            let snapshot = self.known_route(route)?;
            let gate = self.gates.get(route);
            gate.pause().await;
            let now = SystemTime::now();
            let mut record = AuditRecord::new(actor.0, "pause", now);
            record.detail = Some(route_detail(route, None));
            let by = PausedBy {
                by: actor.0.to_string(),
                since: crate::time::rfc3339(now),
            };
            let mut paused = changes.paused.clone();
            paused.entry(route.to_string()).or_insert(by);
            if let Err(e) = self.persist(&paused).await {
                record.result = format!("failed: pause state not saved: {e}");
                self.audit(&snapshot, record).await;
                return Err(ControlError::PauseNotSaved(e));
            }
            changes.paused = paused;
            self.audit(&snapshot, record).await;
            tracing::info!(route = %route, by = %actor.0, "route paused");
            gate
        };
        let drained = match wait {
            Some(wait) => gate.wait_drained(wait).await,
            None => gate.in_flight() == 0,
        };
        Ok(Paused {
            route: route.to_string(),
            drained,
        })
    }

    /// Let `route` send again: a certificate staged to activate on resume becomes
    /// live first — at the first resume of a route using the alias, since what that
    /// route releases is meant for the receiver's new key — then the held requests
    /// are released in arrival order.
    pub async fn resume(&self, route: &str, actor: Actor<'_>) -> Result<Resumed, ControlError> {
        let mut changes = self.changes.lock().await;
        let snapshot = self.known_route(route)?;
        let gate = self.gates.get(route);
        let held = gate.held();
        let mut record = AuditRecord::new(actor.0, "resume", SystemTime::now());
        record.detail = Some(route_detail(route, Some(held)));
        let alias = snapshot
            .route(route)
            .map(|r| r.config.alias.clone())
            .unwrap_or_default();
        let mut activated = None;
        let staged = match self.staged_on_resume(&snapshot, &alias).await {
            Ok(staged) => staged,
            Err(e) => {
                record.result = format!("failed: staged certificate unreadable: {e}");
                self.audit(&snapshot, record).await;
                return Err(ControlError::ActivationFailed(Box::new(e)));
            }
        };
        if staged {
            match self.activate(&alias, actor.0).await {
                Ok(live) => {
                    changes.schedule.remove(&alias);
                    record.detail = Some(serde_json::json!({
                        "route": route, "held": held, "activated": live.outcome.current
                    }));
                    activated = Some(live.outcome.current);
                }
                Err(e) => {
                    record.result = format!("failed: staged certificate not activated: {e}");
                    self.audit(&snapshot, record).await;
                    return Err(ControlError::ActivationFailed(Box::new(e)));
                }
            }
        }
        // What is released must go out under the certificate the keystore holds:
        // an exchange or activation whose reload failed left the snapshot behind.
        if let Err(e) = self.ensure_live(&alias).await {
            record.result = format!("failed: the keystore's certificate is not live: {e}");
            self.audit(&snapshot, record).await;
            return Err(ControlError::ActivationFailed(Box::new(e)));
        }
        // Recorded as active on disk only once nothing can stop the resume.
        let mut paused = changes.paused.clone();
        paused.remove(route);
        if let Err(e) = self.persist(&paused).await {
            record.result = format!("failed: pause state not saved: {e}");
            self.audit(&snapshot, record).await;
            return Err(ControlError::ResumeNotSaved(e));
        }
        changes.paused = paused;
        gate.resume();
        self.audit(&snapshot, record).await;
        tracing::info!(route = %route, by = %actor.0, released = held, "route resumed");
        Ok(Resumed {
            route: route.to_string(),
            released: held,
            activated,
        })
    }

    /// Exchange the certificate of `alias` and make it live: when this returns
    /// `Ok`, every new message is encrypted for the new certificate.
    pub async fn exchange(
        &self,
        alias: &str,
        certificate: bytes::Bytes,
        actor: Actor<'_>,
    ) -> Result<Live, ControlError> {
        let _changes = self.changes.lock().await;
        let (store, policy) = self.keystore_for(alias);
        let (alias_owned, actor_owned) = (alias.to_string(), actor.0.to_string());
        let outcome = blocking(move || {
            store.exchange(
                &alias_owned,
                &certificate,
                &actor_owned,
                &policy,
                SystemTime::now(),
            )
        })
        .await?
        .inspect_err(|e| {
            tracing::warn!(alias = %alias, by = %actor.0, error = %e, "certificate exchange refused; the current certificate stays");
        })?;
        let live = self.make_live(outcome).await?;
        tracing::info!(alias = %alias, by = %actor.0, serial = %live.outcome.current.serial, sha256 = %live.outcome.current.sha256, generation = live.generation, "certificate exchanged and live");
        Ok(live)
    }

    /// Validate and stage a certificate for `alias`, to become active on resume
    /// or at a time (replacing what was staged before).
    pub async fn stage(
        &self,
        alias: &str,
        certificate: bytes::Bytes,
        activation: Activation,
        actor: Actor<'_>,
    ) -> Result<Pending, ControlError> {
        let mut changes = self.changes.lock().await;
        let (store, policy) = self.keystore_for(alias);
        let (alias_owned, actor_owned) = (alias.to_string(), actor.0.to_string());
        let staged = blocking(move || {
            store.stage(
                &alias_owned,
                &certificate,
                activation,
                &actor_owned,
                &policy,
                SystemTime::now(),
            )
        })
        .await?
        .inspect_err(|e| {
            tracing::warn!(alias = %alias, by = %actor.0, error = %e, "certificate staging refused");
        })?;
        match staged.activation {
            Activation::At { at } => changes.schedule.insert(
                staged.alias.clone(),
                Scheduled {
                    at,
                    staged_by: staged.staged_by.clone(),
                },
            ),
            Activation::OnResume => changes.schedule.remove(&staged.alias),
        };
        tracing::info!(alias = %staged.alias, serial = %staged.certificate.serial, activation = %ActivationText(&staged.activation), "certificate staged");
        Ok(staged)
    }

    /// Drop what is staged for `alias`.
    pub async fn withdraw(&self, alias: &str, actor: Actor<'_>) -> Result<Pending, ControlError> {
        let mut changes = self.changes.lock().await;
        let store = Keystore::new(self.shared.load().config.keystore.clone());
        let (alias_owned, actor_owned) = (alias.to_string(), actor.0.to_string());
        let withdrawn = blocking(move || {
            if store.pending(&alias_owned)?.is_none() {
                return Ok(None);
            }
            store
                .withdraw(&alias_owned, &actor_owned, SystemTime::now())
                .map(Some)
        })
        .await??
        .ok_or_else(|| ControlError::NothingStaged(alias.to_string()))?;
        changes.schedule.remove(alias);
        tracing::info!(alias = %alias, by = %actor.0, serial = %withdrawn.certificate.serial, "staged certificate withdrawn");
        Ok(withdrawn)
    }

    /// Activate the staged certificates whose agreed time is `now` or earlier.
    /// A failed activation stays scheduled (and staged) and is tried again.
    pub async fn activate_due(&self, now: SystemTime) -> Vec<Result<Live, ControlError>> {
        let mut changes = self.changes.lock().await;
        let due: Vec<(String, String)> = changes
            .schedule
            .iter()
            .filter(|(_, s)| s.at <= now)
            .map(|(alias, s)| (alias.clone(), format!("{} (activate_at)", s.staged_by)))
            .collect();
        let mut results = Vec::with_capacity(due.len());
        for (alias, actor) in due {
            let result = self.activate(&alias, &actor).await;
            match &result {
                Ok(live) => {
                    changes.schedule.remove(&alias);
                    tracing::info!(alias = %alias, serial = %live.outcome.current.serial, generation = live.generation, "staged certificate activated at its time");
                }
                // Activated on disk, not live: nothing is staged any more; the
                // next reload (or resume) makes it live.
                Err(e @ ControlError::NotLive { .. }) => {
                    changes.schedule.remove(&alias);
                    tracing::error!(alias = %alias, error = %e, "scheduled activation is on disk but not live yet");
                }
                Err(e) => {
                    tracing::error!(alias = %alias, error = %e, "scheduled activation failed; the staged certificate stays pending");
                }
            }
            results.push(result);
        }
        results
    }

    /// Reload configuration and keystore (build aside, validate, swap). Reloads
    /// an actor asked for are audited; signal and file-change reloads are logged.
    /// A certificate that changed on disk without an exchange (a Secret's `..data`
    /// swap, a copied file) is archived and audited here, actor `file`, as an
    /// exchange would have been.
    pub async fn reload(
        &self,
        trigger: ReloadTrigger,
        actor: Option<Actor<'_>>,
    ) -> Result<ReloadOutcome, ControlError> {
        let _changes = self.changes.lock().await;
        let before = self.shared.load();
        let shared = self.shared.clone();
        self.notifier.reloading();
        let result = blocking(move || shared.reload(trigger)).await;
        // Serving again, on the new snapshot or, refused, on the old one.
        self.notifier.ready();
        let result = result?;
        let after = self.shared.load();
        if result.is_ok() {
            self.adopt_file_changes(&before, &after).await;
            self.adopt_ring_changes(&before, &after).await;
        }
        if let Some(actor) = actor {
            let mut record = AuditRecord::new(actor.0, "reload", SystemTime::now());
            match &result {
                Ok(outcome) => {
                    record.detail = Some(serde_json::json!({
                        "generation": outcome.generation, "changed": outcome.changed
                    }));
                }
                Err(e) => record.result = format!("refused: {e}"),
            }
            self.audit(&after, record).await;
        }
        result.map_err(|reason| ControlError::Reload {
            reason,
            kept_generation: after.generation,
        })
    }

    /// Archive and audit the certificates that `after` serves in place of
    /// `before`'s, unless the keystore already recorded the change.
    async fn adopt_file_changes(&self, before: &Snapshot, after: &Snapshot) {
        for (alias, current) in &after.aliases {
            let Some(previous) = before.aliases.get(alias) else {
                continue;
            };
            if previous.info().sha256 == current.info().sha256 {
                continue;
            }
            let store = Keystore::new(after.config.keystore.clone());
            let (alias_owned, previous, current) =
                (alias.clone(), previous.clone(), current.clone());
            let adopted = blocking(move || {
                store.adopt(&alias_owned, &previous, &current, "file", SystemTime::now())
            })
            .await;
            match adopted {
                Ok(Ok(Some(outcome))) => {
                    tracing::info!(alias = %alias, serial = %outcome.current.serial, previous_serial = %outcome.previous.as_ref().map_or("-", |p| p.serial.as_str()), "certificate changed on disk: the previous one is archived");
                }
                Ok(Ok(None)) => {}
                Ok(Err(e)) => {
                    tracing::error!(alias = %alias, error = %e, "certificate changed on disk but the previous one could not be archived")
                }
                Err(e) => tracing::error!(alias = %alias, error = %e, "archive not written"),
            }
        }
    }

    /// Apply the paused-routes file (`admin.paused_routes_file`): pause the routes
    /// it lists, resume those it paused and no longer lists. `by_file` is the set
    /// this file has paused so far; routes paused otherwise are left alone.
    pub async fn apply_paused_routes_file(&self, by_file: &mut BTreeSet<String>) {
        let snapshot = self.shared.load();
        let Some(path) = snapshot.config.admin.paused_routes_file.clone() else {
            return;
        };
        let read_path = path.clone();
        let text = match blocking(move || std::fs::read_to_string(&read_path)).await {
            Ok(Ok(text)) => text,
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Ok(Err(e)) => {
                tracing::error!(error = %e, file = %path.display(), "cannot read paused_routes_file; nothing changed");
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, "paused_routes_file not read");
                return;
            }
        };
        let listed: BTreeSet<String> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .filter(|name| {
                let known = snapshot.route(name).is_some();
                if !known {
                    tracing::warn!(route = %name, file = %path.display(), "paused_routes_file names no such route");
                }
                known
            })
            .map(str::to_string)
            .collect();
        let actor = format!("file:{}", path.display());
        for name in listed.difference(by_file).cloned().collect::<Vec<_>>() {
            // Paused otherwise (the API, a restart): not the file's to resume later.
            if self.gates.get(&name).is_paused() {
                continue;
            }
            match self.pause(&name, Actor(&actor), None).await {
                Ok(_) => {
                    by_file.insert(name);
                }
                Err(e) => {
                    tracing::error!(route = %name, error = %e, "paused_routes_file: pause failed")
                }
            }
        }
        for name in by_file.difference(&listed).cloned().collect::<Vec<_>>() {
            match self.resume(&name, Actor(&actor)).await {
                Ok(_) => {
                    by_file.remove(&name);
                }
                Err(e) => {
                    tracing::error!(route = %name, error = %e, "paused_routes_file: resume failed")
                }
            }
        }
    }

    fn known_route(&self, route: &str) -> Result<Arc<Snapshot>, ControlError> {
        let snapshot = self.shared.load();
        match snapshot.route(route) {
            Some(_) => Ok(snapshot),
            None => Err(ControlError::UnknownRoute(route.to_string())),
        }
    }

    /// The keystore, and the certificate policy for `alias` under the running
    /// configuration.
    fn keystore_for(&self, alias: &str) -> (Keystore, crate::wss::CertificatePolicy) {
        let config = self.shared.load().config.clone();
        (
            Keystore::new(config.keystore.clone()),
            config.certificate_policy(alias),
        )
    }

    /// Whether a certificate is staged for `alias` to activate on resume; an
    /// unreadable staging area is an error, never "nothing staged".
    async fn staged_on_resume(
        &self,
        snapshot: &Snapshot,
        alias: &str,
    ) -> Result<bool, ControlError> {
        let store = Keystore::new(snapshot.config.keystore.clone());
        let alias = alias.to_string();
        let pending = blocking(move || store.pending(&alias)).await??;
        Ok(pending.is_some_and(|p| p.activation == Activation::OnResume))
    }

    /// Make sure the snapshot serves the certificate the keystore holds for
    /// `alias`, reloading when it does not. Caller holds `changes`.
    async fn ensure_live(&self, alias: &str) -> Result<(), ControlError> {
        let snapshot = self.shared.load();
        let Some(live) = snapshot.aliases.get(alias).cloned() else {
            return Ok(());
        };
        let store = Keystore::new(snapshot.config.keystore.clone());
        let entries = blocking(move || store.load()).await??;
        // Unreadable on disk: the snapshot's certificate is the only one there is.
        let Some(Ok(on_disk)) = entries.get(alias).map(|e| e.certificate.clone()) else {
            return Ok(());
        };
        if on_disk.info().sha256 == live.info().sha256 {
            return Ok(());
        }
        tracing::warn!(alias = %alias, live = %live.info().serial, on_disk = %on_disk.info().serial, "the snapshot is behind the keystore; reloading before releasing held requests");
        let shared = self.shared.clone();
        blocking(move || shared.reload(ReloadTrigger::Exchange))
            .await?
            .map(|_| ())
            .map_err(|reason| ControlError::Reload {
                reason,
                kept_generation: snapshot.generation,
            })
    }

    /// Activate what is staged for `alias` and make it live. Caller holds `changes`.
    async fn activate(&self, alias: &str, actor: &str) -> Result<Live, ControlError> {
        let (store, policy) = self.keystore_for(alias);
        let (alias_owned, actor_owned) = (alias.to_string(), actor.to_string());
        let outcome = blocking(move || {
            store.activate_pending(&alias_owned, &actor_owned, &policy, SystemTime::now())
        })
        .await??;
        let live = self.make_live(outcome).await?;
        tracing::info!(alias = %alias, serial = %live.outcome.current.serial, generation = live.generation, "staged certificate activated");
        Ok(live)
    }

    /// The same reload path as SIGHUP, after a change on disk.
    async fn make_live(&self, outcome: ExchangeOutcome) -> Result<Live, ControlError> {
        let shared = self.shared.clone();
        match blocking(move || shared.reload(ReloadTrigger::Exchange)).await? {
            Ok(reloaded) => Ok(Live {
                outcome,
                generation: reloaded.generation,
            }),
            Err(reason) => Err(ControlError::NotLive {
                outcome: Box::new(outcome),
                reason,
            }),
        }
    }

    async fn persist(&self, paused: &PausedRoutes) -> std::io::Result<()> {
        let (file, paused) = (self.pause_file.clone(), paused.clone());
        blocking(move || file.save(&paused))
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))?
    }

    async fn audit(&self, snapshot: &Snapshot, record: AuditRecord) {
        let state_dir = snapshot.config.keystore.state_dir.clone();
        let action = record.action.clone();
        let written = blocking(move || audit::append(&state_dir, &record)).await;
        if let Err(e) = written
            .map_err(|e| std::io::Error::other(e.to_string()))
            .and_then(|r| r)
        {
            tracing::error!(error = %e, action = %action, "cannot write the audit log");
        }
    }
}

fn route_detail(route: &str, held: Option<usize>) -> serde_json::Value {
    match held {
        None => serde_json::json!({ "route": route }),
        Some(held) => serde_json::json!({ "route": route, "held": held }),
    }
}

/// An activation for a log line.
struct ActivationText<'a>(&'a Activation);

impl std::fmt::Display for ActivationText<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Activation::OnResume => f.write_str("on-resume"),
            Activation::At { at } => write!(f, "at {}", crate::time::rfc3339(*at)),
        }
    }
}

/// Run blocking work on the blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ControlError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ControlError::Internal(e.to_string()))
}
