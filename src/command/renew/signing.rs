//! `wssgate renew overlap|exclusive --ring RING --add NEW.pem`: the tenant's
//! own signing key renewed against the running daemon. The receiver verifies
//! what this daemon signs, so the roles are those of a certificate renewal
//! turned around: the receiver administrator changes which signing
//! certificates the receiver trusts, the keystore administrator adds the key.
//!
//! - overlap: the receiver trusts the old and the new certificate; the key is
//!   added (active at once) and the next message is signed by it; then the
//!   receiver may drop the old certificate.
//! - exclusive: the receiver trusts one certificate; every route that signs
//!   with the ring is paused (in-flight drained), the key is added, the
//!   receiver switches trust, the routes resume: held requests are signed at
//!   their release, by the new key. Nothing is sent under the wrong key.
//!
//! The pause and resume steps are the certificate renewal's ([`super`]).

use std::io::Write;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{Confirmation, Procedure, confirm, pause_routes, resume_routes};
use crate::admin::client::{AdminClient, CtlError};
use serde::{Deserialize, Serialize};

use crate::admin::contract::{CertificateSummary, KeyringAddAnswer};
use crate::keyring::{KeyView, KeyringView};

/// How often the ring's signature counts are read while waiting for the first
/// message signed by the new key.
const POLL: Duration = Duration::from_millis(100);

/// What a signing key renewal did (`--json` prints it on stdout; the steps
/// then go to stderr).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningKeyRenewal {
    pub ring: String,
    /// `overlap` or `exclusive`.
    pub procedure: String,
    /// The routes that sign with the ring (paused and resumed by exclusive).
    pub routes: Vec<String>,
    /// The key that signed before, now retained.
    pub previous: Option<CertificateSummary>,
    /// The key that signs now.
    pub current: CertificateSummary,
    /// When the previous key stops being usable (RFC 3339).
    pub previous_retain_until: Option<String>,
    pub generation: Option<u64>,
    /// Held requests released at the resume, signed by the new key (0 for overlap).
    pub released: usize,
    /// The ring's keys at the end, with their signatures.
    pub keys: Vec<KeyView>,
}

/// Renew the signing key of `ring` by `procedure`. `pem` is the new private
/// key with its certificate; `wait` bounds the pause's drain and the wait for
/// the first signature by the new key; `ctl` is how the operator reaches this
/// daemon from a shell, for the commands a stop names.
#[allow(clippy::too_many_arguments)]
pub async fn renew_signing_key(
    admin: &AdminClient,
    procedure: Procedure,
    ring: &str,
    pem: Bytes,
    wait: Duration,
    confirmation: Confirmation,
    ctl: &str,
    out: &mut dyn Write,
) -> Result<SigningKeyRenewal, CtlError> {
    let new = crate::wss::keys::from_pem(&pem, "the new key")
        .ok()
        .and_then(|e| e.info)
        .ok_or_else(|| {
            CtlError::Stopped(
                "the new key: not a PEM private key with its certificate; nothing was changed"
                    .into(),
            )
        })?;
    let before = admin.keyring(ring).await?;
    if before.signing_routes.is_empty() {
        return Err(CtlError::Stopped(format!(
            "no route signs with key ring {ring}; nothing was changed (a ring that only decrypts: wssgate renew keyring {ring} --add NEW.pem)"
        )));
    }
    let old = before.keys.first().map(|k| k.serial.clone());
    if before.keys.first().is_some_and(|k| k.sha256 == new.sha256) {
        return Err(CtlError::Stopped(format!(
            "serial {} is already the active key of {ring}; nothing was changed",
            new.serial
        )));
    }
    let old = old.unwrap_or_else(|| "(none)".into());
    let _ = writeln!(
        out,
        "signing key renewal ({}) of key ring {ring}: routes {}; serial {old} signs now, serial {} is new",
        if procedure == Procedure::Overlap {
            "overlap"
        } else {
            "exclusive"
        },
        before.signing_routes.join(", "),
        new.serial
    );
    let (added, released, view) = match procedure {
        Procedure::Overlap => {
            let _ = writeln!(
                out,
                "1.  receiver administrator: make the receiver trust the new signing certificate (serial {}) beside the old one (serial {old})",
                new.serial
            );
            confirm(
                &confirmation,
                "Does the receiver trust both signing certificates now?",
                out,
            )?;
            let _ = writeln!(
                out,
                "2.  keystore administrator: adding the key to key ring {ring}"
            );
            let added = admin.keyring_add(ring, pem).await?;
            report_added(ring, &added, out);
            let _ = writeln!(out, "3.  the next messages are signed by the new key");
            let view = show_signing(admin, ring, &new.sha256, wait, out).await?;
            let _ = writeln!(
                out,
                "4.  receiver administrator: the receiver may drop its trust in the old signing certificate (serial {old}) once no message it signed can still arrive"
            );
            (added, 0, view)
        }
        Procedure::Exclusive => {
            let stop_before_add = |paused: &[String], why: &str| {
                stopped(ctl, ring, paused, why, Added::No { old: &old })
            };
            let paused = pause_routes(
                admin,
                &before.signing_routes,
                wait,
                1,
                out,
                &stop_before_add,
            )
            .await?;
            let _ = writeln!(
                out,
                "2.  keystore administrator: adding the key to key ring {ring}"
            );
            let added = admin
                .keyring_add(ring, pem)
                .await
                .map_err(|e| stop_before_add(&paused, &format!("adding the key failed: {e}")))?;
            report_added(ring, &added, out);
            let serial = added.current.serial.clone();
            let stop_after_add = |paused: &[String], why: &str| {
                stopped(ctl, ring, paused, why, Added::Yes { new: &serial })
            };
            let _ = writeln!(
                out,
                "3.  receiver administrator: switch the receiver's trust from serial {old} to serial {serial} now"
            );
            confirm(
                &confirmation,
                "Does the receiver trust the new signing certificate (and only it)?",
                out,
            )
            .map_err(|e| stop_after_add(&paused, &e.to_string()))?;
            let released = resume_routes(
                admin,
                &paused,
                out,
                &stop_after_add,
                &|route, released| {
                    format!(
                        "4.  operator: resumed route {route}; serial {serial} signs; {released} held requests released in arrival order, signed by it"
                    )
                },
            )
            .await?;
            let view = show_signing(admin, ring, &new.sha256, wait, out).await?;
            (added, released, view)
        }
    };
    let _ = writeln!(out, "done");
    Ok(SigningKeyRenewal {
        ring: ring.to_string(),
        procedure: match procedure {
            Procedure::Overlap => "overlap",
            Procedure::Exclusive => "exclusive",
        }
        .to_string(),
        routes: before.signing_routes,
        previous: added.previous,
        current: added.current,
        previous_retain_until: added.previous_retain_until,
        generation: added.generation,
        released,
        keys: view.keys,
    })
}

fn report_added(ring: &str, added: &KeyringAddAnswer, out: &mut dyn Write) {
    let _ = writeln!(
        out,
        "    live: serial {} is the active key of {ring} (generation {}); it signs every message from now on",
        added.current.serial,
        added.generation.map_or("-".to_string(), |g| g.to_string())
    );
    if let Some(p) = &added.previous {
        let _ = writeln!(
            out,
            "    serial {} retained until {} (it no longer signs)",
            p.serial,
            added.previous_retain_until.as_deref().unwrap_or("-")
        );
    }
}

/// Wait (at most `wait`) until the key `sha256` has signed a message, then
/// show the signature count per key; without traffic, say so.
async fn show_signing(
    admin: &AdminClient,
    ring: &str,
    sha256: &str,
    wait: Duration,
    out: &mut dyn Write,
) -> Result<KeyringView, CtlError> {
    let deadline = Instant::now() + wait;
    let view = loop {
        let view = admin.keyring(ring).await?;
        if signatures_of(&view, sha256) > 0 || Instant::now() >= deadline {
            break view;
        }
        tokio::time::sleep(POLL).await;
    };
    if signatures_of(&view, sha256) == 0 {
        let _ = writeln!(
            out,
            "    no message signed yet within {}s; the next one is signed by the new key",
            wait.as_secs()
        );
    }
    super::report_key_use(&view, out);
    Ok(view)
}

fn signatures_of(view: &KeyringView, sha256: &str) -> u64 {
    view.keys
        .iter()
        .find(|k| k.sha256 == sha256)
        .map_or(0, |k| k.signatures)
}

/// Whether the new key was added when an exclusive procedure stopped.
enum Added<'a> {
    No { old: &'a str },
    Yes { new: &'a str },
}

/// What an exclusive signing key renewal leaves when it stops, and how to go
/// on from there.
fn stopped(ctl: &str, ring: &str, paused: &[String], why: &str, added: Added<'_>) -> CtlError {
    let resume: Vec<String> = paused.iter().map(|r| format!("{ctl} resume {r}")).collect();
    let message = match (paused.is_empty(), added) {
        (true, Added::No { old }) => format!(
            "{why}; stopped safely: no route is paused and serial {old} still signs for {ring}"
        ),
        (false, Added::No { old }) => format!(
            "{why}; stopped safely: routes {} are left paused (nothing is sent); serial {old} still signs for {ring} and the receiver still trusts it, so resuming is safe: {}",
            paused.join(", "),
            resume.join("; ")
        ),
        (_, Added::Yes { new }) => format!(
            "{why}; stopped safely: routes {} are left paused (nothing is sent); serial {new} is the active key of {ring}. Once the receiver trusts it, resume with: {}",
            paused.join(", "),
            resume.join("; ")
        ),
    };
    CtlError::Stopped(message)
}
