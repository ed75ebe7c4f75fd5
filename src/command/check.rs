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
    let config = load_config(&args.path())?;
    let now = SystemTime::now();
    // Token files others can read are a warning here, a refusal in `serve`.
    for t in &config.admin.tokens {
        if let Ok(meta) = std::fs::metadata(&t.file)
            && meta.is_file()
            && crate::state::token_file_exposed(&meta)
        {
            let consequence = if config.admin.allow_insecure_token_files {
                "allowed by admin.allow_insecure_token_files"
            } else {
                "serve refuses it: chmod 600"
            };
            writeln!(
                warnings,
                "wssgate: warning: token file {} of {:?} is readable by group or others ({consequence})",
                t.file.display(),
                t.name
            )?;
        }
    }
    let mut lenient = config.clone();
    lenient.admin.allow_insecure_token_files = true;
    let config = Arc::new(config);
    let snapshot = Snapshot::build(Arc::new(lenient), 1, now)
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
    if !snapshot.rings.is_empty() {
        writeln!(out)?;
        writeln!(
            out,
            "{:<16} {:<9} {:<24} {:<22} {:<22}  SHA256",
            "RING", "STATE", "SERIAL", "NOT AFTER", "RETAIN UNTIL"
        )?;
        for (name, ring) in &snapshot.rings {
            for k in &ring.keys {
                let summary = &k.key.summary;
                writeln!(
                    out,
                    "{:<16} {:<9} {:<24} {:<22} {:<22}  {}",
                    name,
                    match k.state() {
                        crate::keystore::KeyState::Active => "active",
                        crate::keystore::KeyState::Retained => "retained",
                    },
                    summary.serial,
                    summary.not_after,
                    k.key
                        .retain_until
                        .map_or("-".to_string(), crate::time::rfc3339),
                    summary.sha256
                )?;
            }
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
