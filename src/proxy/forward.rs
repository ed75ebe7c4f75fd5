//! One request, from arrival to the upstream's answer, as a pipeline:
//!
//! 1. **admit** — the route by path, the method, the gate (paused routes hold or
//!    refuse here), then the snapshot the request keeps to the end;
//! 2. **prepare** the outbound body — buffered (whole body under
//!    `stream_threshold`, sent with a Content-Length) or streamed (encrypted as
//!    it arrives, chunked), encrypted or passed through as the route says; a
//!    `sign = true` route's body is always buffered (bounded by `sign_max_body`)
//!    and signed and encrypted in the plan's order ([`super::signing`]);
//! 3. **send** it upstream, once, and stream the answer back.
//!
//! The [`Exchange`] carries what is learned on the way (the SOAP version for a
//! fault, what the access line reports); the one place a failure becomes an
//! answer is [`super::fault`].

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, Uri};

use super::access::Access;
use super::fault::{Culprit, Fault};
use super::gate::InFlight;
use super::gathered::{self, Gathered, PartsReader};
use super::headers::{forward_headers, request_id, strip_hop_by_hop, version_from_content_type};
use super::inbound::{self, Side};
use super::signing::{self, Signer};
use super::target::{normalize_path, upstream_uri};
use super::{Proxy, ProxyBody, RequestBody, full_body, stream};
use crate::config::{AlreadyEncrypted, ResponseMode, RouteMode};
use crate::state::{Route, Snapshot};
use crate::wss::sign::SignedMessage;
use crate::wss::{self, EncryptError, EncryptOptions, Recipient, SoapVersion};

/// Bodies up to this size are encrypted on the async worker; larger ones on the
/// blocking pool so they do not stall other connections.
const INLINE_ENCRYPT_LIMIT: usize = 64 * 1024;

/// One request and what has been learned about it so far.
struct Exchange {
    /// The SOAP version of the request, once known (from its content type, then
    /// from its Envelope): a fault is answered in it.
    version: Option<SoapVersion>,
    access: Access,
}

/// A request past the gate, bound to one snapshot.
struct Admitted {
    snapshot: Arc<Snapshot>,
    route: Arc<Route>,
    target: Uri,
    /// Counted in flight (for `pause?wait`) until the answer has come.
    _in_flight: InFlight,
}

/// What goes upstream.
struct Outbound {
    method: Method,
    headers: HeaderMap,
    body: ProxyBody,
}

pub(super) async fn handle<B>(
    proxy: &Proxy,
    request: Request<B>,
    peer: SocketAddr,
) -> Response<ProxyBody>
where
    B: RequestBody,
{
    let mut exchange = Exchange {
        version: version_from_content_type(request.headers()),
        access: Access::new(
            request_id(request.headers()),
            peer,
            request.method().clone(),
            request.uri().path().to_string(),
        ),
    };
    let (response, outcome) = match serve(proxy, request, &mut exchange).await {
        Ok(r) => (r, "ok"),
        Err(fault) => {
            let id = &exchange.access.request_id;
            if fault.culprit() == Culprit::Caller {
                tracing::debug!(request_id = %id, code = fault.code(), message = %fault.message(), "refused");
            } else {
                tracing::warn!(request_id = %id, code = fault.code(), detail = %fault.detail(), "request failed");
            }
            let version = exchange.version.unwrap_or(SoapVersion::Soap11);
            (fault.response(version, id), fault.code())
        }
    };
    exchange
        .access
        .finish(&proxy.shared.metrics, response.status(), outcome);
    response
}

async fn serve<B>(
    proxy: &Proxy,
    request: Request<B>,
    exchange: &mut Exchange,
) -> Result<Response<ProxyBody>, Fault>
where
    B: RequestBody,
{
    let admitted = match admit(proxy, &request, exchange).await {
        Ok(admitted) => admitted,
        Err(fault) => {
            // Refused before the body was read (no route, a method, a paused
            // route): read it anyway, bounded, so the answer is not lost to a
            // reset when the connection closes with data unread.
            tokio::spawn(stream::drain(request.into_body()));
            return Err(fault);
        }
    };
    let outbound = prepare(proxy, &admitted, request, exchange).await?;
    let (sent, streamed) = match outbound {
        Prepared::Ready(outbound) => (send(proxy, &admitted, outbound, false).await, None),
        Prepared::Streaming(outbound, encryption) => {
            let started = std::time::Instant::now();
            let (sent, encrypted) =
                tokio::join!(send(proxy, &admitted, outbound, true), encryption);
            exchange.access.encryption_seconds = Some(started.elapsed().as_secs_f64());
            (sent, Some(encrypted))
        }
    };
    let answer = match streamed {
        None => sent,
        Some(encrypted) => finish_stream(sent, encrypted, exchange),
    }?;
    let route = &admitted.route;
    let ring = match (route.config.response, &route.response_ring) {
        (ResponseMode::Decrypt, Some(ring)) => ring.clone(),
        _ => return Ok(answer),
    };
    let options = inbound::options(route.config.allow_legacy, route.config.xml_limits);
    let max_body = admitted.snapshot.config.proxy.max_body;
    let request_id = exchange.access.request_id.clone();
    inbound::decrypt_answer(proxy, ring, answer, max_body, options, request_id).await
}

/// Route, method, gate, snapshot.
async fn admit<B>(
    proxy: &Proxy,
    request: &Request<B>,
    exchange: &mut Exchange,
) -> Result<Admitted, Fault> {
    // Matched and forwarded: the same normalized path.
    let path = normalize_path(request.uri().path()).ok_or(Fault::NoRoute)?;
    let arrival = proxy.shared.load();
    let matched = arrival.route_for(&path).ok_or(Fault::NoRoute)?;
    let entry = &matched.config;
    let route_name = matched.labels.name.clone();
    exchange.access.route = Some(route_name.clone());
    if request.method() != Method::POST && request.method() != Method::GET {
        return Err(Fault::MethodNotAllowed);
    }
    if request.method() == Method::GET && !is_wsdl(request.uri()) {
        return Err(Fault::MethodNotAllowed);
    }
    // The gate: nothing passes to the receiver while the route is paused.
    let in_flight = proxy
        .gates
        .get(&route_name)
        .enter(entry.on_pause, entry.hold_max, entry.hold_timeout)
        .await
        .map_err(|refusal| {
            tracing::info!(request_id = %exchange.access.request_id, route = %route_name, refusal = %refusal, "refused while paused");
            Fault::RoutePaused {
                retry_after_secs: entry.hold_timeout.as_secs().max(1),
            }
        })?;
    drop(arrival);
    // One snapshot from here on, loaded after the gate: a request held across an
    // exchange is encrypted with the certificate current at its release, and the
    // certificate cannot change under a request.
    let snapshot = proxy.shared.load();
    // Still the route this path matches: a reload during a hold may have moved it.
    let route = snapshot
        .route_for(&path)
        .filter(|r| r.config.name == *route_name)
        .ok_or(Fault::NoRoute)?
        .clone();
    let target = upstream_uri(&route, &path, request.uri().query())?;
    Ok(Admitted {
        snapshot,
        route,
        target,
        _in_flight: in_flight,
    })
}

fn is_wsdl(uri: &Uri) -> bool {
    uri.query().is_some_and(|q| {
        q.split('&')
            .any(|p| p.eq_ignore_ascii_case("wsdl") || p.to_ascii_lowercase().starts_with("wsdl="))
    })
}

/// The body to send: whole, or still being encrypted on the blocking pool.
enum Prepared {
    Ready(Outbound),
    Streaming(
        Outbound,
        tokio::task::JoinHandle<Result<(u64, u64), EncryptError>>,
    ),
}

async fn prepare<B>(
    proxy: &Proxy,
    admitted: &Admitted,
    request: Request<B>,
    exchange: &mut Exchange,
) -> Result<Prepared, Fault>
where
    B: RequestBody,
{
    let (parts, body) = request.into_parts();
    let headers_for = |version: Option<SoapVersion>| {
        forward_headers(
            &parts.headers,
            &admitted.target,
            exchange.access.peer,
            &exchange.access.request_id,
            version,
        )
    };
    if parts.method == Method::GET {
        // `?wsdl`: the receiver's description, passed as is.
        return Ok(Prepared::Ready(Outbound {
            method: Method::GET,
            headers: headers_for(None),
            body: full_body(Bytes::new()),
        }));
    }
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = content_type.split(';').next().unwrap_or("").trim();
    if !media.eq_ignore_ascii_case("text/xml")
        && !media.eq_ignore_ascii_case("application/soap+xml")
    {
        tokio::spawn(stream::drain(body));
        return Err(Fault::UnsupportedMediaType(content_type.to_string()));
    }
    // A compressed envelope cannot be read, so it cannot be encrypted.
    if let Some(encoding) = parts.headers.get(header::CONTENT_ENCODING) {
        let encoding = encoding.to_str().unwrap_or("?").trim();
        if !encoding.eq_ignore_ascii_case("identity") {
            tokio::spawn(stream::drain(body));
            return Err(Fault::UnsupportedEncoding(encoding.to_string()));
        }
    }
    let proxy_config = &admitted.snapshot.config.proxy;
    let (max_body, threshold) = (proxy_config.max_body, proxy_config.stream_threshold);
    // Counted from here, after any hold: a held client is not the one being slow.
    let deadline = stream::BodyDeadline::starting_now(
        proxy_config.body_idle_timeout,
        proxy_config.listener.request_timeout,
    );
    if body.size_hint().lower() > max_body {
        tokio::spawn(stream::drain(body));
        return Err(Fault::PayloadTooLarge(max_body));
    }
    let route = &admitted.route;
    exchange.access.alias = Some(route.labels.alias.clone());
    if route.config.mode == RouteMode::Decrypt {
        // Buffered whole: the EncryptedKey may follow what it decrypts.
        let (input, rest) = read_head(body, max_body, max_body, deadline, true).await?;
        if rest.is_some() {
            return Err(Fault::PayloadTooLarge(max_body));
        }
        let input = input.into_bytes();
        exchange.access.bytes_in = input.len() as u64;
        exchange.version = wss::sniff_version(&input).or(exchange.version);
        let ring = route
            .ring
            .as_ref()
            .ok_or_else(|| Fault::Internal("a decrypt route without its key ring".into()))?;
        let started = std::time::Instant::now();
        let decrypted = inbound::decrypt(
            proxy,
            ring,
            input,
            inbound::options(route.config.allow_legacy, route.config.xml_limits),
            route.config.require_encryption,
            Side::Request,
            &exchange.access.request_id,
        )
        .await;
        exchange.access.encryption_seconds = Some(started.elapsed().as_secs_f64());
        let decrypted = decrypted?;
        exchange.access.certificate = decrypted.certificate.map(Arc::from);
        let output = decrypted.body;
        exchange.access.bytes_out = output.len() as u64;
        let mut headers = headers_for(exchange.version);
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(output.len()));
        return Ok(Prepared::Ready(Outbound {
            method: Method::POST,
            headers,
            body: full_body(output),
        }));
    }
    let pass_through = route.config.mode == RouteMode::PassThrough;
    let recipient = route
        .recipient
        .clone()
        .ok_or_else(|| Fault::Internal("an encrypt route without its certificate".into()))?;
    exchange.access.certificate = route.labels.certificate_sha256.clone();
    exchange.access.algorithms = Some(route.labels.algorithms.clone());
    let options = EncryptOptions {
        algorithms: route.config.algorithms,
        must_understand: route.config.must_understand,
        limits: route.config.xml_limits,
    };
    if let (Some(sign), Some(key), false) = (&route.config.sign, &route.signing_key, pass_through) {
        let signer = Signer {
            key: key.clone(),
            plan: sign.plan.clone(),
            recipient,
            options,
            ring: route.signing_ring.clone(),
        };
        let started = std::time::Instant::now();
        let signed = sign_request(proxy, signer, body, max_body, deadline).await;
        exchange.access.encryption_seconds = Some(started.elapsed().as_secs_f64());
        let (bytes_in, signed) = signed?;
        exchange.access.bytes_in = bytes_in;
        exchange.version = Some(signed.summary.soap_version);
        exchange.access.bytes_out = signed.bytes.len() as u64;
        let output = Bytes::from(signed.bytes);
        let mut headers = headers_for(exchange.version);
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(output.len()));
        return Ok(Prepared::Ready(Outbound {
            method: Method::POST,
            headers,
            body: full_body(output),
        }));
    }
    let (head, rest) = read_head(body, threshold, max_body, deadline, false).await?;
    let bytes_in = head.len();
    exchange.access.bytes_in = bytes_in as u64;
    let head = head.into_parts();
    exchange.version = gathered::sniff_version(&head).or(exchange.version);
    let version = exchange.version.unwrap_or(SoapVersion::Soap11);
    let Some(rest) = rest else {
        // Buffered: the whole body is here.
        let (body, len) = if pass_through {
            (gathered::parts_body(head), bytes_in)
        } else {
            let started = std::time::Instant::now();
            let encrypted = encrypt_buffered(proxy, &recipient, &head, bytes_in, options).await?;
            exchange.access.encryption_seconds = Some(started.elapsed().as_secs_f64());
            match encrypted {
                Ok(out) => {
                    let len = out.len();
                    (full_body(Bytes::from(out)), len)
                }
                Err(EncryptError::AlreadyEncrypted)
                    if route.config.already_encrypted == AlreadyEncrypted::Pass =>
                {
                    (gathered::parts_body(head), bytes_in)
                }
                Err(e) => return Err(Fault::from_encrypt(&e)),
            }
        };
        exchange.access.bytes_out = len as u64;
        let mut headers = headers_for(Some(version));
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        return Ok(Prepared::Ready(Outbound {
            method: Method::POST,
            headers,
            body,
        }));
    };
    // Streamed: encrypt as it arrives, chunked to the upstream, on a blocking
    // thread held until the body has been read (one of `STREAMS` places).
    let place = match deadline.within(proxy.streams.clone().acquire_owned()).await {
        Ok(Ok(place)) => place,
        Ok(Err(closed)) => return Err(Fault::Internal(format!("stream places: {closed}"))),
        Err(stream::BodyTimedOut) => {
            // The client is not the slow one here: say so where operators look.
            tracing::warn!(
                request_id = %exchange.access.request_id,
                places = crate::proxy::STREAMS,
                "a streamed request waited its request_timeout for a place; answered 408"
            );
            tokio::spawn(stream::drain(rest));
            return Err(Fault::RequestTimeout);
        }
    };
    let reader = stream::read_body(head, rest, max_body, deadline);
    let (mut writer, upstream_body) = stream::body_channel();
    let encryption = tokio::task::spawn_blocking(move || {
        let _place = place;
        let result = if pass_through {
            copy_unchanged(reader, &mut writer)
        } else {
            wss::encrypt_envelope(reader, &mut writer, &recipient, &options)
                .map(|summary| (summary.plaintext_bytes, summary.bytes_out))
        };
        match &result {
            Ok(_) => writer.finish().map_err(EncryptError::Write)?,
            Err(e) => writer.abort(&e.to_string()),
        }
        result
    });
    Ok(Prepared::Streaming(
        Outbound {
            method: Method::POST,
            headers: headers_for(Some(version)),
            body: upstream_body,
        },
        encryption,
    ))
}

/// The outcome of a streamed request, from the upstream's side and the
/// encryption's side.
fn finish_stream(
    sent: Result<Response<ProxyBody>, Fault>,
    encrypted: Result<Result<(u64, u64), EncryptError>, tokio::task::JoinError>,
    exchange: &mut Exchange,
) -> Result<Response<ProxyBody>, Fault> {
    match encrypted {
        Ok(Ok((bytes_in, bytes_out))) => {
            exchange.access.bytes_in = bytes_in;
            exchange.access.bytes_out = bytes_out;
            sent
        }
        // The output side failing means the upstream request ended first: its
        // fault (timeout, unreachable) is the one to report.
        Ok(Err(EncryptError::Write(_))) if sent.is_err() => sent,
        Ok(Err(e)) => Err(Fault::from_encrypt(&e)),
        Err(join) => Err(Fault::Internal(format!("encryption task failed: {join}"))),
    }
}

/// Read up to `threshold` bytes. `(all, None)` when the body ended within it;
/// `(head, Some(rest))` when it goes on and must be streamed. A body to be
/// parsed `whole` is gathered into one buffer as it comes.
async fn read_head<B>(
    mut body: B,
    threshold: u64,
    max_body: u64,
    deadline: stream::BodyDeadline,
    whole: bool,
) -> Result<(Gathered, Option<B>), Fault>
where
    B: RequestBody,
{
    // An announced length is a claim, not data: it only sizes what is copied.
    let announced = body.size_hint().exact().unwrap_or(0).min(threshold + 1);
    let mut head = if whole {
        Gathered::joined(announced)
    } else {
        Gathered::new(announced)
    };
    while (head.len() as u64) <= threshold {
        // A client that stops sending mid-body is cut off, not waited for forever.
        let next = deadline
            .next_frame(&mut body)
            .await
            .map_err(|_| Fault::RequestTimeout)?;
        match next {
            None => return Ok((head, None)),
            Some(Err(_)) => {
                return Err(Fault::MalformedEnvelope(
                    "the request body could not be read".into(),
                ));
            }
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    head.push(data);
                    if head.len() as u64 > max_body {
                        tokio::spawn(stream::drain(body));
                        return Err(Fault::PayloadTooLarge(max_body));
                    }
                }
            }
        }
    }
    if body.is_end_stream() {
        return Ok((head, None));
    }
    Ok((head, Some(body)))
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

/// Encrypt a buffered body of `len` bytes, held in `input`: on this worker up to
/// [`INLINE_ENCRYPT_LIMIT`], on the blocking pool above.
async fn encrypt_buffered(
    proxy: &Proxy,
    recipient: &Arc<Recipient>,
    input: &[Bytes],
    len: usize,
    options: EncryptOptions,
) -> Result<Result<Vec<u8>, EncryptError>, Fault> {
    let encrypt = move |input: &[Bytes], recipient: &Recipient| {
        wss::encrypt_held_to_vec(PartsReader::new(input), len, recipient, &options)
    };
    if len <= INLINE_ENCRYPT_LIMIT {
        return Ok(encrypt(input, recipient).map(|(out, _)| out));
    }
    let recipient = recipient.clone();
    let input = input.to_vec();
    let permit = proxy.encryptions.clone().acquire_owned().await;
    match tokio::task::spawn_blocking(move || {
        let _permit = permit;
        encrypt(&input, &recipient)
    })
    .await
    {
        Ok(result) => Ok(result.map(|(out, _)| out)),
        // The task died: nothing was sent; wssgate's fault, not the caller's.
        Err(join) => Err(Fault::Internal(format!("encryption task failed: {join}"))),
    }
}

/// A signing route's request, read whole (at most `sign_max_body`) and signed:
/// the bytes read and the signed message.
async fn sign_request<B>(
    proxy: &Proxy,
    signer: Signer,
    body: B,
    max_body: u64,
    deadline: stream::BodyDeadline,
) -> Result<(u64, SignedMessage), Fault>
where
    B: RequestBody,
{
    let limit = signer.plan.max_body.unwrap_or(max_body).min(max_body);
    if body.size_hint().lower() > limit {
        tokio::spawn(stream::drain(body));
        return Err(Fault::PayloadTooLarge(limit));
    }
    let (input, rest) = read_head(body, limit, limit, deadline, true).await?;
    if let Some(rest) = rest {
        tokio::spawn(stream::drain(rest));
        return Err(Fault::PayloadTooLarge(limit));
    }
    let bytes_in = input.len() as u64;
    Ok((
        bytes_in,
        signing::sign_buffered(proxy, signer, input.into_bytes()).await?,
    ))
}

/// Send the request upstream, once, and stream the answer back unchanged.
/// `streamed`: the body is still being produced while it is sent.
async fn send(
    proxy: &Proxy,
    admitted: &Admitted,
    outbound: Outbound,
    streamed: bool,
) -> Result<Response<ProxyBody>, Fault> {
    let proxy_config = &admitted.snapshot.config.proxy;
    let upstream = proxy
        .clients
        .get(&admitted.route.config.tls, proxy_config.connect_timeout)
        .map_err(|e| Fault::UpstreamUnreachable(e.to_string()))?;
    let mut request = Request::new(outbound.body);
    *request.method_mut() = outbound.method;
    *request.uri_mut() = admitted.target.clone();
    *request.headers_mut() = outbound.headers;
    let response = match tokio::time::timeout(
        proxy_config.upstream_timeout,
        upstream.send(request, streamed),
    )
    .await
    {
        Err(_) => return Err(Fault::UpstreamTimeout),
        Ok(Err(e)) => return Err(Fault::UpstreamUnreachable(error_chain(&e))),
        Ok(Ok(r)) => r,
    };
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    // The client speaks HTTP/1.1 with wssgate whatever the upstream spoke: an
    // HTTP/1.0 answer goes out as HTTP/1.1, framed by hyper, keep-alive kept.
    parts.version = http::Version::HTTP_11;
    Ok(Response::from_parts(parts, body))
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
