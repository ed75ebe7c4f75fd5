//! `wssgate renew`: walks an operator through an overlap or exclusive renewal
//! against the running daemon, says who must do what next, and stops safely
//! (routes left paused, nothing half-exchanged) if a step fails.

use std::io::{BufRead, Write};
use std::time::Duration;

use bytes::Bytes;

use crate::admin::client::{AdminClient, CtlError};

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
pub async fn renew(
    admin: &AdminClient,
    procedure: Procedure,
    alias: &str,
    certificate: Bytes,
    wait: Duration,
    confirmation: Confirmation,
    out: &mut dyn Write,
) -> Result<(), CtlError> {
    let using: Vec<String> = admin
        .routes()
        .await?
        .into_iter()
        .filter(|r| r.alias == alias)
        .map(|r| r.name)
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
            let mut paused = Vec::new();
            for route in &using {
                let _ = writeln!(
                    out,
                    "1.  operator: pausing route {route} (waiting up to {}s for in-flight requests)",
                    wait.as_secs()
                );
                let answer = admin
                    .pause(route, Some(wait))
                    .await
                    .map_err(|e| stopped(&paused, &format!("pausing {route} failed: {e}")))?;
                paused.push(route.clone());
                if !answer.drained {
                    return Err(stopped(
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
            let _ = writeln!(
                out,
                "2.  keystore administrator: exchanging the certificate under {alias}"
            );
            let result = admin.exchange(alias, certificate).await.map_err(|e| {
                stopped(
                    &paused,
                    &format!("the exchange failed, the old certificate stays: {e}"),
                )
            })?;
            let _ = writeln!(
                out,
                "    exchanged: serial {} replaces serial {}",
                result.current.serial,
                previous_serial(&result),
            );
            let _ = writeln!(
                out,
                "3.  receiver administrator: swap the receiver's key pair now"
            );
            confirm(&confirmation, "Does the receiver hold the new key?", out)
                .map_err(|e| stopped(&paused, &e.to_string()))?;
            for route in &paused {
                let answer = admin
                    .resume(route)
                    .await
                    .map_err(|e| stopped(&paused, &format!("resuming {route} failed: {e}")))?;
                let _ = writeln!(
                    out,
                    "4.  operator: resumed route {route}; {} held requests released in arrival order under the new certificate",
                    answer.released
                );
            }
        }
    }
    let _ = writeln!(out, "done");
    Ok(())
}

fn stopped(paused: &[String], why: &str) -> CtlError {
    if paused.is_empty() {
        return CtlError::Stopped(format!("{why}; nothing was changed"));
    }
    CtlError::Stopped(format!(
        "{why}; stopped safely: routes {} are left paused (resume with: wssgate ctl resume ROUTE)",
        paused.join(", ")
    ))
}

fn previous_serial(answer: &crate::admin::contract::ExchangeAnswer) -> &str {
    answer
        .previous
        .as_ref()
        .map_or("(none)", |p| p.serial.as_str())
}
