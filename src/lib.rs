//! wssgate: a reverse proxy that encrypts outbound SOAP requests with WS-Security
//! XML Encryption for the receiver's certificate, and makes renewing that
//! certificate a non-event.
//!
//! Modules:
//! - [`wss`]: the encryption engine (streaming envelope rewriter, XML Encryption,
//!   key identifiers) and the receiver-side decryptor. Knows nothing of HTTP.

#![forbid(unsafe_code)]

pub mod config;
pub mod keystore;
pub mod state;
pub mod wss;
