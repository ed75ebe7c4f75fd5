//! What one request did, for the access log line and the request metrics: the
//! route, alias and certificate it used, bytes in and out, time spent encrypting.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::{Method, StatusCode};

use crate::telemetry::access_log::{self, AccessLine};

/// Filled in as the request goes along; written once when it is answered.
pub(super) struct Access {
    pub request_id: String,
    pub peer: SocketAddr,
    pub method: Method,
    pub path: String,
    pub started: Instant,
    pub route: Option<Arc<str>>,
    pub alias: Option<Arc<str>>,
    pub certificate: Option<Arc<str>>,
    pub algorithms: Option<Arc<str>>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Seconds spent encrypting, when the request got that far.
    pub encryption_seconds: Option<f64>,
}

impl Access {
    pub fn new(request_id: String, peer: SocketAddr, method: Method, path: String) -> Access {
        Access {
            request_id,
            peer,
            method,
            path,
            started: Instant::now(),
            route: None,
            alias: None,
            certificate: None,
            algorithms: None,
            bytes_in: 0,
            bytes_out: 0,
            encryption_seconds: None,
        }
    }

    /// The access line and the metrics; `outcome` is `ok` or the fault code.
    pub fn finish(&self, metrics: &crate::telemetry::Metrics, status: StatusCode, outcome: &str) {
        let elapsed = self.started.elapsed();
        self.record_metrics(metrics, outcome, elapsed.as_secs_f64());
        if !access_log::enabled() {
            return;
        }
        let line = AccessLine {
            request_id: &self.request_id,
            client: self.peer,
            method: self.method.as_str(),
            path: &self.path,
            route: self.route.as_deref().unwrap_or("-"),
            alias: self.alias.as_deref().unwrap_or("-"),
            certificate_sha256: self.certificate.as_deref().unwrap_or("-"),
            algorithms: self.algorithms.as_deref().unwrap_or("-"),
            status: status.as_u16(),
            bytes_in: self.bytes_in,
            bytes_out: self.bytes_out,
            duration: elapsed,
        };
        access_log::emit(&line);
    }

    fn record_metrics(&self, m: &crate::telemetry::Metrics, outcome: &str, seconds: f64) {
        let route = self.route.as_deref().unwrap_or("-");
        let series = m.route(route);
        if outcome == "ok" {
            series.ok.inc();
        } else {
            // Faults are the rare path: their series are looked up by label.
            m.requests
                .get_or_create(&vec![
                    ("route", route.to_string()),
                    ("outcome", outcome.to_string()),
                ])
                .inc();
        }
        series.duration.observe(seconds);
        if let Some(e) = self.encryption_seconds {
            series.encryption.observe(e);
        }
        series.bytes_in.inc_by(self.bytes_in);
        series.bytes_out.inc_by(self.bytes_out);
        let kind = match outcome {
            "upstream-unreachable" => Some("unreachable"),
            "upstream-timeout" => Some("timeout"),
            _ => None,
        };
        if let Some(kind) = kind {
            m.upstream_errors
                .get_or_create(&vec![
                    ("route", route.to_string()),
                    ("kind", kind.to_string()),
                ])
                .inc();
        }
    }
}
