//! Logging and metrics. Logging: structured `tracing` events, written as text
//! or JSON lines to stderr through [`log_writer`] (requests never wait for a
//! write unless its bounded buffer is full). The level comes from `RUST_LOG`
//! (default `info`). Text is coloured only when stderr is a terminal: a journal
//! or a log file gets plain lines. Metrics: [`Metrics`], the Prometheus
//! registry the probe and admin ports expose.

use std::io::IsTerminal;
use std::sync::Arc;

use tracing_subscriber::fmt::writer::BoxMakeWriter;

use crate::config::LogFormat;

pub mod access_log;
pub mod log_writer;

pub use log_writer::LogWriterGuard as LogWriter;

/// Install the global subscriber; later calls are ignored (tests start several
/// daemons). Without a writer thread (the system refused one), lines go to
/// stderr directly.
pub fn init(format: LogFormat) -> Option<LogWriter> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::stderr().is_terminal();
    let (writer, buffered, guard) = match log_writer::spawn(std::io::stderr()) {
        Ok((writer, guard)) => (
            BoxMakeWriter::new(writer.clone()),
            Some(writer),
            Some(guard),
        ),
        Err(_) => (BoxMakeWriter::new(std::io::stderr), None, None),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(ansi)
        .with_target(false);
    let installed = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
    // Access lines are written beside the subscriber's, into the same buffer;
    // coloured text is left to the subscriber.
    if let Some(buffered) = buffered
        && installed.is_ok()
        && !(ansi && format == LogFormat::Text)
    {
        access_log::install(buffered, format);
    }
    guard
}

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Label pairs of one series.
pub type Labels = Vec<(&'static str, String)>;
type Histograms = Family<Labels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 0.25 ms … ~8 s.
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

/// The Prometheus metrics of the daemon (all in base units, prefix `wssgate_`).
/// Counters are updated where things happen; gauges that mirror state (paused,
/// in flight, held, certificate expiry) are set when `/metrics` is scraped.
pub struct Metrics {
    registry: Registry,
    /// Requests by route and outcome (`ok` or wssgate's fault code).
    pub requests: Family<Labels, Counter>,
    pub request_duration: Histograms,
    /// Time spent encrypting, by route.
    pub encryption_duration: Histograms,
    /// Request bytes by route and direction (`in` from clients, `out` to upstreams).
    pub bytes: Family<Labels, Counter>,
    /// Upstream failures by route and kind (`unreachable`, `timeout`).
    pub upstream_errors: Family<Labels, Counter>,
    /// Reloads by trigger and result.
    pub reloads: Family<Labels, Counter>,
    pub generation: Gauge,
    pub in_flight: Family<Labels, Gauge>,
    pub held: Family<Labels, Gauge>,
    pub paused: Family<Labels, Gauge>,
    /// Expiry (Unix seconds) of the certificate in use, by alias and serial.
    pub not_after: Family<Labels, Gauge>,
    /// Messages decrypted per key ring and key (`ring`, `serial`).
    pub decryptions: Family<Labels, Counter>,
    /// Messages signed per key ring and key (`ring`, `serial`).
    pub signatures: Family<Labels, Counter>,
    /// When each ring key last decrypted or signed a message (Unix time; 0: never).
    pub keyring_last_used: Family<Labels, Gauge>,
    /// Expiry of each usable ring key's certificate (Unix time).
    pub keyring_not_after: Family<Labels, Gauge>,
    /// Each route's request series, resolved on its first request (route names
    /// come from the configuration, so this stays as small as the route table).
    routes: arc_swap::ArcSwap<std::collections::HashMap<String, Arc<RouteMetrics>>>,
}

/// One route's request series, resolved once: a request updates them without
/// building label sets or looking them up in their families.
pub struct RouteMetrics {
    /// `requests{route, outcome="ok"}`.
    pub ok: Counter,
    pub duration: Histogram,
    pub encryption: Histogram,
    pub bytes_in: Counter,
    pub bytes_out: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("wssgate");
        let requests = Family::<Labels, Counter>::default();
        let request_duration =
            Histograms::new_with_constructor(latency_histogram as fn() -> Histogram);
        let encryption_duration =
            Histograms::new_with_constructor(latency_histogram as fn() -> Histogram);
        let bytes = Family::<Labels, Counter>::default();
        let upstream_errors = Family::<Labels, Counter>::default();
        let reloads = Family::<Labels, Counter>::default();
        let generation = Gauge::default();
        let in_flight = Family::<Labels, Gauge>::default();
        let held = Family::<Labels, Gauge>::default();
        let paused = Family::<Labels, Gauge>::default();
        let not_after = Family::<Labels, Gauge>::default();
        let decryptions = Family::<Labels, Counter>::default();
        let signatures = Family::<Labels, Counter>::default();
        let keyring_last_used = Family::<Labels, Gauge>::default();
        let keyring_not_after = Family::<Labels, Gauge>::default();
        registry.register(
            "requests",
            "Requests by route and outcome",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from request to response head",
            request_duration.clone(),
        );
        registry.register(
            "encryption_duration_seconds",
            "Time spent encrypting a request",
            encryption_duration.clone(),
        );
        registry.register(
            "request_bytes",
            "Request bytes by route and direction",
            bytes.clone(),
        );
        registry.register(
            "upstream_errors",
            "Upstream failures by route and kind",
            upstream_errors.clone(),
        );
        registry.register("reloads", "Reloads by trigger and result", reloads.clone());
        registry.register(
            "config_generation",
            "Generation of the running configuration",
            generation.clone(),
        );
        registry.register(
            "route_in_flight",
            "Requests past the gate and not yet answered by the upstream",
            in_flight.clone(),
        );
        registry.register(
            "route_held",
            "Requests held while the route is paused",
            held.clone(),
        );
        registry.register(
            "route_paused",
            "1 while the route is paused",
            paused.clone(),
        );
        registry.register(
            "certificate_not_after_seconds",
            "Expiry of the certificate in use (Unix time)",
            not_after.clone(),
        );
        registry.register(
            "decryptions",
            "Messages decrypted by key ring and key",
            decryptions.clone(),
        );
        registry.register(
            "signatures",
            "Messages signed by key ring and key",
            signatures.clone(),
        );
        registry.register(
            "keyring_last_used_seconds",
            "When the ring key last decrypted or signed a message (Unix time, 0: never)",
            keyring_last_used.clone(),
        );
        registry.register(
            "keyring_not_after_seconds",
            "Expiry of the certificate of each usable ring key (Unix time)",
            keyring_not_after.clone(),
        );
        Metrics {
            registry,
            requests,
            request_duration,
            encryption_duration,
            bytes,
            upstream_errors,
            reloads,
            generation,
            in_flight,
            held,
            paused,
            not_after,
            decryptions,
            signatures,
            keyring_last_used,
            keyring_not_after,
            routes: Default::default(),
        }
    }
}

impl Metrics {
    /// The request series of `route`.
    pub fn route(&self, route: &str) -> Arc<RouteMetrics> {
        if let Some(resolved) = self.routes.load().get(route) {
            return resolved.clone();
        }
        let labels = |pairs: &[(&'static str, &str)]| -> Labels {
            pairs.iter().map(|(k, v)| (*k, v.to_string())).collect()
        };
        // One lookup per statement: a family's read guard lives to the end of
        // its statement, and a second lookup in the same family that has to
        // insert would wait for it forever.
        let ok = self
            .requests
            .get_or_create(&labels(&[("route", route), ("outcome", "ok")]))
            .clone();
        let duration = self
            .request_duration
            .get_or_create(&labels(&[("route", route)]))
            .clone();
        let encryption = self
            .encryption_duration
            .get_or_create(&labels(&[("route", route)]))
            .clone();
        let bytes_in = self
            .bytes
            .get_or_create(&labels(&[("route", route), ("direction", "in")]))
            .clone();
        let bytes_out = self
            .bytes
            .get_or_create(&labels(&[("route", route), ("direction", "out")]))
            .clone();
        let resolved = Arc::new(RouteMetrics {
            ok,
            duration,
            encryption,
            bytes_in,
            bytes_out,
        });
        self.routes.rcu(|map| {
            let mut map = std::collections::HashMap::clone(map);
            map.entry(route.to_string())
                .or_insert_with(|| resolved.clone());
            map
        });
        self.routes.load().get(route).cloned().unwrap_or(resolved)
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_routes_series_are_resolved_once_and_exposed() {
        let m = Metrics::default();
        let first = m.route("orders");
        first.ok.inc();
        first.bytes_in.inc_by(10);
        first.bytes_out.inc_by(20);
        assert!(Arc::ptr_eq(&first, &m.route("orders")));
        m.route("other").duration.observe(0.01);
        let text = m.encode();
        for series in [
            r#"wssgate_requests_total{route="orders",outcome="ok"} 1"#,
            r#"wssgate_request_bytes_total{route="orders",direction="in"} 10"#,
            r#"wssgate_request_bytes_total{route="orders",direction="out"} 20"#,
            r#"wssgate_request_duration_seconds_count{route="other"} 1"#,
        ] {
            assert!(text.contains(series), "{series} missing from\n{text}");
        }
    }
}
