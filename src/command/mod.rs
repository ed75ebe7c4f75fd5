//! The commands of the `wssgate` binary, as library code: each takes its parsed
//! arguments (clap structs defined beside it) and a writer for its output, and
//! returns a [`Failure`] that knows its exit code. `main` only parses, sets up
//! logging and maps failures to exit codes; everything here can be tested.
//!
//! - [`files`]: `encrypt` and `decrypt` (output is written only on success);
//! - [`keystore`]: `keystore list|show|import|exchange|history|purge`;
//! - [`keyring`]: `keyring list|show|add|history|purge`, the private key rings;
//! - [`check`]: `check`, the configuration and expiry report;
//! - [`ctl`]: `ctl …` and `renew`, through the typed admin client;
//! - [`renew`]: the renewal procedures `renew` walks.

pub mod check;
pub mod ctl;
pub mod files;
pub mod keyring;
pub mod keystore;
pub mod renew;

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use clap::Args;

use crate::config::{self, Config};

/// The exit codes of DESIGN.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 1: the operation failed at run time.
    Runtime = 1,
    /// 2: the command line is wrong.
    Usage = 2,
    /// 64: invalid configuration or input (including a refused certificate).
    Invalid = 64,
    /// 65: `check` found a certificate in use within `min_days_left` of expiry.
    Expiring = 65,
}

/// A command that did not succeed: its exit code and its one-line message.
#[derive(Debug)]
pub struct Failure {
    pub exit: Exit,
    pub message: String,
    /// Standard output was closed (`wssgate … | head`): end quietly.
    pub closed_output: bool,
    /// Already written to the log (as JSON where the log is JSON): not again.
    pub logged: bool,
}

impl Failure {
    pub fn invalid(message: impl std::fmt::Display) -> Failure {
        Failure::new(Exit::Invalid, message)
    }

    pub fn runtime(message: impl std::fmt::Display) -> Failure {
        Failure::new(Exit::Runtime, message)
    }

    pub fn usage(message: impl std::fmt::Display) -> Failure {
        Failure::new(Exit::Usage, message)
    }

    pub fn new(exit: Exit, message: impl std::fmt::Display) -> Failure {
        Failure {
            exit,
            message: message.to_string(),
            closed_output: false,
            logged: false,
        }
    }
}

/// Writing the output failed; a closed pipe is not an error worth a message.
impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Failure {
        Failure {
            closed_output: e.kind() == io::ErrorKind::BrokenPipe,
            ..Failure::runtime(format!("cannot write output: {e}"))
        }
    }
}

/// `-c/--config`, accepted before and after every subcommand.
#[derive(Args, Debug, Clone, Default)]
pub struct ConfigArg {
    /// Configuration file [default: config/wssgate.toml, else /etc/wssgate/wssgate.toml].
    #[arg(
        short = 'c',
        long = "config",
        global = true,
        env = "WSSGATE_CONFIG",
        value_name = "FILE"
    )]
    pub config: Option<PathBuf>,
}

impl ConfigArg {
    /// The file to read (see [`config::resolve_path`]).
    pub fn path(&self) -> PathBuf {
        config::resolve_path(self.config.as_deref())
    }
}

pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, Failure> {
    std::fs::read(path)
        .map_err(|e| Failure::invalid(format!("cannot read {}: {e}", path.display())))
}

pub(crate) fn load_config(path: &Path) -> Result<Config, Failure> {
    Config::load(path).map_err(Failure::invalid)
}

/// The first line of a password file.
pub(crate) fn read_password(path: Option<&Path>) -> Result<Option<String>, Failure> {
    match path {
        Some(p) => {
            let text = String::from_utf8(read_file(p)?)
                .map_err(|_| Failure::invalid(format!("{}: not UTF-8 text", p.display())))?;
            Ok(Some(text.lines().next().unwrap_or_default().to_string()))
        }
        None => Ok(None),
    }
}

/// Who the audit log names for a change made from the command line: the user the
/// process runs as (by its uid, not by an environment variable it could be handed),
/// and who ran sudo, if anyone did.
pub fn cli_actor() -> String {
    let uid = rustix::process::getuid().as_raw();
    let user = user_name(uid).unwrap_or_else(|| format!("uid {uid}"));
    match std::env::var("SUDO_USER") {
        Ok(by) if !by.is_empty() && by != user => format!("cli:{user} (sudo by {by})"),
        _ => format!("cli:{user}"),
    }
}

/// The name of `uid` in the passwd database (`/etc/passwd`).
fn user_name(uid: u32) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let id = fields.nth(1)?;
        (id.parse::<u32>().ok()? == uid).then(|| name.to_string())
    })
}

pub(crate) fn print_json<T: serde::Serialize>(
    out: &mut dyn Write,
    value: &T,
) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(value).map_err(Failure::runtime)?;
    writeln!(out, "{text}")?;
    Ok(())
}

/// Run `f` to completion on a runtime of its own.
pub fn block_on<F: std::future::Future>(f: F) -> Result<F::Output, Failure> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::runtime(format!("cannot start the runtime: {e}")))?;
    Ok(runtime.block_on(f))
}
