//! The upstream client: pooled keep-alive connections over HTTP or HTTPS (OpenSSL,
//! verified against the system roots or a route's CA file, with an optional client
//! certificate for mutual TLS), and a connect timeout.
//!
//! One client per distinct TLS setting, made on first use and kept in a
//! copy-on-write map: the request path only reads it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper_openssl::client::legacy::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use openssl::ssl::{SslConnector, SslFiletype, SslMethod};

use super::ProxyBody;
use crate::config::UpstreamTls;

pub type UpstreamClient = Client<HttpsConnector<HttpConnector>, ProxyBody>;

/// Why a client for a TLS setting could not be made.
#[derive(Debug, thiserror::Error)]
#[error("upstream TLS setup failed ({what}): {reason}")]
pub struct TlsSetupError {
    what: String,
    reason: String,
}

/// Clients by TLS setting, then connect timeout: looked up by reference, so a
/// request neither copies its route's TLS setting nor hashes a key built for it.
#[derive(Default)]
pub struct Clients {
    map: ArcSwap<HashMap<UpstreamTls, HashMap<Duration, UpstreamClient>>>,
}

impl Clients {
    pub fn get(
        &self,
        tls: &UpstreamTls,
        connect_timeout: Duration,
    ) -> Result<UpstreamClient, TlsSetupError> {
        if let Some(c) = self
            .map
            .load()
            .get(tls)
            .and_then(|by_timeout| by_timeout.get(&connect_timeout))
        {
            return Ok(c.clone());
        }
        let client = build(tls, connect_timeout)?;
        self.map.rcu(|m| {
            let mut m = HashMap::clone(m);
            m.entry(tls.clone())
                .or_default()
                .entry(connect_timeout)
                .or_insert_with(|| client.clone());
            Arc::new(m)
        });
        Ok(client)
    }
}

fn build(tls: &UpstreamTls, connect_timeout: Duration) -> Result<UpstreamClient, TlsSetupError> {
    let fail = |what: &str| {
        let what = what.to_string();
        move |e: openssl::error::ErrorStack| TlsSetupError {
            what,
            reason: crate::wss::certificate::first_reason(&e),
        }
    };
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(connect_timeout));
    http.set_nodelay(true);
    let mut ssl = SslConnector::builder(SslMethod::tls_client()).map_err(fail("context"))?;
    match &tls.ca_file {
        Some(ca) => ssl
            .set_ca_file(ca)
            .map_err(fail(&format!("ca_file {}", ca.display())))?,
        None => ssl
            .set_default_verify_paths()
            .map_err(fail("system roots"))?,
    }
    if let Some((cert, key)) = &tls.client_identity {
        ssl.set_certificate_chain_file(cert)
            .map_err(fail(&format!("client_cert {}", cert.display())))?;
        ssl.set_private_key_file(key, SslFiletype::PEM)
            .map_err(fail(&format!("client_key {}", key.display())))?;
        ssl.check_private_key()
            .map_err(fail("client_key does not match client_cert"))?;
    }
    let https = HttpsConnector::with_connector(http, ssl).map_err(fail("connector"))?;
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .build(https))
}
