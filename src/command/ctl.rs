//! `wssgate ctl` and `wssgate renew`: the admin API from the command line,
//! through the typed client, with answers printed for people (or as JSON).

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use clap::{Args, Subcommand};

use super::renew::{Confirmation, Procedure};
use super::{ConfigArg, Failure, block_on, print_json, read_file};
use crate::admin::client::{AdminClient, Credentials, CtlError};
use crate::admin::contract::{Activation, ExchangeAnswer, RouteView};
use crate::keystore;

#[derive(Debug, Args)]
pub struct AdminArgs {
    /// Admin API URL (default: from the configuration file).
    #[arg(long, value_name = "URL")]
    pub admin: Option<String>,
    /// File holding the bearer token (default: the first token file of the configuration
    /// that can be read).
    #[arg(long, value_name = "F")]
    pub token_file: Option<PathBuf>,
    /// CA certificate to verify an https admin URL with.
    #[arg(long, value_name = "CA.pem")]
    pub admin_ca: Option<PathBuf>,
    /// Print JSON.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CtlArgs {
    #[command(flatten)]
    pub admin: AdminArgs,
    #[command(subcommand)]
    pub command: CtlCommand,
}

#[derive(Debug, Subcommand)]
pub enum CtlCommand {
    /// Version, configuration generation, routes and aliases.
    Status,
    /// Every route with its state, in-flight and held requests and certificate.
    Routes,
    /// Stop sending on a route; with --wait, answer once nothing is in flight.
    Pause {
        route: String,
        #[arg(long, value_name = "SECONDS")]
        wait: Option<u64>,
    },
    /// Release held requests in arrival order, then pass traffic.
    Resume { route: String },
    /// Reload configuration and keystore (same as SIGHUP).
    Reload,
    /// Exchange the certificate of an alias; returns once it is live.
    Exchange { alias: String, cert: PathBuf },
    /// Stage a certificate for an alias: validated now, active when the paused
    /// routes using the alias resume, or at an agreed time.
    #[command(group(clap::ArgGroup::new("when").required(true).args(["on_resume", "at"])))]
    Stage {
        alias: String,
        cert: PathBuf,
        /// Active when the paused routes using the alias resume.
        #[arg(long)]
        on_resume: bool,
        /// Active at this time (RFC 3339, UTC: 2027-01-15T08:00:00Z).
        #[arg(long, value_name = "TIME", value_parser = parse_time)]
        at: Option<std::time::SystemTime>,
    },
    /// Withdraw what is staged for an alias.
    Withdraw { alias: String },
    /// An alias's live certificate and archived history.
    Keystore { alias: Option<String> },
}

/// What `wssgate renew` renews.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RenewProcedure {
    Overlap,
    Exclusive,
    Keyring,
}

#[derive(Debug, Args)]
pub struct RenewArgs {
    #[command(flatten)]
    pub admin: AdminArgs,
    /// overlap (the receiver accepts old and new key for a while), exclusive
    /// (it holds one key: pause, exchange, swap, resume), or keyring (the
    /// receiver side: add a key to a ring of this daemon's decrypt routes).
    /// overlap and exclusive renew the receiver's certificate (--alias, --cert)
    /// or, with --ring RING --add NEW.pem, the signing key of RING (the
    /// receiver trusts both signing certificates, or switches its trust while
    /// the routes that sign with RING are paused).
    #[arg(value_enum)]
    pub procedure: RenewProcedure,
    /// `renew keyring RING --add NEW.pem`: the ring.
    pub ring: Option<String>,
    /// overlap, exclusive: the alias whose certificate is renewed.
    #[arg(long)]
    pub alias: Option<String>,
    /// overlap, exclusive: the key ring whose signing key is renewed (with
    /// `--add NEW.pem`), instead of a receiver's certificate.
    #[arg(long = "ring", value_name = "RING", id = "signing_ring")]
    pub signing_ring: Option<String>,
    /// overlap, exclusive: the receiver's new certificate.
    #[arg(long, value_name = "NEW.pem")]
    pub cert: Option<PathBuf>,
    /// keyring, or overlap|exclusive --ring: the new private key and its certificate (PEM).
    #[arg(long, value_name = "NEW.pem")]
    pub add: Option<PathBuf>,
    /// The receiver administrator has confirmed out of band; do not prompt.
    #[arg(long)]
    pub receiver_ready: bool,
    /// Seconds to wait for in-flight requests when pausing (and, renewing a
    /// signing key, for the first message signed by the new key).
    #[arg(long, default_value_t = 60)]
    pub wait: u64,
}

fn parse_time(text: &str) -> Result<std::time::SystemTime, String> {
    crate::time::parse_rfc3339(text).map_err(|e| format!("not an RFC 3339 time in UTC: {e}"))
}

fn client(config: &ConfigArg, args: &AdminArgs) -> Result<AdminClient, Failure> {
    let credentials = Credentials::resolve(
        args.admin.clone(),
        args.token_file.as_deref(),
        args.admin_ca.clone(),
        &config.path(),
    )
    .map_err(ctl_failure)?;
    AdminClient::new(&credentials).map_err(Failure::runtime)
}

/// The `wssgate ctl` command line that reaches the same daemon as this one.
fn ctl_command(config: &ConfigArg, args: &AdminArgs) -> String {
    let mut line = String::from("wssgate ctl");
    match (&args.admin, &args.token_file) {
        (Some(url), Some(token)) => {
            line.push_str(&format!(" --admin {url} --token-file {}", token.display()));
        }
        (url, token) => {
            line.push_str(&format!(" -c {}", config.path().display()));
            if let Some(url) = url {
                line.push_str(&format!(" --admin {url}"));
            }
            if let Some(token) = token {
                line.push_str(&format!(" --token-file {}", token.display()));
            }
        }
    }
    if let Some(ca) = &args.admin_ca {
        line.push_str(&format!(" --admin-ca {}", ca.display()));
    }
    line
}

fn ctl_failure(e: CtlError) -> Failure {
    if e.is_invalid_input() {
        Failure::invalid(e)
    } else {
        Failure::runtime(e)
    }
}

/// One line per route, for people.
pub fn routes_table(routes: &[RouteView]) -> String {
    let mut out = format!(
        "{:<16} {:<7} {:>9} {:>5}  {:<20} {:<24} {}\n",
        "ROUTE", "STATE", "IN-FLIGHT", "HELD", "ALIAS", "SERIAL", "NOT AFTER"
    );
    for r in routes {
        let state = match r.state {
            crate::admin::contract::RouteState::Active => "active",
            crate::admin::contract::RouteState::Paused => "paused",
        };
        out.push_str(&format!(
            "{:<16} {:<7} {:>9} {:>5}  {:<20} {:<24} {}\n",
            r.name,
            state,
            r.in_flight,
            r.held,
            r.alias,
            r.certificate.serial,
            r.certificate.not_after,
        ));
    }
    out
}

fn previous_serial(answer: &ExchangeAnswer) -> &str {
    answer
        .previous
        .as_ref()
        .map_or("(none)", |p| p.serial.as_str())
}

pub fn ctl(config: &ConfigArg, args: CtlArgs, out: &mut dyn Write) -> Result<(), Failure> {
    let client = client(config, &args.admin)?;
    let json = args.admin.json;
    block_on(run_ctl(&client, args.command, json, out))?
}

async fn run_ctl(
    client: &AdminClient,
    command: CtlCommand,
    json: bool,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    match command {
        CtlCommand::Status => {
            let status = client.status().await.map_err(ctl_failure)?;
            if json {
                return print_json(out, &status);
            }
            writeln!(
                out,
                "wssgate {}  generation {}  loaded {}  config {}",
                status.version, status.generation, status.loaded_at, status.config
            )?;
            writeln!(
                out,
                "reloads ok {}  failed {}",
                status.reloads.ok, status.reloads.failed
            )?;
            writeln!(out)?;
            write!(out, "{}", routes_table(&status.routes))?;
        }
        CtlCommand::Routes => {
            let routes = client.routes().await.map_err(ctl_failure)?;
            if json {
                return print_json(out, &routes);
            }
            write!(out, "{}", routes_table(&routes))?;
        }
        CtlCommand::Pause { route, wait } => {
            let answer = client
                .pause(&route, wait.map(Duration::from_secs))
                .await
                .map_err(ctl_failure)?;
            if json {
                print_json(out, &answer)?;
            }
            if wait.is_some() && !answer.drained {
                return Err(Failure::runtime(format!(
                    "route {route} is paused, but {} requests are still in flight",
                    answer.route.in_flight
                )));
            }
            if !json {
                writeln!(
                    out,
                    "route {route} paused: nothing is sent to the receiver ({} in flight, {} held)",
                    answer.route.in_flight, answer.route.held
                )?;
            }
        }
        CtlCommand::Resume { route } => {
            let answer = client.resume(&route).await.map_err(ctl_failure)?;
            if json {
                return print_json(out, &answer);
            }
            writeln!(
                out,
                "route {route} resumed; {} held requests released",
                answer.released
            )?;
        }
        CtlCommand::Reload => {
            let answer = client.reload().await.map_err(ctl_failure)?;
            if json {
                return print_json(out, &answer);
            }
            writeln!(
                out,
                "reloaded: generation {}; changes: {}",
                answer.generation,
                serde_json::to_string(&answer.changed).unwrap_or_default()
            )?;
        }
        CtlCommand::Exchange { alias, cert } => {
            let pem = Bytes::from(read_file(&cert)?);
            let answer = client.exchange(&alias, pem).await.map_err(ctl_failure)?;
            if json {
                return print_json(out, &answer);
            }
            writeln!(
                out,
                "alias {alias}: serial {} is live (was serial {}), generation {}",
                answer.current.serial,
                previous_serial(&answer),
                answer.generation.unwrap_or_default()
            )?;
        }
        CtlCommand::Stage {
            alias,
            cert,
            on_resume: _,
            at,
        } => {
            let pem = Bytes::from(read_file(&cert)?);
            let activation = match at {
                Some(at) => Activation::At(at),
                None => Activation::OnResume,
            };
            let answer = client
                .stage(&alias, pem, activation)
                .await
                .map_err(ctl_failure)?;
            if json {
                return print_json(out, &answer);
            }
            let when = match &answer.pending.activation {
                keystore::Activation::OnResume => {
                    "on resume of the paused routes using it".to_string()
                }
                keystore::Activation::At { at } => format!("at {}", crate::time::rfc3339(*at)),
            };
            writeln!(
                out,
                "alias {alias}: serial {} staged; active {when}",
                answer.pending.certificate.serial
            )?;
        }
        CtlCommand::Withdraw { alias } => {
            let answer = client.withdraw(&alias).await.map_err(ctl_failure)?;
            if json {
                return print_json(out, &answer);
            }
            writeln!(
                out,
                "alias {alias}: staged serial {} withdrawn",
                answer.withdrawn.certificate.serial
            )?;
        }
        CtlCommand::Keystore { alias } => match alias {
            Some(alias) => {
                let answer = client.keystore_alias(&alias).await.map_err(ctl_failure)?;
                print_json(out, &answer)?;
            }
            None => {
                let answer = client.keystore().await.map_err(ctl_failure)?;
                print_json(out, &answer)?;
            }
        },
    }
    Ok(())
}

pub fn renew(config: &ConfigArg, args: RenewArgs, out: &mut dyn Write) -> Result<(), Failure> {
    let procedure = match args.procedure {
        RenewProcedure::Overlap => Procedure::Overlap,
        RenewProcedure::Exclusive => Procedure::Exclusive,
        RenewProcedure::Keyring => return renew_keyring(config, args, out),
    };
    if args.signing_ring.is_some() {
        return renew_signing_key(config, procedure, args, out);
    }
    let (Some(alias), Some(cert)) = (&args.alias, &args.cert) else {
        return Err(Failure::usage(
            "renew overlap|exclusive needs --alias ALIAS and --cert NEW.pem",
        ));
    };
    let client = client(config, &args.admin)?;
    let certificate = read_file(cert)?;
    // Refuse a bad certificate before anything is paused.
    crate::wss::Recipient::from_bytes(&certificate)
        .and_then(|r| {
            r.check(&crate::wss::CertificatePolicy::default())
                .map(|()| r)
        })
        .map_err(|e| Failure::invalid(format!("{}: {e}", cert.display())))?;
    let confirmation = if args.receiver_ready {
        Confirmation::Given
    } else {
        Confirmation::Prompt
    };
    let ctl = ctl_command(config, &args.admin);
    block_on(super::renew::renew(
        &client,
        procedure,
        alias,
        Bytes::from(certificate),
        Duration::from_secs(args.wait),
        confirmation,
        &ctl,
        out,
    ))?
    .map_err(ctl_failure)
}

/// `renew overlap|exclusive --ring RING --add NEW.pem`: the key checked here
/// (before anything is paused), then the procedure against the daemon.
fn renew_signing_key(
    config: &ConfigArg,
    procedure: Procedure,
    args: RenewArgs,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let (Some(ring), Some(file)) = (&args.signing_ring, &args.add) else {
        return Err(Failure::usage(
            "renew overlap|exclusive --ring RING needs --add NEW.pem",
        ));
    };
    if args.alias.is_some() || args.cert.is_some() || args.ring.is_some() {
        return Err(Failure::usage(
            "renew overlap|exclusive --ring RING --add NEW.pem takes no --alias, --cert or positional RING",
        ));
    }
    let pem = read_key_and_certificate(file)?;
    let client = client(config, &args.admin)?;
    let confirmation = if args.receiver_ready {
        Confirmation::Given
    } else {
        Confirmation::Prompt
    };
    let ctl = ctl_command(config, &args.admin);
    // With --json the steps go to stderr and stdout gets only the outcome.
    let mut stderr = std::io::stderr();
    let steps: &mut dyn Write = if args.admin.json { &mut stderr } else { out };
    let outcome = block_on(super::renew::renew_signing_key(
        &client,
        procedure,
        ring,
        Bytes::from(pem),
        Duration::from_secs(args.wait),
        confirmation,
        &ctl,
        steps,
    ))?
    .map_err(ctl_failure)?;
    if args.admin.json {
        print_json(out, &outcome)?;
    }
    Ok(())
}

/// A PEM private key with its certificate, checked before anything changes.
fn read_key_and_certificate(file: &std::path::Path) -> Result<Vec<u8>, Failure> {
    let pem = read_file(file)?;
    crate::wss::keys::from_pem(&pem, &file.display().to_string())
        .map_err(Failure::invalid)
        .and_then(|entry| match entry.certificate {
            Some(_) => Ok(()),
            None => Err(Failure::invalid(format!(
                "{}: no certificate beside the key",
                file.display()
            ))),
        })?;
    Ok(pem)
}

/// `renew keyring RING --add NEW.pem`: the key checked here, added through the
/// admin API, and a report of which keys senders still use.
fn renew_keyring(config: &ConfigArg, args: RenewArgs, out: &mut dyn Write) -> Result<(), Failure> {
    let (Some(ring), Some(file)) = (&args.ring, &args.add) else {
        return Err(Failure::usage("renew keyring needs RING and --add NEW.pem"));
    };
    if args.alias.is_some() || args.cert.is_some() || args.signing_ring.is_some() {
        return Err(Failure::usage(
            "renew keyring takes RING and --add, not --alias, --cert or --ring",
        ));
    }
    let pem = read_key_and_certificate(file)?;
    let client = client(config, &args.admin)?;
    block_on(super::renew::renew_keyring(
        &client,
        ring,
        Bytes::from(pem),
        out,
    ))?
    .map_err(ctl_failure)
}
