//! The `wssgate` command line: parses arguments, sets up logging, calls the
//! library ([`wssgate::command`] for every command but `serve`, whose wiring is
//! [`wssgate::daemon`]) and turns its failures into exit codes.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use wssgate::command::{
    self, ConfigArg, Failure, check::check, ctl, files, keystore::KeystoreArgs,
};
use wssgate::config::LogFormat;
use wssgate::{daemon, signal, telemetry};

#[derive(Parser)]
#[command(
    name = "wssgate",
    version,
    about = "WS-Security encrypting SOAP proxy with zero-downtime certificate renewal"
)]
struct Cli {
    #[command(flatten)]
    config: ConfigArg,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the encrypting proxy daemon.
    Serve(ServeArgs),
    /// Encrypt a SOAP envelope for a receiver certificate (stdin to stdout by default).
    Encrypt(files::EncryptArgs),
    /// Decrypt a WS-Security encrypted message with the receiver's private key(s).
    Decrypt(files::DecryptArgs),
    /// Validate the configuration and keystore and print a summary.
    Check,
    /// Inspect and change the keystore: aliases, certificates, archive.
    Keystore(KeystoreArgs),
    /// Inspect and change the key rings: private keys of the decrypt side.
    Keyring(command::keyring::KeyringArgs),
    /// Talk to a running daemon's admin API.
    Ctl(ctl::CtlArgs),
    /// Walk an overlap or exclusive certificate renewal against a running daemon.
    Renew(ctl::RenewArgs),
    /// A self-contained run of both renewal procedures with live traffic.
    Demo(DemoArgs),
}

#[derive(Args)]
struct DemoArgs {
    #[command(subcommand)]
    what: Option<DemoCommand>,
}

#[derive(Subcommand)]
enum DemoCommand {
    /// A receiver that decrypts what it gets and prints which key did (to try wssgate).
    Receiver {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:9000")]
        listen: std::net::SocketAddr,
        /// PEM files each holding a private key and its certificate; comma separated or repeated.
        #[arg(
            long,
            value_name = "KEY.pem[,KEY2.pem…]",
            value_delimiter = ',',
            required = true
        )]
        key: Vec<PathBuf>,
    },
}

#[derive(Args)]
struct ServeArgs {
    /// Log format, overriding [log] format.
    #[arg(long, value_name = "FORMAT", value_enum)]
    log_format: Option<LogFormatArg>,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormatArg {
    Text,
    Json,
}

/// glibc's allocator, left to itself, gives the freed top of a heap back to the
/// kernel once 128 KiB or more of it are free (after raising that bound a
/// little as it sees large blocks freed), and serves blocks from 128 KiB up with
/// a mapping of their own. A 100 KiB message needs a few such buffers (the
/// output, the scanner's runs, a held element) and frees them at its end, so the
/// next message faults the same pages in again: 14 page faults per encrypted
/// 100 KiB request through the daemon, 8 % of its CPU (docs/PERFORMANCE.md,
/// "Memory returned to the kernel"). Keeping up to 1 MiB free at a heap's top
/// and mapping only blocks from 256 KiB up takes that to under one, and keeps
/// the peak of 1,000 concurrent 100 KiB requests within the memory bound. An
/// operator's own `GLIBC_TUNABLES` malloc settings win: then nothing is changed.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let operator_set = std::env::var_os("GLIBC_TUNABLES")
            .is_some_and(|t| t.to_string_lossy().contains("glibc.malloc."));
        if !operator_set {
            // SAFETY: mallopt only sets two of the allocator's parameters. It is
            // called first thing in `main`, before any thread is started and
            // before anything this process allocates depends on them.
            unsafe {
                libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 20);
                libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 10);
            }
        }
    }
}

fn main() -> ExitCode {
    tune_allocator();
    let cli = Cli::parse();
    let mut stdout = io::stdout();
    let out: &mut dyn Write = &mut stdout;
    let config = &cli.config;
    let result = match cli.command {
        Command::Encrypt(args) => files::encrypt(args, out),
        Command::Decrypt(args) => files::decrypt(args, out),
        Command::Serve(args) => serve(config.path(), args),
        Command::Check => check(config, out, &mut io::stderr()),
        Command::Keystore(args) => command::keystore::keystore(config, args, out),
        Command::Keyring(args) => command::keyring::keyring(config, args, out),
        Command::Ctl(args) => ctl::ctl(config, args, out),
        Command::Renew(args) => ctl::renew(config, args, out),
        Command::Demo(DemoArgs { what: None }) => demo(out),
        Command::Demo(DemoArgs {
            what: Some(DemoCommand::Receiver { listen, key }),
        }) => demo_receiver(listen, &key, out),
    };
    let result = result.and_then(|()| out.flush().map_err(Failure::from));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // `wssgate … | head`: the reader has what it wanted.
        Err(f) if f.closed_output => ExitCode::SUCCESS,
        Err(f) if f.logged => ExitCode::from(f.exit as u8),
        Err(f) => {
            let line = f.message.replace('\n', " ");
            let _ = writeln!(io::stderr(), "wssgate: error: {line}");
            ExitCode::from(f.exit as u8)
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(wssgate::proxy::BLOCKING_THREADS)
        .enable_all()
        .build()
        .map_err(|e| Failure::runtime(format!("cannot start the runtime: {e}")))
}

fn serve(path: PathBuf, args: ServeArgs) -> Result<(), Failure> {
    // The log format is in the file: read it first, so that loading logs properly.
    let preview = wssgate::config::Config::load(&path);
    let format = match args.log_format {
        Some(LogFormatArg::Text) => LogFormat::Text,
        Some(LogFormatArg::Json) => LogFormat::Json,
        None => preview.as_ref().map_or(LogFormat::Text, |c| c.log_format),
    };
    // Held until serve returns: queued log lines are written before the exit.
    let _log_writer = telemetry::init(format);
    let result = preview.map_err(Failure::invalid).and_then(|_| {
        runtime()?.block_on(async move {
            let daemon =
                daemon::Daemon::load_notifying(&path, wssgate::systemd::Notifier::from_env())
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
        })
    });
    match result {
        Ok(()) => {
            tracing::info!("stopped");
            Ok(())
        }
        // A JSON log stays JSON to its last line.
        Err(mut f) if format == LogFormat::Json => {
            tracing::error!(error = %f.message, exit = f.exit as u8, "wssgate serve failed");
            f.logged = true;
            Err(f)
        }
        Err(f) => Err(f),
    }
}

fn demo_receiver(
    listen: std::net::SocketAddr,
    keys: &[PathBuf],
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let mut ring = wssgate::wss::keys::KeyRing::default();
    for path in keys {
        ring.load_file(path, None).map_err(Failure::invalid)?;
    }
    runtime()?
        .block_on(wssgate::demo::run_receiver(listen, ring, out))
        .map_err(Failure::runtime)
}

fn demo(out: &mut dyn Write) -> Result<(), Failure> {
    let report = runtime()?
        .block_on(wssgate::demo::run(out))
        .map_err(Failure::runtime)?;
    if report.success() {
        Ok(())
    } else {
        Err(Failure::runtime(
            "the demo found lost, failed or undecryptable messages",
        ))
    }
}
