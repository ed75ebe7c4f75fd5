//! The `wssgate` command line: parses arguments, sets up logging, calls the
//! library and turns its errors into exit codes. Nothing testable lives here.

use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::SystemTime;

use clap::{Args, Parser, Subcommand};
use wssgate::config::{self, Config, LogFormat};
use wssgate::keystore::{self as ks, Keystore};
use wssgate::state::Snapshot;
use wssgate::wss::{
    self, AlgorithmOverrides, Algorithms, CertificatePolicy, DataEncryption, EncryptOptions,
    KeyIdentifier, KeyTransport, Limits, OaepDigest, Profile, Recipient,
};
use wssgate::{daemon, signal, telemetry};

/// Like the standard `println!`/`print!`, but a closed pipe (`wssgate … | head`) ends
/// the program quietly instead of panicking.
macro_rules! println {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout(), $($arg)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
        }
    }};
}

macro_rules! print {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = write!(std::io::stdout(), $($arg)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
        }
    }};
}

/// Exit code for invalid configuration or input (including a refused certificate).
const EXIT_INVALID: u8 = 64;
const EXIT_RUNTIME: u8 = 1;
/// Exit code of `check` when a certificate in use is within `min_days_left` of expiry.
const EXIT_EXPIRING: u8 = 65;

#[derive(Parser)]
#[command(
    name = "wssgate",
    version,
    about = "WS-Security encrypting SOAP proxy with zero-downtime certificate renewal"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the encrypting proxy daemon.
    Serve(ServeArgs),
    /// Encrypt a SOAP envelope for a receiver certificate (stdin to stdout by default).
    Encrypt(EncryptArgs),
    /// Decrypt a WS-Security encrypted message with the receiver's private key(s).
    Decrypt(DecryptArgs),
    /// Validate the configuration and keystore and print a summary.
    Check(ConfigArg),
    /// Inspect and change the keystore: aliases, certificates, archive.
    Keystore(KeystoreArgs),
    /// Talk to a running daemon's admin API.
    Ctl(CtlArgs),
    /// Walk an overlap or exclusive certificate renewal against a running daemon.
    Renew(RenewArgs),
    /// A self-contained run of both renewal procedures with live traffic.
    Demo,
}

#[derive(Args)]
struct AdminArgs {
    /// Admin API URL (default: from the configuration file).
    #[arg(long, value_name = "URL")]
    admin: Option<String>,
    /// File holding the bearer token (default: the first token file of the configuration
    /// that can be read).
    #[arg(long, value_name = "F")]
    token_file: Option<PathBuf>,
    /// CA certificate to verify an https admin URL with.
    #[arg(long, value_name = "CA.pem")]
    admin_ca: Option<PathBuf>,
    /// Configuration file (for the admin URL and token).
    #[arg(short = 'c', long = "config", default_value = config::DEFAULT_PATH)]
    config: PathBuf,
    /// Print JSON.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Args)]
struct CtlArgs {
    #[command(flatten)]
    admin: AdminArgs,
    #[command(subcommand)]
    command: CtlCommand,
}

#[derive(Subcommand)]
enum CtlCommand {
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
    /// An alias's live certificate and archived history.
    Keystore { alias: Option<String> },
}

#[derive(Args)]
struct RenewArgs {
    #[command(flatten)]
    admin: AdminArgs,
    /// overlap (the receiver accepts old and new key for a while) or exclusive
    /// (it holds one key: pause, exchange, swap, resume).
    procedure: String,
    #[arg(long)]
    alias: String,
    /// The receiver's new certificate.
    #[arg(long, value_name = "NEW.pem")]
    cert: PathBuf,
    /// The receiver administrator has confirmed out of band; do not prompt.
    #[arg(long)]
    receiver_ready: bool,
    /// Seconds to wait for in-flight requests when pausing.
    #[arg(long, default_value_t = 60)]
    wait: u64,
}

#[derive(Args)]
struct ServeArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Log format, overriding [log] format: text or json.
    #[arg(long, value_name = "FORMAT")]
    log_format: Option<String>,
}

#[derive(Args)]
struct ConfigArg {
    /// Configuration file.
    #[arg(short = 'c', long = "config", default_value = config::DEFAULT_PATH)]
    config: PathBuf,
}

#[derive(Args)]
struct KeystoreArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: KeystoreCommand,
}

#[derive(Subcommand)]
enum KeystoreCommand {
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

#[derive(Args)]
struct EncryptArgs {
    /// The receiver's X.509 certificate (PEM or DER).
    #[arg(long, value_name = "CERT.pem")]
    cert: PathBuf,
    /// Named algorithm suite: default, wcf-basic256, wcf-basic128, modern.
    #[arg(long, default_value = "default")]
    profile: Profile,
    /// Key identifier: issuer-serial, bst, ski, thumbprint (overrides the profile).
    #[arg(long = "key-id", value_name = "ID")]
    key_id: Option<KeyIdentifier>,
    /// Data encryption: aes128-cbc, aes256-cbc, aes128-gcm, aes256-gcm, tripledes-cbc.
    #[arg(long = "enc", value_name = "ALG")]
    enc: Option<DataEncryption>,
    /// Key transport: rsa-oaep-mgf1p, rsa-oaep, rsa-1_5 (needs --allow-legacy).
    #[arg(long = "key-transport", value_name = "ALG")]
    key_transport: Option<KeyTransport>,
    /// Digest of rsa-oaep (and its MGF1): sha1, sha256, sha512.
    #[arg(long = "oaep-digest", value_name = "DIGEST")]
    oaep_digest: Option<OaepDigest>,
    /// Permit rsa-1_5 key transport.
    #[arg(long)]
    allow_legacy: bool,
    /// Do not mark a newly created Security header mustUnderstand.
    #[arg(long)]
    no_must_understand: bool,
    /// Deepest element nesting accepted (the Envelope is depth 1).
    #[arg(long, default_value_t = 256)]
    max_depth: usize,
    #[arg(short = 'i', value_name = "IN")]
    input: Option<PathBuf>,
    #[arg(short = 'o', value_name = "OUT")]
    output: Option<PathBuf>,
}

#[derive(Args)]
struct DecryptArgs {
    /// Private keys: PEM files with key and certificate, or PKCS#12 (.p12/.pfx); comma separated or repeated.
    #[arg(
        long,
        value_name = "KEY.pem[,KEY2.pem…]",
        value_delimiter = ',',
        required = true
    )]
    key: Vec<PathBuf>,
    /// File holding the PKCS#12 password (first line).
    #[arg(long, value_name = "F")]
    password_file: Option<PathBuf>,
    #[arg(short = 'i', value_name = "IN")]
    input: Option<PathBuf>,
    #[arg(short = 'o', value_name = "OUT")]
    output: Option<PathBuf>,
}

/// An error with the exit code it maps to.
struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    fn invalid(message: impl std::fmt::Display) -> Failure {
        Failure {
            code: EXIT_INVALID,
            message: message.to_string(),
        }
    }
    fn runtime(message: impl std::fmt::Display) -> Failure {
        Failure {
            code: EXIT_RUNTIME,
            message: message.to_string(),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Encrypt(args) => encrypt(args),
        Command::Decrypt(args) => decrypt(args),
        Command::Serve(args) => serve(args),
        Command::Check(args) => check(args),
        Command::Keystore(args) => keystore(args),
        Command::Ctl(args) => ctl(args),
        Command::Renew(args) => renew(args),
        Command::Demo => demo(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            let line = f.message.replace('\n', " ");
            let _ = writeln!(io::stderr(), "wssgate: error: {line}");
            ExitCode::from(f.code)
        }
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>, Failure> {
    std::fs::read(path)
        .map_err(|e| Failure::invalid(format!("cannot read {}: {e}", path.display())))
}

fn open_input(path: Option<&Path>) -> Result<Box<dyn Read>, Failure> {
    Ok(match path {
        Some(p) => Box::new(
            File::open(p)
                .map_err(|e| Failure::invalid(format!("cannot open {}: {e}", p.display())))?,
        ),
        None => Box::new(io::stdin().lock()),
    })
}

/// Where output goes until the command has succeeded: a temporary file beside the
/// target (renamed into place), or a spooled buffer copied to stdout at the end.
/// A failed command leaves no partial output anywhere.
enum PendingOutput {
    File {
        temp: tempfile::NamedTempFile,
        target: PathBuf,
    },
    Stdout(tempfile::SpooledTempFile),
}

impl PendingOutput {
    fn new(target: Option<&Path>) -> Result<PendingOutput, Failure> {
        Ok(match target {
            Some(t) => {
                let dir = t
                    .parent()
                    .filter(|d| !d.as_os_str().is_empty())
                    .unwrap_or(Path::new("."));
                let temp = tempfile::NamedTempFile::new_in(dir).map_err(|e| {
                    Failure::runtime(format!("cannot write beside {}: {e}", t.display()))
                })?;
                PendingOutput::File {
                    temp,
                    target: t.to_path_buf(),
                }
            }
            None => PendingOutput::Stdout(tempfile::SpooledTempFile::new(8 * 1024 * 1024)),
        })
    }

    fn writer(&mut self) -> &mut dyn Write {
        match self {
            PendingOutput::File { temp, .. } => temp,
            PendingOutput::Stdout(s) => s,
        }
    }

    fn commit(self) -> Result<(), Failure> {
        match self {
            PendingOutput::File { temp, target } => {
                temp.as_file()
                    .sync_all()
                    .map_err(|e| Failure::runtime(format!("cannot write output: {e}")))?;
                temp.persist(&target).map_err(|e| {
                    Failure::runtime(format!("cannot write {}: {}", target.display(), e.error))
                })?;
                Ok(())
            }
            PendingOutput::Stdout(mut s) => {
                s.rewind()
                    .map_err(|e| Failure::runtime(format!("cannot write output: {e}")))?;
                let mut stdout = io::stdout().lock();
                io::copy(&mut s, &mut stdout)
                    .and_then(|_| stdout.flush())
                    .map_err(|e| Failure::runtime(format!("cannot write output: {e}")))?;
                Ok(())
            }
        }
    }
}

fn encrypt(args: EncryptArgs) -> Result<(), Failure> {
    let overrides = AlgorithmOverrides {
        key_identifier: args.key_id,
        data_encryption: args.enc,
        key_transport: args.key_transport,
        oaep_digest: args.oaep_digest,
    };
    let algorithms = Algorithms::resolve(args.profile, overrides, args.allow_legacy)
        .map_err(Failure::invalid)?;
    let cert_bytes = read_file(&args.cert)?;
    let recipient = Recipient::from_bytes(&cert_bytes)
        .map_err(|e| Failure::invalid(format!("{}: {e}", args.cert.display())))?;
    let policy = CertificatePolicy {
        require_ski: algorithms.key_identifier == KeyIdentifier::Ski,
        ..CertificatePolicy::default()
    };
    recipient
        .check(&policy)
        .map_err(|e| Failure::invalid(format!("{}: {e}", args.cert.display())))?;
    let options = EncryptOptions {
        algorithms,
        must_understand: !args.no_must_understand,
        limits: Limits {
            max_depth: args.max_depth,
            max_bytes: None,
            ..Limits::default()
        },
    };
    let input = open_input(args.input.as_deref())?;
    let mut output = PendingOutput::new(args.output.as_deref())?;
    wss::encrypt_envelope(input, output.writer(), &recipient, &options).map_err(|e| {
        if e.is_input_error() || matches!(e, wss::EncryptError::Certificate(_)) {
            Failure::invalid(e)
        } else {
            Failure::runtime(e)
        }
    })?;
    output.commit()
}

fn decrypt(args: DecryptArgs) -> Result<(), Failure> {
    let password = read_password(args.password_file.as_deref())?;
    let mut keys = wss::keys::KeyRing::default();
    for path in &args.key {
        keys.load_file(path, password.as_deref())
            .map_err(Failure::invalid)?;
    }
    let mut document = Vec::new();
    open_input(args.input.as_deref())?
        .read_to_end(&mut document)
        .map_err(|e| Failure::runtime(format!("reading the input failed: {e}")))?;
    let (plain, _summary) =
        wss::decrypt::decrypt_document(&document, &keys).map_err(Failure::invalid)?;
    let mut output = PendingOutput::new(args.output.as_deref())?;
    output
        .writer()
        .write_all(&plain)
        .map_err(|e| Failure::runtime(format!("cannot write output: {e}")))?;
    output.commit()
}

fn load_config(path: &Path) -> Result<Config, Failure> {
    Config::load(path).map_err(Failure::invalid)
}

/// Who the audit log names for a change made from the command line.
fn cli_actor() -> String {
    let user = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "unknown".to_string());
    format!("cli:{user}")
}

fn read_password(path: Option<&Path>) -> Result<Option<String>, Failure> {
    match path {
        Some(p) => {
            let text = String::from_utf8(read_file(p)?)
                .map_err(|_| Failure::invalid(format!("{}: not UTF-8 text", p.display())))?;
            Ok(Some(text.lines().next().unwrap_or_default().to_string()))
        }
        None => Ok(None),
    }
}

fn check(args: ConfigArg) -> Result<(), Failure> {
    let config = Arc::new(load_config(&args.config)?);
    let now = SystemTime::now();
    let snapshot = Snapshot::build(config.clone(), 1, now)
        .map_err(|e| Failure::invalid(format!("{}: {e}", config.path.display())))?;
    println!("configuration {} is valid", config.path.display());
    println!(
        "proxy  listen {}  max_body {}  stream_threshold {}",
        config.proxy.listen, config.proxy.max_body, config.proxy.stream_threshold
    );
    println!(
        "admin  listen {}  tokens {}",
        config.admin.listen,
        config.admin.tokens.len()
    );
    println!();
    println!(
        "{:<16} {:<20} {:<16} {:<40} UPSTREAM",
        "ROUTE", "PATH", "ALIAS", "ALGORITHMS"
    );
    for r in &snapshot.routes {
        println!(
            "{:<16} {:<20} {:<16} {:<40} {}",
            r.config.name,
            r.config.path,
            r.config.alias,
            r.config.algorithms.to_string(),
            r.config.upstream
        );
    }
    println!();
    println!(
        "{:<16} {:<24} {:<22} {:>9}  SHA256",
        "ALIAS", "SERIAL", "NOT AFTER", "DAYS LEFT"
    );
    let mut too_close = Vec::new();
    for (alias, r) in &snapshot.aliases {
        let info = r.info();
        let days = info.days_left(now);
        println!(
            "{:<16} {:<24} {:<22} {:>9}  {}",
            alias,
            info.serial,
            wss::certificate::rfc3339(info.not_after),
            days,
            info.sha256
        );
        if config
            .keystore
            .min_days_left
            .is_some_and(|min| days < i64::from(min))
        {
            too_close.push(format!("{alias} ({days} days left)"));
        }
    }
    for w in snapshot.expiry_warnings(now) {
        eprintln!(
            "wssgate: warning: certificate of alias {} (serial {}) expires in {} days",
            w.alias, w.serial, w.days_left
        );
    }
    if !too_close.is_empty() {
        return Err(Failure {
            code: EXIT_EXPIRING,
            message: format!(
                "certificates in use expire within min_days_left = {}: {}",
                config.keystore.min_days_left.unwrap_or_default(),
                too_close.join(", ")
            ),
        });
    }
    Ok(())
}

fn print_json<T: serde::Serialize>(value: &T) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(value).map_err(Failure::runtime)?;
    println!("{text}");
    Ok(())
}

fn keystore_failure(e: ks::KeystoreError) -> Failure {
    if e.is_invalid_input() {
        Failure::invalid(e)
    } else {
        Failure::runtime(e)
    }
}

fn keystore(args: KeystoreArgs) -> Result<(), Failure> {
    let config = load_config(&args.config.config)?;
    let store = Keystore::new(config.keystore.clone());
    let now = SystemTime::now();
    let needs_ski = |alias: &str| config.aliases_needing_ski().iter().any(|a| a == alias);
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
            let rows: Vec<serde_json::Value> = entries
                .values()
                .filter(|e| only.as_ref().is_none_or(|a| *a == e.alias))
                .map(|e| {
                    let routes: Vec<&str> = config.routes_for_alias(&e.alias).map(|r| r.name.as_str()).collect();
                    match &e.certificate {
                        Ok(r) => {
                            let info = r.info();
                            let policy = ks::policy(&config.keystore, needs_ski(&e.alias));
                            serde_json::json!({
                                "alias": e.alias,
                                "serial": info.serial,
                                "issuer": info.issuer,
                                "subject": info.subject,
                                "sha256": info.sha256,
                                "not_after": wss::certificate::rfc3339(info.not_after),
                                "days_left": info.days_left(now),
                                "routes": routes,
                                "status": match r.check(&policy) { Ok(()) => "ok".to_string(), Err(e) => e.to_string() },
                            })
                        }
                        Err(reason) => serde_json::json!({"alias": e.alias, "routes": routes, "status": reason}),
                    }
                })
                .collect();
            if args.json {
                return print_json(&if only.is_some() {
                    rows[0].clone()
                } else {
                    serde_json::Value::Array(rows)
                });
            }
            println!(
                "{:<16} {:<24} {:<22} {:>5}  {:<64}  {:<28} {:<28} STATUS",
                "ALIAS", "SERIAL", "NOT AFTER", "DAYS", "SHA256", "SUBJECT", "ISSUER"
            );
            for r in rows {
                let s = |k: &str| r[k].as_str().unwrap_or("-").to_string();
                let days = r["days_left"]
                    .as_i64()
                    .map(|d| d.to_string())
                    .unwrap_or_else(|| "-".into());
                println!(
                    "{:<16} {:<24} {:<22} {:>5}  {:<64}  {:<28} {:<28} {}",
                    s("alias"),
                    s("serial"),
                    s("not_after"),
                    days,
                    s("sha256"),
                    s("subject"),
                    s("issuer"),
                    s("status")
                );
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
            let policy = ks::policy(&config.keystore, needs_ski(&alias));
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
            report_change(args.json, "imported", &outcome)
        }
        KeystoreCommand::Exchange { alias, cert } => {
            let bytes = read_file(&cert)?;
            let policy = ks::policy(&config.keystore, needs_ski(&alias));
            let outcome = store
                .exchange(&alias, &bytes, &cli_actor(), &policy, now)
                .map_err(keystore_failure)?;
            report_change(args.json, "exchanged", &outcome)?;
            if !args.json {
                println!(
                    "a running daemon uses the new certificate after its next reload (SIGHUP, or wssgate ctl reload)"
                );
            }
            Ok(())
        }
        KeystoreCommand::History { alias } => {
            let history = store.history(&alias).map_err(keystore_failure)?;
            if args.json {
                return print_json(&history);
            }
            println!(
                "{:<24} {:<22} {:<22} {:<22} {:<22} SHA256",
                "SERIAL", "ACTIVE FROM", "RETIRED AT", "RETAIN UNTIL", "NOT AFTER"
            );
            for h in history {
                println!(
                    "{:<24} {:<22} {:<22} {:<22} {:<22} {}",
                    h.certificate.serial,
                    h.active_from.as_deref().unwrap_or("-"),
                    h.retired_at.as_deref().unwrap_or("(active)"),
                    h.retain_until.as_deref().unwrap_or("-"),
                    h.certificate.not_after,
                    h.certificate.sha256
                );
            }
            Ok(())
        }
        KeystoreCommand::Purge => {
            let report = store.purge(&cli_actor(), now).map_err(keystore_failure)?;
            if args.json {
                return print_json(&report);
            }
            for r in &report.deleted {
                println!(
                    "deleted  {:<16} serial {:<24} retain_until {}  sha256 {}",
                    r.alias, r.serial, r.retain_until, r.sha256
                );
            }
            for r in &report.kept {
                println!(
                    "kept     {:<16} serial {:<24} retain_until {}  sha256 {}",
                    r.alias, r.serial, r.retain_until, r.sha256
                );
            }
            println!(
                "{} deleted, {} kept",
                report.deleted.len(),
                report.kept.len()
            );
            Ok(())
        }
    }
}

fn report_change(json: bool, verb: &str, outcome: &ks::ExchangeOutcome) -> Result<(), Failure> {
    if json {
        return print_json(outcome);
    }
    if let Some(p) = &outcome.previous {
        println!(
            "alias {}: archived serial {} (sha256 {})",
            outcome.alias, p.serial, p.sha256
        );
    }
    println!(
        "alias {}: {verb} serial {} (sha256 {}, not after {})",
        outcome.alias, outcome.current.serial, outcome.current.sha256, outcome.current.not_after
    );
    Ok(())
}

fn serve(args: ServeArgs) -> Result<(), Failure> {
    let format = match args.log_format.as_deref() {
        None => None,
        Some("text") => Some(LogFormat::Text),
        Some("json") => Some(LogFormat::Json),
        Some(other) => {
            return Err(Failure {
                code: 2,
                message: format!("--log-format {other:?} is not text or json"),
            });
        }
    };
    // The log format is in the file: read it first, so that loading logs properly.
    let preview = load_config(&args.config.config)?;
    telemetry::init(format.unwrap_or(preview.log_format));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::runtime(format!("cannot start the runtime: {e}")))?;
    runtime.block_on(async move {
        let daemon = daemon::Daemon::load(&args.config.config)
            .await
            .map_err(Failure::invalid)?;
        daemon.log_startup();
        let (proxy_listener, admin_listener) = daemon.bind().await.map_err(Failure::runtime)?;
        let intents = signal::intents()
            .map_err(|e| Failure::runtime(format!("cannot install signal handlers: {e}")))?;
        daemon
            .run(proxy_listener, admin_listener, intents)
            .await
            .map_err(Failure::runtime)
    })?;
    tracing::info!("stopped");
    Ok(())
}

fn admin_client(args: &AdminArgs) -> Result<wssgate::ctl::AdminClient, Failure> {
    let config = if args.admin.is_none() || args.token_file.is_none() {
        Some(load_config(&args.config)?)
    } else {
        None
    };
    let url = match (&args.admin, &config) {
        (Some(u), _) => u.clone(),
        (None, Some(c)) => c.admin.url.clone(),
        (None, None) => unreachable!("the configuration is read when --admin is absent"),
    };
    let token = match (&args.token_file, &config) {
        (Some(f), _) => String::from_utf8(read_file(f)?)
            .map_err(|_| Failure::invalid("the token file is not text"))?,
        (None, Some(c)) => c
            .admin
            .tokens
            .iter()
            .find_map(|t| std::fs::read_to_string(&t.file).ok())
            .ok_or_else(|| {
                Failure::invalid("no readable token file in the configuration; use --token-file")
            })?,
        (None, None) => unreachable!("the configuration is read when --token-file is absent"),
    };
    wssgate::ctl::AdminClient::new(&url, &token, args.admin_ca.as_deref()).map_err(Failure::runtime)
}

fn ctl_failure(e: wssgate::ctl::CtlError) -> Failure {
    if e.is_invalid_input() {
        Failure::invalid(e)
    } else {
        Failure::runtime(e)
    }
}

fn block_on<F: std::future::Future>(f: F) -> Result<F::Output, Failure> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::runtime(format!("cannot start the runtime: {e}")))?;
    Ok(runtime.block_on(f))
}

fn ctl(args: CtlArgs) -> Result<(), Failure> {
    use http::Method;
    let client = admin_client(&args.admin)?;
    let json = args.admin.json;
    let (status, value) = block_on(async {
        match &args.command {
            CtlCommand::Status => client.call(Method::GET, "/v1/status", None).await,
            CtlCommand::Routes => client.call(Method::GET, "/v1/routes", None).await,
            CtlCommand::Pause { route, wait } => {
                let q = wait.map(|w| format!("?wait={w}")).unwrap_or_default();
                client
                    .call(Method::POST, &format!("/v1/routes/{route}/pause{q}"), None)
                    .await
            }
            CtlCommand::Resume { route } => {
                client
                    .call(Method::POST, &format!("/v1/routes/{route}/resume"), None)
                    .await
            }
            CtlCommand::Reload => client.call(Method::POST, "/v1/reload", None).await,
            CtlCommand::Exchange { alias, cert } => {
                let pem = std::fs::read(cert).map_err(|e| {
                    wssgate::ctl::CtlError::Stopped(format!("cannot read {}: {e}", cert.display()))
                })?;
                client
                    .call(Method::PUT, &format!("/v1/keystore/{alias}"), Some(pem))
                    .await
            }
            CtlCommand::Keystore { alias } => {
                let path = alias
                    .as_ref()
                    .map(|a| format!("/v1/keystore/{a}"))
                    .unwrap_or_else(|| "/v1/keystore".into());
                client.call(Method::GET, &path, None).await
            }
        }
    })?
    .map_err(ctl_failure)?;
    if json {
        return print_json(&value);
    }
    match &args.command {
        CtlCommand::Status => {
            println!(
                "wssgate {}  generation {}  loaded {}  config {}",
                value["version"].as_str().unwrap_or("?"),
                value["generation"],
                value["loaded_at"].as_str().unwrap_or("?"),
                value["config"].as_str().unwrap_or("?")
            );
            println!(
                "reloads ok {}  failed {}",
                value["reloads"]["ok"], value["reloads"]["failed"]
            );
            println!();
            print!("{}", wssgate::ctl::routes_table(&value["routes"]));
        }
        CtlCommand::Routes => print!("{}", wssgate::ctl::routes_table(&value)),
        CtlCommand::Pause { route, .. } => {
            if status == 202 {
                return Err(Failure::runtime(format!(
                    "route {route} is paused, but {} requests are still in flight",
                    value["in_flight"]
                )));
            }
            println!(
                "route {route} paused: nothing is sent to the receiver ({} in flight, {} held)",
                value["in_flight"], value["held"]
            );
        }
        CtlCommand::Resume { route } => println!(
            "route {route} resumed; {} held requests released",
            value["released"]
        ),
        CtlCommand::Reload => println!(
            "reloaded: generation {}; changes: {}",
            value["generation"], value["changed"]
        ),
        CtlCommand::Exchange { alias, .. } => println!(
            "alias {alias}: serial {} is live (was serial {}), generation {}",
            value["current"]["serial"].as_str().unwrap_or("?"),
            value["previous"]["serial"].as_str().unwrap_or("?"),
            value["generation"]
        ),
        CtlCommand::Keystore { .. } => print_json(&value)?,
    }
    Ok(())
}

fn renew(args: RenewArgs) -> Result<(), Failure> {
    let procedure = match args.procedure.as_str() {
        "overlap" => wssgate::ctl::Procedure::Overlap,
        "exclusive" => wssgate::ctl::Procedure::Exclusive,
        other => {
            return Err(Failure {
                code: 2,
                message: format!("procedure {other:?} is not overlap or exclusive"),
            });
        }
    };
    let client = admin_client(&args.admin)?;
    let certificate = read_file(&args.cert)?;
    // Refuse a bad certificate before anything is paused.
    wss::Recipient::from_bytes(&certificate)
        .and_then(|r| r.check(&CertificatePolicy::default()).map(|()| r))
        .map_err(|e| Failure::invalid(format!("{}: {e}", args.cert.display())))?;
    let confirmation = if args.receiver_ready {
        wssgate::ctl::Confirmation::Given
    } else {
        wssgate::ctl::Confirmation::Prompt
    };
    let mut out = io::stdout();
    block_on(wssgate::ctl::renew(
        &client,
        procedure,
        &args.alias,
        certificate,
        std::time::Duration::from_secs(args.wait),
        confirmation,
        &mut out,
    ))?
    .map_err(ctl_failure)
}

fn demo() -> Result<(), Failure> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::runtime(format!("cannot start the runtime: {e}")))?;
    let mut out = io::stdout();
    let report = runtime
        .block_on(wssgate::demo::run(&mut out))
        .map_err(Failure::runtime)?;
    if report.success() {
        Ok(())
    } else {
        Err(Failure::runtime(
            "the demo found lost, failed or undecryptable messages",
        ))
    }
}
