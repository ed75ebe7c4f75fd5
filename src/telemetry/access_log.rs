//! The access line, formatted here rather than by `tracing-subscriber`: one
//! line per request is the log's hot path, and the general formatter spends
//! more on it (a visitor per field, `Debug` escaping one character at a time, a
//! float's full precision) than the request spends on its headers.
//!
//! The line is the one `tracing-subscriber` writes for the same event, in text
//! or JSON, so a log reads the same whichever wrote a line; only the duration
//! is rounded to the microsecond. It goes through the same level filter
//! (`RUST_LOG`, checked by the caller) and into the same buffered writer, so
//! lines never interleave. Without that writer (no thread could be started, a
//! terminal that gets colours, a test without [`super::init`]) the caller
//! emits an ordinary `tracing` event instead.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use crate::config::LogFormat;

use super::log_writer::BufferedLog;

/// Where access lines go once [`super::init`] installed the log.
struct Sink {
    log: BufferedLog,
    format: LogFormat,
}

static SINK: OnceLock<Sink> = OnceLock::new();

/// Route access lines into `log` in `format` (the first call wins, as the global
/// subscriber's does).
pub(super) fn install(log: BufferedLog, format: LogFormat) {
    let _ = SINK.set(Sink { log, format });
}

/// One request's line.
pub struct AccessLine<'a> {
    pub request_id: &'a str,
    pub client: SocketAddr,
    pub method: &'a str,
    pub path: &'a str,
    pub route: &'a str,
    pub alias: &'a str,
    pub certificate_sha256: &'a str,
    pub algorithms: &'a str,
    pub status: u16,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub duration: Duration,
}

impl AccessLine<'_> {
    /// The duration as the line gives it: milliseconds, to the microsecond.
    pub fn duration_ms(&self) -> f64 {
        self.duration.as_micros() as f64 / 1000.0
    }
}

/// The target of the access line's event: the proxy's, where it was always
/// emitted, so that `RUST_LOG` directives naming it keep working.
pub const TARGET: &str = "wssgate::proxy::access";

/// Whether the access line is enabled at `RUST_LOG`'s level: checked with the
/// event's own target and field names, as the event itself would be.
pub fn enabled() -> bool {
    tracing::enabled!(
        target: TARGET,
        tracing::Level::INFO,
        request_id,
        client,
        method,
        path,
        route,
        alias,
        certificate_sha256,
        algorithms,
        status,
        bytes_in,
        bytes_out,
        duration_ms,
        message
    )
}

/// Write `line` to the log: formatted here when the log is installed, else as
/// an ordinary `tracing` event.
pub fn emit(line: &AccessLine<'_>) {
    if !write(line) {
        event(line);
    }
}

/// `line` as a `tracing` event: the one the formatter below imitates.
fn event(line: &AccessLine<'_>) {
    tracing::info!(
        target: TARGET,
        request_id = %line.request_id,
        client = %line.client,
        method = %line.method,
        path = %line.path,
        route = line.route,
        alias = line.alias,
        certificate_sha256 = line.certificate_sha256,
        algorithms = line.algorithms,
        status = line.status,
        bytes_in = line.bytes_in,
        bytes_out = line.bytes_out,
        duration_ms = line.duration_ms(),
        "request"
    );
}

/// Write `line` to the log; `false` when there is no log installed here and
/// the caller should emit it as a `tracing` event.
fn write(line: &AccessLine<'_>) -> bool {
    let Some(sink) = SINK.get() else {
        return false;
    };
    thread_local! {
        static BUFFER: RefCell<String> = RefCell::new(String::with_capacity(512));
    }
    BUFFER
        .try_with(|buffer| {
            // Re-entered only if formatting itself logged, which it does not.
            let Ok(mut out) = buffer.try_borrow_mut() else {
                return false;
            };
            out.clear();
            format(&mut out, sink.format, SystemTime::now(), line);
            sink.log.append(out.as_bytes());
            // A long path does not leave every thread holding its size.
            out.shrink_to(4096);
            true
        })
        .unwrap_or(false)
}

/// `line` as `tracing-subscriber` formats the same event (without colours and
/// targets), ending in a newline.
pub fn format(out: &mut String, format: LogFormat, now: SystemTime, line: &AccessLine<'_>) {
    let timestamp = humantime::format_rfc3339_micros(now);
    let duration_ms = line.duration_ms();
    // Writing to a String cannot fail.
    match format {
        LogFormat::Text => {
            let _ = write!(
                out,
                "{timestamp}  INFO request request_id={} client={} method={} path={} route=",
                line.request_id, line.client, line.method, line.path
            );
            debug_str(out, line.route);
            out.push_str(" alias=");
            debug_str(out, line.alias);
            out.push_str(" certificate_sha256=");
            debug_str(out, line.certificate_sha256);
            out.push_str(" algorithms=");
            debug_str(out, line.algorithms);
            let _ = writeln!(
                out,
                " status={} bytes_in={} bytes_out={} duration_ms={duration_ms:?}",
                line.status, line.bytes_in, line.bytes_out
            );
        }
        LogFormat::Json => {
            let _ = write!(
                out,
                r#"{{"timestamp":"{timestamp}","level":"INFO","message":"request","request_id":"#
            );
            json_str(out, line.request_id);
            out.push_str(r#","client":""#);
            let _ = write!(out, "{}", line.client);
            out.push_str(r#"","method":"#);
            json_str(out, line.method);
            out.push_str(r#","path":"#);
            json_str(out, line.path);
            out.push_str(r#","route":"#);
            json_str(out, line.route);
            out.push_str(r#","alias":"#);
            json_str(out, line.alias);
            out.push_str(r#","certificate_sha256":"#);
            json_str(out, line.certificate_sha256);
            out.push_str(r#","algorithms":"#);
            json_str(out, line.algorithms);
            let _ = writeln!(
                out,
                r#","status":{},"bytes_in":{},"bytes_out":{},"duration_ms":{duration_ms:?}}}"#,
                line.status, line.bytes_in, line.bytes_out
            );
        }
    }
}

/// Printable ASCII other than the quote and the backslash: the same under
/// `Debug` and in JSON, so copied as it is.
fn plain(s: &str) -> bool {
    s.bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
}

/// `s` as `{:?}` writes it.
fn debug_str(out: &mut String, s: &str) {
    if plain(s) {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        let _ = write!(out, "{s:?}");
    }
}

/// `s` as a JSON string, as `serde_json` writes it.
fn json_str(out: &mut String, s: &str) {
    if plain(s) {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        // Serializing a string cannot fail.
        out.push_str(&serde_json::to_string(s).unwrap_or_default());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// What `tracing-subscriber` writes for the access event, as the daemon
    /// configures it, without the timestamp.
    fn by_tracing(format: LogFormat, line: &AccessLine<'_>) -> String {
        #[derive(Clone, Default)]
        struct Capture(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Capture {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let capture = Capture::default();
        let for_writer = capture.clone();
        let builder = tracing_subscriber::fmt()
            .with_writer(move || for_writer.clone())
            .with_ansi(false)
            .with_target(false)
            .without_time();
        let emit = || event(line);
        match format {
            LogFormat::Text => tracing::subscriber::with_default(builder.finish(), emit),
            LogFormat::Json => {
                tracing::subscriber::with_default(builder.json().flatten_event(true).finish(), emit)
            }
        }
        String::from_utf8(capture.0.lock().unwrap().clone()).unwrap()
    }

    fn ours(format: LogFormat, line: &AccessLine<'_>) -> String {
        let mut out = String::new();
        super::format(&mut out, format, SystemTime::UNIX_EPOCH, line);
        out
    }

    fn line<'a>(route: &'a str, path: &'a str, micros: u64) -> AccessLine<'a> {
        AccessLine {
            request_id: "6f1c2a",
            client: "127.0.0.1:40404".parse().unwrap(),
            method: "POST",
            path,
            route,
            alias: "orders-receiver",
            certificate_sha256: "95befc0d",
            algorithms: "issuer-serial + aes256-cbc + rsa-oaep-mgf1p",
            status: 200,
            bytes_in: 2048,
            bytes_out: 4096,
            duration: Duration::from_micros(micros),
        }
    }

    #[test]
    fn the_line_is_the_one_tracing_writes_for_the_same_event() {
        let cases = [
            line("orders", "/orders", 1_234),
            line("-", "/nothing", 23),
            line("ord\"ers\\ \n\u{7f} é", "/a\"b{}", 74_720_053),
            line("\u{1b}[31m", "/x", 0),
        ];
        for case in &cases {
            let text = ours(LogFormat::Text, case);
            let stamp = "1970-01-01T00:00:00.000000Z ";
            assert!(text.starts_with(stamp), "{text}");
            assert_eq!(&text[stamp.len()..], by_tracing(LogFormat::Text, case));

            let json = ours(LogFormat::Json, case);
            let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
            assert_eq!(parsed["route"], case.route);
            let stamp = r#"{"timestamp":"1970-01-01T00:00:00.000000Z","#;
            assert!(json.starts_with(stamp), "{json}");
            let rest = format!("{{{}", &json[stamp.len()..]);
            assert_eq!(rest, by_tracing(LogFormat::Json, case));
        }
    }

    #[test]
    fn the_line_is_filtered_as_its_event_would_be() {
        let under = |directives: &str| {
            let subscriber = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(directives))
                .with_writer(std::io::sink)
                .finish();
            tracing::subscriber::with_default(subscriber, enabled)
        };
        assert!(under("info"));
        assert!(under("warn,wssgate::proxy::access=info"));
        assert!(!under("warn"));
        assert!(!under("info,wssgate::proxy::access=warn"));
    }

    #[test]
    fn the_duration_is_given_to_the_microsecond() {
        assert_eq!(line("r", "/", 74_720_053).duration_ms(), 74_720.053);
        assert_eq!(line("r", "/", 23).duration_ms(), 0.023);
        assert!(ours(LogFormat::Text, &line("r", "/", 1_500)).ends_with(" duration_ms=1.5\n"));
    }
}
