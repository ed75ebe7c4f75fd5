//! wssgate: a reverse proxy that encrypts outbound SOAP requests with WS-Security
//! XML Encryption for the receiver's certificate, and makes renewing that
//! certificate a non-event.
//!
//! # The modules
//! The core, which knows nothing of HTTP:
//! - [`config`]: the TOML file, validated into typed values (two stages).
//! - [`keystore`]: aliases → certificates on disk; exchange, staging, the 90-day
//!   archive, retention, the audit log; the private key rings of the receiver
//!   side on the same mechanisms. Crash-safe; serialized by a file lock.
//! - [`wss`]: the encryption engine (streaming envelope rewriter, XML Encryption,
//!   key identifiers) and the receiver-side decryptor.
//! - [`time`]: RFC 3339 as records and answers write it.
//!
//! The running daemon:
//! - [`state`]: the immutable [`state::Snapshot`] (config, routes, certificates,
//!   key rings, tokens) behind `ArcSwap`, and the one reload path (build aside,
//!   validate, swap); [`keyring`]: a snapshot's rings, with each key's use
//!   (decryptions, signatures) and metric handles.
//! - [`control`]: the operations of both renewal procedures — pause, resume,
//!   exchange, stage, withdraw, activate-due, reload — with audit and pause
//!   persistence, under one written-down lock discipline. Every transport below
//!   translates to and from it.
//! - [`proxy`]: the request path (below); its own errors as SOAP Faults in one
//!   place ([`proxy::fault`]); the per-route gate ([`proxy::gate`]).
//! - [`admin`]: the admin API — typed wire contract, server, client.
//! - [`daemon`]: `wssgate serve` wiring: load, restore pauses, bind, run the proxy,
//!   the admin API, the staged-activation scheduler, the paused-routes file,
//!   file watching ([`watch`]) and reload signals ([`signal`]) until shutdown.
//! - [`telemetry`]: logging and Prometheus metrics; [`descriptors`]: the
//!   open-file limit and the connection budget under it; [`listener`]: what the
//!   proxy, admin and probe listeners share (connection cap, accept back-off,
//!   request-head timeout); [`systemd`]: readiness notifications to the service
//!   manager.
//!
//! The command line and the demo:
//! - [`command`]: every `wssgate` command but `serve`, as library code that `main`
//!   calls; [`demo`]: `wssgate demo`, both renewals live (of the receiver's
//!   certificate, of a decrypt route's key ring, of the signing key).
//! - [`receiver`]: a decrypting SOAP receiver and throw-away key pairs — the one
//!   kit of the demo, the tests and the benches; [`receiver::verify`]: its
//!   small signature check, for the signing key's renewals.
//!
//! # One request
//! ```text
//! listener ─▶ route match (longest path prefix, from the snapshot of arrival)
//!   ─▶ gate: paused? hold in arrival order (bounded) or refuse route-paused
//!   ─▶ snapshot.load(), once: this request's certificate from here to the end
//!   ─▶ body: buffered (≤ stream_threshold) or streamed; wss encrypts the Body
//!   ─▶ upstream client (pooled, TLS), sent once, never retried
//!   ◀─ the answer streamed back unchanged; a fault of wssgate's own as SOAP Fault
//! ```
//! A `sign = true` route reads the body whole too (bounded by `sign_max_body`) and
//! signs it with its signing ring's active key from the same snapshot, encrypting it
//! before or after ([`proxy`]'s `signing`, [`wss::sign`]).
//! A `mode = "decrypt"` route (the receiver side) reads the body whole instead
//! and decrypts it with its ring's active or retained keys ([`proxy`]'s
//! `inbound`); one fault for every failed decryption, so it is no oracle.
//! Renewal operations reach the same gate and snapshot through [`control`]: a
//! pause closes the gate, an exchange publishes a new snapshot, a resume opens
//! the gate after any staged certificate is live — so held requests go out
//! under the new certificate.
//!
//! Dependencies run one way: `wss` and `keystore` know nothing of HTTP; `proxy`,
//! `control` and `admin` use `state`; only `main` knows the command line's
//! process (arguments, stdout, exit codes).

#![forbid(unsafe_code)]

pub mod admin;
pub mod command;
pub mod config;
pub mod control;
pub mod daemon;
pub mod demo;
pub mod descriptors;
pub mod keyring;
pub mod keystore;
pub mod listener;
pub mod proxy;
pub mod receiver;
pub mod signal;
pub mod state;
pub mod systemd;
pub mod telemetry;
pub mod time;
pub mod watch;
pub mod wss;
