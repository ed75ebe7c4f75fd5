//! The admin API: JSON over HTTP on its own listener (loopback by default, TLS
//! required elsewhere), bearer tokens with roles, in front of [`crate::control`].
//!
//! - [`contract`]: every path, query and answer as a typed value — the one wire
//!   contract the server, the client and the tests share.
//! - [`server`]: authentication (tokens compared in constant time, the Host
//!   header checked against DNS rebinding), routing to [`crate::control::Control`],
//!   and the one mapping of its errors to HTTP answers.
//! - [`client`]: the typed client behind `wssgate ctl`, `wssgate renew` and
//!   `wssgate demo`.
//!
//! Every mutation is a POST or PUT, is checked against the token's role, and is
//! audited with the token's name as actor (by `Control`). Neither tokens nor key
//! material appear in answers or logs.

pub mod client;
pub mod contract;
pub mod server;

pub use server::{Admin, run, run_probe, tls_acceptor};
