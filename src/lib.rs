//! wssgate: a reverse proxy that encrypts outbound SOAP requests with WS-Security
//! XML Encryption for the receiver's certificate, and makes renewing that
//! certificate a non-event.
//!
//! Modules, and the way a request flows through them:
//! - [`config`]: the TOML file, validated into typed values.
//! - [`keystore`]: aliases → certificates; exchange, archive, retention, audit.
//! - [`wss`]: the encryption engine (streaming envelope rewriter, XML Encryption,
//!   key identifiers) and the receiver-side decryptor. Knows nothing of HTTP.
//! - [`state`]: the immutable [`state::Snapshot`] (config, routes, certificates)
//!   behind `ArcSwap`, and the one reload path (build aside, validate, swap).
//! - [`proxy`]: listener → route match → snapshot.load() → `wss` encryption →
//!   upstream client → response streamed back; its own errors as SOAP Faults.
//! - [`daemon`]: `wssgate serve` wiring; [`signal`]: SIGHUP/SIGTERM as intents;
//!   [`telemetry`]: logging.
//!
//! Dependencies run one way: `wss` and `keystore` know nothing of HTTP; `proxy`
//! uses `state`; only `main` knows the command line.

#![forbid(unsafe_code)]

pub mod admin;
pub mod config;
pub mod ctl;
pub mod daemon;
pub mod demo;
pub mod keystore;
pub mod proxy;
pub mod signal;
pub mod state;
pub mod telemetry;
pub mod watch;
pub mod wss;
