//! Logging: structured `tracing` events, written as text or JSON lines to stderr.
//! The level comes from `RUST_LOG` (default `info`). Text is coloured only when
//! stderr is a terminal: a journal or a log file gets plain lines.

use std::io::IsTerminal;

use crate::config::LogFormat;

/// Install the global subscriber; later calls are ignored (tests start several daemons).
pub fn init(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
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
    /// When each ring key last decrypted a message (Unix time; 0: never).
    pub keyring_last_used: Family<Labels, Gauge>,
    /// Expiry of each usable ring key's certificate (Unix time).
    pub keyring_not_after: Family<Labels, Gauge>,
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
            "keyring_last_used_seconds",
            "When the ring key last decrypted a message (Unix time, 0: never)",
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
            keyring_last_used,
            keyring_not_after,
        }
    }
}

impl Metrics {
    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
