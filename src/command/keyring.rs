//! `wssgate keyring`: the key rings on disk, from the command line — list and
//! show rings, add a key (PEM key and certificate, or PKCS#12 with a password
//! file; archived and audited as the daemon does; a running daemon uses it
//! after its next reload), history and purge. Private keys are never printed:
//! only their certificates' facts.

use std::io::Write;
use std::path::PathBuf;
use std::time::SystemTime;

use clap::{Args, Subcommand};

use super::keystore::{keystore_failure, print_purge};
use super::{ConfigArg, Failure, cli_actor, load_config, print_json, read_file, read_password};
use crate::keyring::{KeyView, KeyringView};
use crate::keystore::{self as ks, Keystore};

#[derive(Debug, Args)]
pub struct KeyringArgs {
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: KeyringCommand,
}

#[derive(Debug, Subcommand)]
pub enum KeyringCommand {
    /// Every ring with its usable keys.
    List,
    /// One ring: its active key and the retained ones, until when.
    Show { ring: String },
    /// Add a key to a ring and make it active; the active one is retained
    /// until its retain_until. PEM (private key and certificate) or PKCS#12.
    Add {
        ring: String,
        file: PathBuf,
        /// File holding the PKCS#12 password (first line).
        #[arg(long, value_name = "F")]
        password_file: Option<PathBuf>,
    },
    /// Every key a ring has had, retired ones with their retain_until.
    History { ring: String },
    /// Delete retained keys past their retain_until; list what was kept.
    Purge,
}

/// The key and certificate of `file` as PEM: PKCS#12 (by extension, or DER
/// content) opened with the password, else the file as it is.
pub fn key_file_as_pem(file: &std::path::Path, password: Option<&str>) -> Result<Vec<u8>, Failure> {
    let bytes = read_file(file)?;
    let is_p12 = matches!(
        file.extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("p12" | "pfx")
    ) || (!bytes.trim_ascii_start().starts_with(b"-----")
        && bytes.first() == Some(&0x30));
    if is_p12 {
        ks::pem_from_pkcs12(file, &bytes, password.unwrap_or("")).map_err(keystore_failure)
    } else {
        Ok(bytes)
    }
}

fn ring_view(
    store: &Keystore,
    ring: &str,
    config: &crate::config::Config,
    now: SystemTime,
) -> Result<KeyringView, ks::KeystoreError> {
    let keys = store.ring_keys(ring, now)?;
    Ok(KeyringView {
        ring: ring.to_string(),
        routes: config
            .routes
            .iter()
            .filter(|r| r.ring.as_deref() == Some(ring) || r.response_ring.as_deref() == Some(ring))
            .map(|r| r.name.clone())
            .collect(),
        signing_routes: config
            .routes
            .iter()
            .filter(|r| r.sign.as_ref().is_some_and(|s| s.ring == ring))
            .map(|r| r.name.clone())
            .collect(),
        live: false,
        keys: keys.iter().map(|k| KeyView::of(k, None)).collect(),
    })
}

fn print_ring(out: &mut dyn Write, view: &KeyringView) -> Result<(), Failure> {
    let list = |routes: &[String]| {
        if routes.is_empty() {
            "(no route)".to_string()
        } else {
            routes.join(", ")
        }
    };
    writeln!(
        out,
        "ring {}  decrypt routes: {}  signing routes: {}",
        view.ring,
        list(&view.routes),
        list(&view.signing_routes)
    )?;
    for k in &view.keys {
        writeln!(
            out,
            "  {:<9} serial {:<24} not after {}  retain until {}  sha256 {}",
            match k.state {
                ks::KeyState::Active => "active",
                ks::KeyState::Retained => "retained",
            },
            k.serial,
            k.not_after,
            k.retain_until.as_deref().unwrap_or("-"),
            k.sha256
        )?;
    }
    Ok(())
}

pub fn keyring(config: &ConfigArg, args: KeyringArgs, out: &mut dyn Write) -> Result<(), Failure> {
    let config = load_config(&config.path())?;
    let store = Keystore::new(config.keystore.clone());
    let now = SystemTime::now();
    match args.command {
        KeyringCommand::List => {
            let mut names = store.rings().map_err(keystore_failure)?;
            for name in config.rings() {
                if !names.iter().any(|n| n == name) {
                    names.push(name.to_string());
                }
            }
            names.sort();
            let mut views = Vec::new();
            for name in names {
                views.push(ring_view(&store, &name, &config, now).map_err(keystore_failure)?);
            }
            if args.json {
                return print_json(out, &views);
            }
            for v in &views {
                print_ring(out, v)?;
            }
            Ok(())
        }
        KeyringCommand::Show { ring } => {
            let view = ring_view(&store, &ring, &config, now).map_err(keystore_failure)?;
            if args.json {
                return print_json(out, &view);
            }
            print_ring(out, &view)
        }
        KeyringCommand::Add {
            ring,
            file,
            password_file,
        } => {
            let password = read_password(password_file.as_deref())?;
            let pem = key_file_as_pem(&file, password.as_deref())?;
            let policy = ks::policy(&config.keystore, false);
            let usable = |entry: &_| crate::state::usable_for_signing(&config, &ring, entry);
            let outcome = store
                .ring_add(&ring, &pem, &cli_actor(), &policy, &usable, now)
                .map_err(keystore_failure)?;
            if args.json {
                return print_json(out, &outcome);
            }
            if let Some(p) = &outcome.previous {
                writeln!(
                    out,
                    "ring {}: retained serial {} (sha256 {}) until {}",
                    outcome.ring,
                    p.serial,
                    p.sha256,
                    outcome.previous_retain_until.as_deref().unwrap_or("-")
                )?;
            }
            writeln!(
                out,
                "ring {}: added serial {} (sha256 {}, not after {}), now active",
                outcome.ring,
                outcome.current.serial,
                outcome.current.sha256,
                outcome.current.not_after
            )?;
            writeln!(
                out,
                "a running daemon decrypts with it after its next reload (SIGHUP, or wssgate ctl reload); PUT /v1/keyring/{} does both at once",
                outcome.ring
            )?;
            Ok(())
        }
        KeyringCommand::History { ring } => {
            let history = store.ring_history(&ring).map_err(keystore_failure)?;
            if args.json {
                return print_json(out, &history);
            }
            writeln!(
                out,
                "{:<9} {:<24} {:<22} {:<22} {:<22} {:<22} SHA256",
                "STATE", "SERIAL", "ACTIVE FROM", "RETIRED AT", "RETAIN UNTIL", "NOT AFTER"
            )?;
            for k in history.keys {
                let state = match k.state {
                    ks::KeyState::Active => "active",
                    ks::KeyState::Retained => "retained",
                };
                writeln!(
                    out,
                    "{:<9} {:<24} {:<22} {:<22} {:<22} {:<22} {}",
                    state,
                    k.serial,
                    k.active_from.as_deref().unwrap_or("-"),
                    k.retired_at.as_deref().unwrap_or("(active)"),
                    k.retain_until.as_deref().unwrap_or("-"),
                    k.not_after,
                    k.sha256
                )?;
            }
            Ok(())
        }
        KeyringCommand::Purge => {
            let report = store
                .ring_purge(&cli_actor(), now)
                .map_err(keystore_failure)?;
            if args.json {
                return print_json(out, &report);
            }
            print_purge(out, &report)
        }
    }
}
