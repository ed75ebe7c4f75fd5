//! `wssgate renew`: walks an operator through an overlap or exclusive renewal
//! against the running daemon, says who must do what next, and stops safely
//! (routes left paused, nothing half-exchanged) if a step fails. Renewed: a
//! receiver's certificate (here), the tenant's signing key (`renew/signing.rs`,
//! with the same pause and resume steps), a decrypt route's key ring
//! ([`renew_keyring`]).

use std::io::{BufRead, Write};
use std::time::Duration;

use bytes::Bytes;

use crate::admin::client::{AdminClient, CtlError};
use crate::admin::contract::Activation;

mod signing;
pub use signing::{SigningKeyRenewal, renew_signing_key};

/// Which renewal procedure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Procedure {
    Overlap,
    Exclusive,
}

/// How `renew` learns that the receiver is ready.
pub enum Confirmation {
    /// `--receiver-ready`: already confirmed out of band.
    Given,
    /// Ask on the terminal.
    Prompt,
}

fn confirm(how: &Confirmation, question: &str, out: &mut dyn Write) -> Result<(), CtlError> {
    match how {
        Confirmation::Given => {
            let _ = writeln!(out, "    {question} yes (--receiver-ready)");
            Ok(())
        }
        Confirmation::Prompt => {
            let _ = write!(out, "    {question} [type yes] ");
            let _ = out.flush();
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .map_err(|e| CtlError::Stopped(format!("no answer: {e}")))?;
            if line.trim().eq_ignore_ascii_case("yes") {
                Ok(())
            } else {
                Err(CtlError::Stopped(
                    "the receiver is not confirmed ready".into(),
                ))
            }
        }
    }
}

/// Walk a renewal procedure against the running daemon, printing each step.
/// `ctl` is how the operator reaches this daemon from a shell (`wssgate ctl -c
/// FILE`): failures name the exact commands that finish or undo what was done.
#[allow(clippy::too_many_arguments)]
pub async fn renew(
    admin: &AdminClient,
    procedure: Procedure,
    alias: &str,
    certificate: Bytes,
    wait: Duration,
    confirmation: Confirmation,
    ctl: &str,
    out: &mut dyn Write,
) -> Result<(), CtlError> {
    let routes = admin.routes().await?;
    let using: Vec<String> = routes
        .iter()
        .filter(|r| r.alias == alias)
        .map(|r| r.name.clone())
        .collect();
    let _ = writeln!(
        out,
        "renewal ({}) of alias {alias}: routes {}",
        if procedure == Procedure::Overlap {
            "overlap"
        } else {
            "exclusive"
        },
        if using.is_empty() {
            "(none)".to_string()
        } else {
            using.join(", ")
        }
    );
    // Nothing changes for a certificate that is already the one in use.
    let new_sha256 = crate::wss::Recipient::from_bytes(&certificate)
        .map(|r| r.info().sha256.clone())
        .map_err(|e| CtlError::Stopped(format!("the new certificate: {e}; nothing was changed")))?;
    if let Some(r) = routes
        .iter()
        .find(|r| r.alias == alias && r.certificate.sha256 == new_sha256)
    {
        return Err(CtlError::Stopped(format!(
            "serial {} is already the certificate in use for {alias}; nothing was changed",
            r.certificate.serial
        )));
    }
    match procedure {
        Procedure::Overlap => {
            let _ = writeln!(
                out,
                "1.  receiver administrator: configure the receiver to accept the old and the new key"
            );
            confirm(
                &confirmation,
                "Does the receiver accept both keys now?",
                out,
            )?;
            let _ = writeln!(
                out,
                "2.  keystore administrator: exchanging the certificate under {alias}"
            );
            let result = admin.exchange(alias, certificate).await?;
            let _ = writeln!(
                out,
                "    live: serial {} replaces serial {} (generation {})",
                result.current.serial,
                previous_serial(&result),
                result.generation.unwrap_or_default()
            );
            let _ = writeln!(
                out,
                "3.  receiver administrator: every new message uses the new key; remove the old key once no message under it can still arrive"
            );
        }
        Procedure::Exclusive => {
            // Validated by the daemon itself (its policy for this alias) before
            // anything is paused; it becomes live at the resume, before any held
            // request is released.
            let _ = writeln!(
                out,
                "1.  keystore administrator: staging the new certificate under {alias}"
            );
            let staged = admin
                .stage(alias, certificate, Activation::OnResume)
                .await
                .map_err(|e| {
                    CtlError::Stopped(format!(
                        "the daemon refused the certificate: {e}; nothing was changed"
                    ))
                })?;
            let serial = staged.pending.certificate.serial;
            let _ = writeln!(
                out,
                "    validated and staged: serial {serial} becomes live when the route resumes"
            );
            let left = Left {
                ctl,
                alias,
                serial: &serial,
            };
            let paused = pause_routes(admin, &using, wait, 2, out, &|paused, why| {
                left.stopped(paused, why)
            })
            .await?;
            let _ = writeln!(
                out,
                "3.  receiver administrator: swap the receiver's key pair now"
            );
            confirm(&confirmation, "Does the receiver hold the new key?", out)
                .map_err(|e| left.stopped(&paused, &e.to_string()))?;
            resume_routes(
                admin,
                &paused,
                out,
                &|paused, why| left.stopped(paused, why),
                &|route, released| {
                    format!(
                        "4.  operator: resumed route {route}; serial {serial} is live; {released} held requests released in arrival order under it"
                    )
                },
            )
            .await?;
        }
    }
    let _ = writeln!(out, "done");
    Ok(())
}

/// Builds the error a procedure stops with, from the routes it left paused.
type Stop<'a> = dyn Fn(&[String], &str) -> CtlError + 'a;

/// Step `step` of an exclusive procedure: pause each route and wait up to
/// `wait` for its in-flight requests. On a failure the routes paused so far
/// stay paused (nothing is sent) and `stop` says what is left.
async fn pause_routes(
    admin: &AdminClient,
    routes: &[String],
    wait: Duration,
    step: u8,
    out: &mut dyn Write,
    stop: &Stop<'_>,
) -> Result<Vec<String>, CtlError> {
    let mut paused = Vec::new();
    for route in routes {
        let _ = writeln!(
            out,
            "{step}.  operator: pausing route {route} (waiting up to {}s for in-flight requests)",
            wait.as_secs()
        );
        let answer = admin
            .pause(route, Some(wait))
            .await
            .map_err(|e| stop(&paused, &format!("pausing {route} failed: {e}")))?;
        paused.push(route.clone());
        if !answer.drained {
            return Err(stop(
                &paused,
                &format!(
                    "route {route} still has {} requests in flight after {}s",
                    answer.route.in_flight,
                    wait.as_secs()
                ),
            ));
        }
        let _ = writeln!(
            out,
            "    paused; nothing is sent to the receiver now ({} held so far)",
            answer.route.held
        );
    }
    Ok(paused)
}

/// The last step of an exclusive procedure: resume each paused route, saying
/// with `resumed(route, released)` what it sends under now; the held requests
/// released in all.
async fn resume_routes(
    admin: &AdminClient,
    paused: &[String],
    out: &mut dyn Write,
    stop: &Stop<'_>,
    resumed: &dyn Fn(&str, usize) -> String,
) -> Result<usize, CtlError> {
    let mut released = 0;
    for (i, route) in paused.iter().enumerate() {
        // Those before it are resumed already: only the rest are left paused.
        let answer = admin
            .resume(route)
            .await
            .map_err(|e| stop(&paused[i..], &format!("resuming {route} failed: {e}")))?;
        let _ = writeln!(out, "{}", resumed(route, answer.released));
        released += answer.released;
    }
    Ok(released)
}

/// What an exclusive renewal leaves when it stops, and how to go on from there.
struct Left<'a> {
    ctl: &'a str,
    alias: &'a str,
    serial: &'a str,
}

impl Left<'_> {
    fn stopped(&self, paused: &[String], why: &str) -> CtlError {
        let (ctl, alias, serial) = (self.ctl, self.alias, self.serial);
        let resume: Vec<String> = paused.iter().map(|r| format!("{ctl} resume {r}")).collect();
        if paused.is_empty() {
            return CtlError::Stopped(format!(
                "{why}; stopped safely: no route is paused; serial {serial} is staged for {alias} \
                 (withdraw it with: {ctl} withdraw {alias})"
            ));
        }
        CtlError::Stopped(format!(
            "{why}; stopped safely: routes {} are left paused (nothing is sent) and serial {serial} \
             is staged for {alias}. Once the receiver holds the new key, resume with: {} \
             (serial {serial} becomes live first). To keep the old certificate instead: \
             {ctl} withdraw {alias}, then {}",
            paused.join(", "),
            resume.join("; "),
            resume.join("; "),
        ))
    }
}

fn previous_serial(answer: &crate::admin::contract::ExchangeAnswer) -> &str {
    answer
        .previous
        .as_ref()
        .map_or("(none)", |p| p.serial.as_str())
}

/// The receiver side of a renewal: add the new key to `ring` (active at once,
/// the previous one retained), then report which keys senders still use — the
/// exclusive procedure of a one-key receiver turned into an overlap one.
pub async fn renew_keyring(
    admin: &AdminClient,
    ring: &str,
    pem: Bytes,
    out: &mut dyn Write,
) -> Result<(), CtlError> {
    let added = admin.keyring_add(ring, pem).await?;
    let _ = writeln!(
        out,
        "ring {ring}: serial {} active (sha256 {}, not after {}), generation {}",
        added.current.serial,
        added.current.sha256,
        added.current.not_after,
        added.generation.map_or("-".to_string(), |g| g.to_string())
    );
    if let Some(p) = &added.previous {
        let _ = writeln!(
            out,
            "ring {ring}: serial {} retained until {}: messages still encrypted for it decrypt",
            p.serial,
            added.previous_retain_until.as_deref().unwrap_or("-")
        );
    }
    let after = admin.keyring(ring).await?;
    report_key_use(&after, out);
    if !after.signing_routes.is_empty() {
        let _ = writeln!(
            out,
            "routes {} sign with serial {} from now on (the signing key's procedures: wssgate renew overlap|exclusive --ring {ring} --add NEW.pem)",
            after.signing_routes.join(", "),
            added.current.serial
        );
    }
    if !after.routes.is_empty() || after.signing_routes.is_empty() {
        let _ = writeln!(
            out,
            "next: senders encrypt for the new certificate (serial {}) when they are ready; `wssgate renew keyring {ring}` again, or GET /v1/keyring/{ring}, shows when the retained keys stop being used",
            added.current.serial
        );
    }
    Ok(())
}

/// What a key did: decryptions, signatures, or both.
fn key_use(k: &crate::keyring::KeyView) -> String {
    match (k.decryptions, k.signatures) {
        (d, 0) => format!("{d} messages decrypted"),
        (0, s) => format!("{s} messages signed"),
        (d, s) => format!("{d} messages decrypted, {s} signed"),
    }
}

/// Which keys of a ring decrypted or signed messages, and when last.
pub fn report_key_use(view: &crate::keyring::KeyringView, out: &mut dyn Write) {
    for k in &view.keys {
        let state = match k.state {
            crate::keystore::KeyState::Active => "active",
            crate::keystore::KeyState::Retained => "retained",
        };
        let used = match &k.last_used {
            Some(at) => format!("still used: {}, last at {at}", key_use(k)),
            None => "not used since the daemon started".to_string(),
        };
        let _ = writeln!(
            out,
            "    {state:<9} serial {:<24} {used}{}",
            k.serial,
            k.retain_until
                .as_deref()
                .map(|u| format!(" (retained until {u})"))
                .unwrap_or_default()
        );
    }
}
