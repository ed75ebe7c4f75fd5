//! `wssgate keystore`: the keystore on disk, from the command line — list and
//! show aliases, import and exchange certificates (archived and audited as the
//! daemon does; a running daemon picks them up at its next reload), history and
//! purge.

use std::io::Write;
use std::path::PathBuf;
use std::time::SystemTime;

use clap::{Args, Subcommand};
use serde::Serialize;

use super::{ConfigArg, Failure, cli_actor, load_config, print_json, read_file, read_password};
use crate::config::Config;
use crate::keystore::{self as ks, Keystore};

#[derive(Debug, Args)]
pub struct KeystoreArgs {
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: KeystoreCommand,
}

#[derive(Debug, Subcommand)]
pub enum KeystoreCommand {
    /// Every alias with its active certificate.
    List,
    /// One alias: its active certificate.
    Show { alias: String },
    /// Add a certificate under an alias from PEM, DER or PKCS#12 (replacing and
    /// archiving the current one if the alias exists).
    Import {
        alias: String,
        file: PathBuf,
        /// File holding the PKCS#12 password (first line).
        #[arg(long, value_name = "F")]
        password_file: Option<PathBuf>,
        /// Entry (friendly name) to take from a PKCS#12 truststore; default: the alias.
        #[arg(long, value_name = "ENTRY")]
        name: Option<String>,
    },
    /// Exchange the certificate of an alias; the previous one is archived.
    Exchange { alias: String, cert: PathBuf },
    /// Every certificate an alias has had, with when it was active.
    History { alias: String },
    /// Delete archived certificates past their retention; list what was kept.
    Purge,
}

/// One alias as `keystore list` and `show` report it.
#[derive(Debug, Clone, Serialize)]
pub struct KeystoreRow {
    pub alias: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_after: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub days_left: Option<i64>,
    /// The routes that encrypt for this alias.
    pub routes: Vec<String>,
    /// `ok`, or why the certificate cannot be used.
    pub status: String,
}

impl KeystoreRow {
    fn of(config: &Config, entry: &ks::Entry, now: SystemTime) -> KeystoreRow {
        let routes = config
            .routes_for_alias(&entry.alias)
            .map(|r| r.name.clone())
            .collect();
        match &entry.certificate {
            Ok(r) => {
                let info = r.info();
                KeystoreRow {
                    alias: entry.alias.clone(),
                    serial: Some(info.serial.clone()),
                    issuer: Some(info.issuer.clone()),
                    subject: Some(info.subject.clone()),
                    sha256: Some(info.sha256.clone()),
                    not_after: Some(crate::time::rfc3339(info.not_after)),
                    days_left: Some(info.days_left(now)),
                    routes,
                    status: match r.check(&config.certificate_policy(&entry.alias)) {
                        Ok(()) => "ok".to_string(),
                        Err(e) => e.to_string(),
                    },
                }
            }
            Err(reason) => KeystoreRow {
                alias: entry.alias.clone(),
                serial: None,
                issuer: None,
                subject: None,
                sha256: None,
                not_after: None,
                days_left: None,
                routes,
                status: reason.clone(),
            },
        }
    }
}

pub(super) fn keystore_failure(e: ks::KeystoreError) -> Failure {
    if e.is_invalid_input() {
        Failure::invalid(e)
    } else {
        Failure::runtime(e)
    }
}

pub fn keystore(
    config: &ConfigArg,
    args: KeystoreArgs,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let config = load_config(&config.path())?;
    let store = Keystore::new(config.keystore.clone());
    let now = SystemTime::now();
    match args.command {
        KeystoreCommand::List | KeystoreCommand::Show { .. } => {
            let only = match &args.command {
                KeystoreCommand::Show { alias } => Some(alias.clone()),
                _ => None,
            };
            let entries = store.load().map_err(keystore_failure)?;
            if let Some(alias) = &only
                && !entries.contains_key(alias)
            {
                return Err(Failure::invalid(ks::KeystoreError::UnknownAlias(
                    alias.clone(),
                )));
            }
            let rows: Vec<KeystoreRow> = entries
                .values()
                .filter(|e| only.as_ref().is_none_or(|a| *a == e.alias))
                .map(|e| KeystoreRow::of(&config, e, now))
                .collect();
            if args.json {
                return match &only {
                    Some(_) => print_json(out, &rows[0]),
                    None => print_json(out, &rows),
                };
            }
            writeln!(
                out,
                "{:<16} {:<24} {:<22} {:>5}  {:<64}  {:<28} {:<28} STATUS",
                "ALIAS", "SERIAL", "NOT AFTER", "DAYS", "SHA256", "SUBJECT", "ISSUER"
            )?;
            for r in rows {
                let s = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
                writeln!(
                    out,
                    "{:<16} {:<24} {:<22} {:>5}  {:<64}  {:<28} {:<28} {}",
                    r.alias,
                    s(&r.serial),
                    s(&r.not_after),
                    r.days_left
                        .map(|d| d.to_string())
                        .unwrap_or_else(|| "-".into()),
                    s(&r.sha256),
                    s(&r.subject),
                    s(&r.issuer),
                    r.status
                )?;
            }
            Ok(())
        }
        KeystoreCommand::Import {
            alias,
            file,
            password_file,
            name,
        } => {
            let password = read_password(password_file.as_deref())?;
            let bytes = read_file(&file)?;
            let policy = config.certificate_policy(&alias);
            let outcome = store
                .import(
                    &alias,
                    &file.display().to_string(),
                    &bytes,
                    password.as_deref(),
                    name.as_deref(),
                    &cli_actor(),
                    &policy,
                    now,
                )
                .map_err(keystore_failure)?;
            report_change(out, args.json, "imported", &outcome)
        }
        KeystoreCommand::Exchange { alias, cert } => {
            let bytes = read_file(&cert)?;
            let policy = config.certificate_policy(&alias);
            let outcome = store
                .exchange(&alias, &bytes, &cli_actor(), &policy, now)
                .map_err(keystore_failure)?;
            report_change(out, args.json, "exchanged", &outcome)?;
            if !args.json {
                writeln!(
                    out,
                    "a running daemon uses the new certificate after its next reload (SIGHUP, or wssgate ctl reload)"
                )?;
            }
            Ok(())
        }
        KeystoreCommand::History { alias } => {
            let history = store.history(&alias).map_err(keystore_failure)?;
            if args.json {
                return print_json(out, &history);
            }
            writeln!(
                out,
                "{:<24} {:<22} {:<22} {:<22} {:<22} SHA256",
                "SERIAL", "ACTIVE FROM", "RETIRED AT", "RETAIN UNTIL", "NOT AFTER"
            )?;
            for h in history {
                writeln!(
                    out,
                    "{:<24} {:<22} {:<22} {:<22} {:<22} {}",
                    h.certificate.serial,
                    h.active_from.as_deref().unwrap_or("-"),
                    h.retired_at.as_deref().unwrap_or("(active)"),
                    h.retain_until.as_deref().unwrap_or("-"),
                    h.certificate.not_after,
                    h.certificate.sha256
                )?;
            }
            Ok(())
        }
        KeystoreCommand::Purge => {
            let report = store.purge(&cli_actor(), now).map_err(keystore_failure)?;
            if args.json {
                return print_json(out, &report);
            }
            print_purge(out, &report)
        }
    }
}

/// A purge's report, one line per archived entry: the certificate archive's
/// and a key ring's alike.
pub(super) fn print_purge(out: &mut dyn Write, report: &ks::PurgeReport) -> Result<(), Failure> {
    for (what, entries) in [("deleted", &report.deleted), ("kept", &report.kept)] {
        for r in entries {
            writeln!(
                out,
                "{what:<8} {:<16} serial {:<24} retain_until {}  sha256 {}",
                r.alias, r.serial, r.retain_until, r.sha256
            )?;
        }
    }
    writeln!(
        out,
        "{} deleted, {} kept",
        report.deleted.len(),
        report.kept.len()
    )?;
    Ok(())
}

fn report_change(
    out: &mut dyn Write,
    json: bool,
    verb: &str,
    outcome: &ks::ExchangeOutcome,
) -> Result<(), Failure> {
    if json {
        return print_json(out, outcome);
    }
    if let Some(p) = &outcome.previous {
        writeln!(
            out,
            "alias {}: archived serial {} (sha256 {})",
            outcome.alias, p.serial, p.sha256
        )?;
    }
    writeln!(
        out,
        "alias {}: {verb} serial {} (sha256 {}, not after {})",
        outcome.alias, outcome.current.serial, outcome.current.sha256, outcome.current.not_after
    )?;
    Ok(())
}
