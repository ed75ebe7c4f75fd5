//! `wssgate check`: validate the configuration and keystore as `serve` would
//! load them, and report routes, certificates and how long each has left.

use std::io::Write;
use std::sync::Arc;
use std::time::SystemTime;

use super::{ConfigArg, Exit, Failure, load_config};
use crate::state::Snapshot;

/// Check the configuration named by `args`; the summary goes to `out`, expiry
/// warnings to `warnings`. Fails with [`Exit::Expiring`] when a certificate in use
/// is within `min_days_left` of expiry.
pub fn check(
    args: &ConfigArg,
    out: &mut dyn Write,
    warnings: &mut dyn Write,
) -> Result<(), Failure> {
    let config = Arc::new(load_config(&args.path())?);
    let now = SystemTime::now();
    let snapshot = Snapshot::build(config.clone(), 1, now)
        .map_err(|e| Failure::invalid(format!("{}: {e}", config.path.display())))?;
    writeln!(out, "configuration {} is valid", config.path.display())?;
    writeln!(
        out,
        "proxy  listen {}  max_body {}  stream_threshold {}",
        config.proxy.listen, config.proxy.max_body, config.proxy.stream_threshold
    )?;
    writeln!(
        out,
        "admin  listen {}  tokens {}",
        config.admin.listen,
        config.admin.tokens.len()
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "{:<16} {:<20} {:<16} {:<40} UPSTREAM",
        "ROUTE", "PATH", "ALIAS", "ALGORITHMS"
    )?;
    for r in &snapshot.routes {
        writeln!(
            out,
            "{:<16} {:<20} {:<16} {:<40} {}",
            r.config.name,
            r.config.path,
            r.config.alias,
            r.config.algorithms.to_string(),
            r.config.upstream
        )?;
    }
    writeln!(out)?;
    writeln!(
        out,
        "{:<16} {:<24} {:<22} {:>9}  SHA256",
        "ALIAS", "SERIAL", "NOT AFTER", "DAYS LEFT"
    )?;
    let mut too_close = Vec::new();
    for (alias, r) in &snapshot.aliases {
        let info = r.info();
        let days = info.days_left(now);
        writeln!(
            out,
            "{:<16} {:<24} {:<22} {:>9}  {}",
            alias,
            info.serial,
            crate::time::rfc3339(info.not_after),
            days,
            info.sha256
        )?;
        if config
            .keystore
            .min_days_left
            .is_some_and(|min| days < i64::from(min))
        {
            too_close.push(format!("{alias} ({days} days left)"));
        }
    }
    for w in snapshot.expiry_warnings(now) {
        writeln!(
            warnings,
            "wssgate: warning: certificate of alias {} (serial {}) expires in {} days",
            w.alias, w.serial, w.days_left
        )?;
    }
    if !too_close.is_empty() {
        return Err(Failure::new(
            Exit::Expiring,
            format!(
                "certificates in use expire within min_days_left = {}: {}",
                config.keystore.min_days_left.unwrap_or_default(),
                too_close.join(", ")
            ),
        ));
    }
    Ok(())
}
