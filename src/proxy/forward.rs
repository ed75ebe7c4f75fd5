//! One request, from arrival to the upstream's answer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, Uri};
use http_body_util::BodyExt;
use hyper::body::{Body, Incoming};

use super::fault::Fault;
use super::{Proxy, ProxyBody, full_body, stream};
use crate::config::{AlreadyEncrypted, RouteMode};
use crate::state::{Route, Snapshot};
use crate::wss::{self, EncryptError, EncryptOptions, SoapVersion};

/// Bodies up to this size are encrypted on the async worker; larger ones on the
/// blocking pool so they do not stall other connections.
const INLINE_ENCRYPT_LIMIT: usize = 64 * 1024;

/// Headers that describe one hop, not the message (RFC 9110 §7.6.1).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// What the access log line reports.
struct Access {
    request_id: String,
    route: Option<String>,
    alias: Option<String>,
    certificate: Option<String>,
    algorithms: Option<String>,
    bytes_in: u64,
    bytes_out: u64,
    /// Seconds spent encrypting, when the request got that far.
    encryption_seconds: Option<f64>,
}

pub(super) async fn handle(
    proxy: &Proxy,
    request: Request<Incoming>,
    peer: SocketAddr,
) -> Response<ProxyBody> {
    let started = Instant::now();
    let request_id = request_id(request.headers());
    let mut access = Access {
        request_id: request_id.clone(),
        route: None,
        alias: None,
        certificate: None,
        algorithms: None,
        bytes_in: 0,
        bytes_out: 0,
        encryption_seconds: None,
    };
    let version_hint = version_from_content_type(request.headers());
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let mut outcome = "ok";
    let response = match serve(proxy, request, peer, &mut access).await {
        Ok(r) => r,
        Err((fault, version)) => {
            outcome = fault.code();
            let version = version.or(version_hint).unwrap_or(SoapVersion::Soap11);
            if fault.culprit() == super::fault::Culprit::Caller {
                tracing::debug!(request_id = %request_id, code = fault.code(), message = %fault.message(), "refused");
            } else {
                tracing::warn!(request_id = %request_id, code = fault.code(), detail = ?fault, "request failed");
            }
            fault.response(version, &request_id)
        }
    };
    record_metrics(
        &proxy.shared.metrics,
        &access,
        outcome,
        started.elapsed().as_secs_f64(),
    );
    tracing::info!(
        request_id = %access.request_id,
        method = %method,
        path = %path,
        route = access.route.as_deref().unwrap_or("-"),
        alias = access.alias.as_deref().unwrap_or("-"),
        certificate_sha256 = access.certificate.as_deref().unwrap_or("-"),
        algorithms = access.algorithms.as_deref().unwrap_or("-"),
        status = response.status().as_u16(),
        bytes_in = access.bytes_in,
        bytes_out = access.bytes_out,
        duration_ms = started.elapsed().as_secs_f64() * 1000.0,
        "request"
    );
    response
}

type Failure = (Fault, Option<SoapVersion>);

fn record_metrics(
    m: &crate::telemetry::Metrics,
    access: &Access,
    outcome: &'static str,
    seconds: f64,
) {
    let route = access.route.clone().unwrap_or_else(|| "-".to_string());
    m.requests
        .get_or_create(&vec![
            ("route", route.clone()),
            ("outcome", outcome.to_string()),
        ])
        .inc();
    m.request_duration
        .get_or_create(&vec![("route", route.clone())])
        .observe(seconds);
    if let Some(e) = access.encryption_seconds {
        m.encryption_duration
            .get_or_create(&vec![("route", route.clone())])
            .observe(e);
    }
    m.bytes
        .get_or_create(&vec![
            ("route", route.clone()),
            ("direction", "in".to_string()),
        ])
        .inc_by(access.bytes_in);
    m.bytes
        .get_or_create(&vec![
            ("route", route.clone()),
            ("direction", "out".to_string()),
        ])
        .inc_by(access.bytes_out);
    let kind = match outcome {
        "upstream-unreachable" => Some("unreachable"),
        "upstream-timeout" => Some("timeout"),
        _ => None,
    };
    if let Some(kind) = kind {
        m.upstream_errors
            .get_or_create(&vec![("route", route), ("kind", kind.to_string())])
            .inc();
    }
}

async fn serve(
    proxy: &Proxy,
    request: Request<Incoming>,
    peer: SocketAddr,
    access: &mut Access,
) -> Result<Response<ProxyBody>, Failure> {
    let arrival = proxy.shared.load();
    let entry = &arrival
        .route_for(request.uri().path())
        .ok_or((Fault::NoRoute, None))?
        .config;
    let route_name = entry.name.clone();
    access.route = Some(route_name.clone());
    if request.method() != Method::POST && request.method() != Method::GET {
        return Err((Fault::MethodNotAllowed, None));
    }
    // The gate: nothing passes to the receiver while the route is paused.
    let gate = proxy.gates.get(&route_name);
    let _in_flight = gate
        .enter(entry.on_pause, entry.hold_max, entry.hold_timeout)
        .await
        .map_err(|refusal| {
            tracing::info!(request_id = %access.request_id, route = %route_name, ?refusal, "refused while paused");
            (Fault::RoutePaused { retry_after_secs: entry.hold_timeout.as_secs().max(1) }, None)
        })?;
    drop(arrival);
    // One snapshot from here on, loaded after the gate: a request held across an
    // exchange is encrypted with the certificate current at its release, and the
    // certificate cannot change under a request.
    let snapshot: Arc<Snapshot> = proxy.shared.load();
    let route = snapshot
        .route(&route_name)
        .ok_or((Fault::NoRoute, None))?
        .clone();
    let target = upstream_uri(&route, request.uri()).map_err(|f| (f, None))?;

    let is_wsdl = request.method() == Method::GET
        && request.uri().query().is_some_and(|q| {
            q.split('&').any(|p| {
                p.eq_ignore_ascii_case("wsdl") || p.to_ascii_lowercase().starts_with("wsdl=")
            })
        });
    if is_wsdl {
        let (parts, _) = request.into_parts();
        let headers = forward_headers(&parts.headers, &target, peer, &access.request_id, None);
        return send(
            proxy,
            &snapshot,
            &route,
            Method::GET,
            target,
            headers,
            full_body(Bytes::new()),
            None,
        )
        .await;
    }
    if request.method() != Method::POST {
        return Err((Fault::MethodNotAllowed, None));
    }
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let media = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if media != "text/xml" && media != "application/soap+xml" {
        return Err((Fault::UnsupportedMediaType(content_type), None));
    }
    let limits = route.config.xml_limits;
    let max_body = snapshot.config.proxy.max_body;
    let threshold = snapshot.config.proxy.stream_threshold;
    if request.body().size_hint().lower() > max_body {
        tokio::spawn(stream::drain(request.into_body()));
        return Err((Fault::PayloadTooLarge(max_body), None));
    }
    let pass_through = route.config.mode == RouteMode::PassThrough;
    access.alias = Some(route.config.alias.clone());
    access.certificate = Some(route.recipient.info().sha256.clone());
    access.algorithms = Some(route.config.algorithms.to_string());
    let options = EncryptOptions {
        algorithms: route.config.algorithms,
        must_understand: route.config.must_understand,
        limits,
    };

    let (parts, body) = request.into_parts();
    let idle = snapshot.config.proxy.body_idle_timeout;
    let (head, rest) = read_head(body, threshold, max_body, idle).await?;
    access.bytes_in = head.len() as u64;
    match rest {
        None => {
            // Buffered: the whole body is here.
            let input = head;
            let unchanged = |input: &Bytes| {
                let v = wss::sniff_version(input).unwrap_or(SoapVersion::Soap11);
                (input.clone(), v)
            };
            let (output, version) = if pass_through {
                unchanged(&input)
            } else {
                let started = std::time::Instant::now();
                let encrypted = encrypt_buffered(proxy, &route, input.clone(), options).await;
                access.encryption_seconds = Some(started.elapsed().as_secs_f64());
                match encrypted {
                    Ok((out, summary)) => (Bytes::from(out), summary.soap_version),
                    Err(EncryptError::AlreadyEncrypted)
                        if route.config.already_encrypted == AlreadyEncrypted::Pass =>
                    {
                        unchanged(&input)
                    }
                    Err(e) => return Err((Fault::from_encrypt(&e), wss::sniff_version(&input))),
                }
            };
            // The request is no longer needed while the upstream answers: with
            // many concurrent requests this halves the memory they hold.
            drop(input);
            access.bytes_out = output.len() as u64;
            let headers = forward_headers(
                &parts.headers,
                &target,
                peer,
                &access.request_id,
                Some(version),
            );
            let mut headers = headers;
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(output.len()));
            send(
                proxy,
                &snapshot,
                &route,
                Method::POST,
                target,
                headers,
                full_body(output),
                Some(version),
            )
            .await
        }
        Some(body) => {
            // Streamed: encrypt as it arrives, chunked to the upstream.
            let version = wss::sniff_version(&head).unwrap_or(SoapVersion::Soap11);
            let reader = stream::read_body(head, body, max_body, idle);
            let (writer, upstream_body) = stream::body_channel();
            let recipient = route.recipient.clone();
            let encryption_started = std::time::Instant::now();
            let encryption = tokio::task::spawn_blocking(move || {
                let mut writer = writer;
                let result = if pass_through {
                    copy_unchanged(reader, &mut writer)
                } else {
                    wss::encrypt_envelope(reader, &mut writer, &recipient, &options)
                        .map(|summary| (summary.plaintext_bytes, summary.bytes_out))
                };
                match &result {
                    Ok(_) => {
                        if let Err(e) = writer.finish() {
                            return Err(EncryptError::Write(e));
                        }
                    }
                    Err(e) => writer.abort(&e.to_string()),
                }
                result
            });
            let headers = forward_headers(
                &parts.headers,
                &target,
                peer,
                &access.request_id,
                Some(version),
            );
            let sent = send(
                proxy,
                &snapshot,
                &route,
                Method::POST,
                target,
                headers,
                upstream_body,
                Some(version),
            );
            let (sent, encrypted) = tokio::join!(sent, encryption);
            access.encryption_seconds = Some(encryption_started.elapsed().as_secs_f64());
            match encrypted {
                Ok(Ok((bytes_in, bytes_out))) => {
                    access.bytes_in = bytes_in;
                    access.bytes_out = bytes_out;
                    sent
                }
                // The output side failing means the upstream request ended first:
                // its fault (timeout, unreachable) is the one to report.
                Ok(Err(EncryptError::Write(_))) if sent.is_err() => sent,
                Ok(Err(e)) => Err((Fault::from_encrypt(&e), Some(version))),
                Err(join) => {
                    tracing::error!(error = %join, "encryption task failed");
                    Err((Fault::EncryptionFailed, Some(version)))
                }
            }
        }
    }
}

/// Read up to `threshold` bytes. `(all, None)` when the body ended within it;
/// `(head, Some(rest))` when it goes on and must be streamed.
async fn read_head(
    mut body: Incoming,
    threshold: u64,
    max_body: u64,
    idle: std::time::Duration,
) -> Result<(Bytes, Option<Incoming>), Failure> {
    // Sized from the announced length when there is one (no doubling, no copies),
    // up to 256 KiB: an announced length is a claim, not data.
    let announced = body
        .size_hint()
        .exact()
        .unwrap_or(0)
        .min(threshold + 1)
        .min(256 * 1024);
    let mut head = Vec::with_capacity(announced as usize);
    while (head.len() as u64) <= threshold {
        // A client that stops sending mid-body is cut off, not waited for forever.
        let next = tokio::time::timeout(idle, body.frame())
            .await
            .map_err(|_| (Fault::RequestTimeout, None))?;
        match next {
            None => return Ok((Bytes::from(head), None)),
            Some(Err(_)) => {
                return Err((
                    Fault::MalformedEnvelope("the request body could not be read".into()),
                    None,
                ));
            }
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    head.extend_from_slice(&data);
                    if head.len() as u64 > max_body {
                        tokio::spawn(stream::drain(body));
                        return Err((Fault::PayloadTooLarge(max_body), None));
                    }
                }
            }
        }
    }
    if body.is_end_stream() {
        return Ok((Bytes::from(head), None));
    }
    Ok((Bytes::from(head), Some(body)))
}

/// A pass-through route's streamed body, copied as it arrives: `(in, out)` bytes.
fn copy_unchanged(
    mut reader: impl std::io::Read,
    writer: &mut impl std::io::Write,
) -> Result<(u64, u64), EncryptError> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok((total, total)),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(EncryptError::from_read(e)),
        };
        writer.write_all(&buf[..n]).map_err(EncryptError::Write)?;
        total += n as u64;
    }
}

async fn encrypt_buffered(
    proxy: &Proxy,
    route: &Route,
    input: Bytes,
    options: EncryptOptions,
) -> Result<(Vec<u8>, wss::EncryptSummary), EncryptError> {
    if input.len() <= INLINE_ENCRYPT_LIMIT {
        return wss::encrypt_to_vec(&input, &route.recipient, &options);
    }
    let recipient = route.recipient.clone();
    let permit = proxy.encryptions.clone().acquire_owned().await;
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        wss::encrypt_to_vec(&input, &recipient, &options)
    })
    .await
    .unwrap_or_else(|e| Err(EncryptError::Write(std::io::Error::other(e.to_string()))))
}

/// Send the request upstream and stream the answer back unchanged.
#[allow(clippy::too_many_arguments)]
async fn send(
    proxy: &Proxy,
    snapshot: &Snapshot,
    route: &Route,
    method: Method,
    target: Uri,
    headers: HeaderMap,
    body: ProxyBody,
    version: Option<SoapVersion>,
) -> Result<Response<ProxyBody>, Failure> {
    let proxy_config = &snapshot.config.proxy;
    let client = proxy
        .clients
        .get(&route.config.tls, proxy_config.connect_timeout)
        .map_err(|e| (Fault::UpstreamUnreachable(e.to_string()), version))?;
    let mut request = Request::new(body);
    *request.method_mut() = method;
    *request.uri_mut() = target;
    *request.headers_mut() = headers;
    let response =
        match tokio::time::timeout(proxy_config.upstream_timeout, client.request(request)).await {
            Err(_) => return Err((Fault::UpstreamTimeout, version)),
            Ok(Err(e)) => return Err((Fault::UpstreamUnreachable(error_chain(&e)), version)),
            Ok(Ok(r)) => r,
        };
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    Ok(Response::from_parts(
        parts,
        body.map_err(|e| Box::new(e) as super::BoxError).boxed(),
    ))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The upstream URL: the route's upstream with the rest of the path and the query.
fn upstream_uri(route: &Route, incoming: &Uri) -> Result<Uri, Fault> {
    let base = &route.config.upstream;
    let rest = incoming
        .path()
        .strip_prefix(route.config.path.trim_end_matches('/'))
        .unwrap_or("");
    let mut path = base.path().trim_end_matches('/').to_string();
    path.push_str(rest);
    if path.is_empty() {
        path.push('/');
    }
    if let Some(q) = incoming.query() {
        path.push('?');
        path.push_str(q);
    }
    Uri::builder()
        .scheme(base.scheme_str().unwrap_or("http"))
        .authority(base.authority().map(|a| a.as_str()).unwrap_or(""))
        .path_and_query(path)
        .build()
        .map_err(|_| Fault::NoRoute)
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in listed {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// The headers sent upstream: the client's, less hop-by-hop ones, with Host for
/// the upstream, X-Forwarded-For/-Proto, X-Request-Id, and the content type of
/// the actual SOAP version.
fn forward_headers(
    incoming: &HeaderMap,
    target: &Uri,
    peer: SocketAddr,
    request_id: &str,
    version: Option<SoapVersion>,
) -> HeaderMap {
    let mut headers = incoming.clone();
    strip_hop_by_hop(&mut headers);
    headers.remove(header::CONTENT_LENGTH);
    if let Some(authority) = target.authority()
        && let Ok(v) = HeaderValue::from_str(authority.as_str())
    {
        headers.insert(header::HOST, v);
    }
    let forwarded_for = match incoming
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
    {
        Some(prior) => format!("{prior}, {}", peer.ip()),
        None => peer.ip().to_string(),
    };
    if let Ok(v) = HeaderValue::from_str(&forwarded_for) {
        headers.insert("x-forwarded-for", v);
    }
    headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        headers.insert("x-request-id", v);
    }
    if let Some(version) = version {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_str(&content_type_for(incoming, version))
                .unwrap_or(HeaderValue::from_static("text/xml; charset=utf-8")),
        );
    }
    headers
}

/// Content type of the SOAP version actually sent. SOAP 1.2 carries the action
/// as a parameter: taken from the client's content type or its SOAPAction.
fn content_type_for(incoming: &HeaderMap, version: SoapVersion) -> String {
    match version {
        SoapVersion::Soap11 => "text/xml; charset=utf-8".to_string(),
        SoapVersion::Soap12 => {
            let from_type = incoming
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .and_then(|ct| {
                    ct.split(';')
                        .skip(1)
                        .map(str::trim)
                        .find(|p| p.to_ascii_lowercase().starts_with("action="))
                        .map(str::to_string)
                });
            let from_header = incoming
                .get("soapaction")
                .and_then(|v| v.to_str().ok())
                .map(|a| a.trim().trim_matches('"'))
                .filter(|a| !a.is_empty())
                .map(|a| format!("action=\"{a}\""));
            match from_type.or(from_header) {
                Some(action) => format!("application/soap+xml; charset=utf-8; {action}"),
                None => "application/soap+xml; charset=utf-8".to_string(),
            }
        }
    }
}

fn version_from_content_type(headers: &HeaderMap) -> Option<SoapVersion> {
    let ct = headers
        .get(header::CONTENT_TYPE)?
        .to_str()
        .ok()?
        .to_ascii_lowercase();
    if ct.starts_with("application/soap+xml") {
        Some(SoapVersion::Soap12)
    } else if ct.starts_with("text/xml") {
        Some(SoapVersion::Soap11)
    } else {
        None
    }
}

/// The client's X-Request-Id when it is a sane token, else a new one.
fn request_id(headers: &HeaderMap) -> String {
    if let Some(id) = headers.get("x-request-id").and_then(|v| v.to_str().ok())
        && !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
    {
        return id.to_string();
    }
    let mut raw = [0u8; 16];
    let _ = openssl::rand::rand_bytes(&mut raw);
    hex::encode(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soap12_content_type_carries_the_action() {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/xml"));
        h.insert("soapaction", HeaderValue::from_static("\"urn:order\""));
        assert_eq!(
            content_type_for(&h, SoapVersion::Soap12),
            "application/soap+xml; charset=utf-8; action=\"urn:order\""
        );
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/soap+xml; action=\"urn:x\""),
        );
        assert_eq!(
            content_type_for(&h, SoapVersion::Soap12),
            "application/soap+xml; charset=utf-8; action=\"urn:x\""
        );
        assert_eq!(
            content_type_for(&h, SoapVersion::Soap11),
            "text/xml; charset=utf-8"
        );
    }

    #[test]
    fn hop_by_hop_headers_go_including_those_connection_names() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret-hop"),
        );
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("soapaction", HeaderValue::from_static("urn:a"));
        strip_hop_by_hop(&mut h);
        assert!(
            h.get("x-secret-hop").is_none()
                && h.get("keep-alive").is_none()
                && h.get(header::CONNECTION).is_none()
        );
        assert!(h.get("soapaction").is_some());
    }

    #[test]
    fn request_ids_are_kept_when_sane() {
        let mut h = HeaderMap::new();
        h.insert("x-request-id", HeaderValue::from_static("abc-123"));
        assert_eq!(request_id(&h), "abc-123");
        h.insert("x-request-id", HeaderValue::from_static("bad id <script>"));
        assert_eq!(request_id(&h).len(), 32);
    }
}
