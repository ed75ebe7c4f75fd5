//! The upstream side: keep-alive connections over HTTP or HTTPS (OpenSSL,
//! verified against the system roots or a route's CA file, with an optional client
//! certificate for mutual TLS), a connect timeout, and idle connections kept for
//! the next request.
//!
//! A connection has no task of its own. The request that uses it drives it:
//! while waiting for the answer's head, then inside the answer's body
//! ([`Answer`]) until its last byte has been handed on. So a request and its
//! upstream I/O run in one task, with no channel and no wake-up between two
//! tasks. A connection whose answer was read to its end is kept by the client
//! connection whose request used it ([`keeping`]), for that client's next
//! request to the same origin; it goes to the shared pool when the client
//! connection ends or moves on to another origin, and requests that find none
//! kept take from the pool, then connect. A connection that serves one client
//! request after another keeps its socket, buffers and CPU (measured in
//! docs/PERFORMANCE.md, "The upstream connection in the request's task").
//!
//! Idle connections are driven by nobody: a sweep every [`SWEEP_EVERY`] closes
//! pooled ones the upstream has closed or that idled [`IDLE_TIMEOUT`], and every
//! connection is looked at once more when it is taken. A kept one lives at most
//! as long as its client connection, whose descriptor budget counts it
//! ([`crate::descriptors`]); a pooled one holds one of the pool's places, a
//! share of the same budget shared by every upstream; with every place taken,
//! the least recently used idle connection here is closed for the newer one.
//! A request that a reused connection turned away before writing any of it is
//! sent on a new connection; once a byte has been written, never again.
//!
//! One [`Upstream`] per distinct TLS setting and connect timeout, made on first
//! use and kept in a copy-on-write map: the request path only reads it.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1;
use hyper_openssl::client::legacy::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use openssl::ssl::{SslConnector, SslFiletype, SslMethod};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower_service::Service;

mod socket;

use super::{BoxError, ProxyBody};
use crate::config::UpstreamTls;
use socket::UpstreamIo;

/// How long a connection may stay idle in the pool before it is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// How often idle connections are looked at: those the upstream closed, or
/// that idled [`IDLE_TIMEOUT`], are closed then (a closed one is not kept in
/// CLOSE_WAIT longer than this).
pub const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// Why a client for a TLS setting could not be made.
#[derive(Debug, thiserror::Error)]
#[error("upstream TLS setup failed ({what}): {reason}")]
pub struct TlsSetupError {
    what: String,
    reason: String,
}

/// Why a request could not be sent or its answer's head not read.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("the request has no upstream host")]
    NoHost,
    #[error("cannot connect")]
    Connect(#[source] BoxError),
    #[error("the upstream connection failed")]
    Exchange(#[source] hyper::Error),
}

/// Upstreams by TLS setting, then connect timeout: looked up by reference, so
/// a request neither copies its route's TLS setting nor hashes a key built for it.
pub struct Clients {
    map: ArcSwap<HashMap<UpstreamTls, HashMap<Duration, Arc<Upstream>>>>,
    /// Held while an upstream is made, so that first requests for one TLS
    /// setting on several workers at once build one TLS context (the trusted
    /// roots read and parsed), not one per worker.
    making: Mutex<()>,
    /// Places for idle connections in the pools of every upstream
    /// ([`crate::descriptors::idle_upstream_places`]).
    places: Arc<Semaphore>,
    /// Upstreams made so far.
    #[cfg(test)]
    made: std::sync::atomic::AtomicUsize,
}

impl Clients {
    /// Clients whose pools keep at most `idle_places` idle connections in all.
    pub fn new(idle_places: usize) -> Clients {
        Clients {
            map: ArcSwap::default(),
            making: Mutex::new(()),
            places: Arc::new(Semaphore::new(idle_places.min(Semaphore::MAX_PERMITS))),
            #[cfg(test)]
            made: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    pub fn get(
        &self,
        tls: &UpstreamTls,
        connect_timeout: Duration,
    ) -> Result<Arc<Upstream>, TlsSetupError> {
        let find = || {
            self.map
                .load()
                .get(tls)
                .and_then(|by_timeout| by_timeout.get(&connect_timeout))
                .cloned()
        };
        if let Some(u) = find() {
            return Ok(u);
        }
        // Only the first use of a TLS setting gets here. Requests that come
        // meanwhile wait on their worker while it is made (the trusted roots
        // read once), instead of each worker making one of its own.
        let _making = self.making.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(u) = find() {
            return Ok(u);
        }
        let made = Arc::new(Upstream::new(
            connector(tls, connect_timeout)?,
            self.places.clone(),
        ));
        #[cfg(test)]
        self.made.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        // The only writer of the map is here, under `making`.
        let mut map = HashMap::clone(&self.map.load());
        map.entry(tls.clone())
            .or_default()
            .insert(connect_timeout, made.clone());
        self.map.store(Arc::new(map));
        Upstream::start_sweeping(&made);
        Ok(made)
    }
}

fn connector(
    tls: &UpstreamTls,
    connect_timeout: Duration,
) -> Result<HttpsConnector<HttpConnector>, TlsSetupError> {
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
    HttpsConnector::with_connector(http, ssl).map_err(fail("connector"))
}

/// Where a connection goes: scheme and authority.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Origin {
    https: bool,
    authority: Authority,
}

/// One HTTP/1.1 connection: the handle requests are sent on and the state
/// machine that does its I/O when polled.
struct Connection {
    sender: http1::SendRequest<ProxyBody>,
    /// Dropped as soon as it has ended: that closes the socket and turns away
    /// a request it had not taken yet, which then comes back to be sent on
    /// another connection (instead of waiting for an answer forever).
    driver: Option<http1::Connection<UpstreamIo, ProxyBody>>,
}

impl Connection {
    /// Drive the connection's I/O; `true` once it has ended (closed by either
    /// side, or failed) and can serve nothing more.
    fn poll_ended(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(driver) = &mut self.driver else {
            return true;
        };
        if Pin::new(driver).poll(cx).is_pending() {
            return false;
        }
        self.driver = None;
        true
    }

    /// Whether it can take another request now, after driving it once.
    fn reusable(&mut self, cx: &mut Context<'_>) -> bool {
        !self.poll_ended(cx) && matches!(self.sender.poll_ready(cx), Poll::Ready(Ok(())))
    }
}

tokio::task_local! {
    /// The upstream connection the client connection of this task used last,
    /// while it is idle: its next request takes it before the shared pool.
    static KEPT: RefCell<Option<Kept>>;
}

/// Run `connection`, a client connection's task, so that its requests keep the
/// upstream connection they used for the next one (see [`KEPT`]). Outside it,
/// requests use the shared pool only.
pub fn keeping<F: Future>(connection: F) -> impl Future<Output = F::Output> {
    KEPT.scope(RefCell::new(None), connection)
}

/// An idle connection kept by a client connection. Dropped with the client's
/// task, or replaced by one to another origin, it goes to the shared pool.
struct Kept {
    origin: Origin,
    idle: Option<Idle>,
    pool: Weak<Upstream>,
}

impl Drop for Kept {
    fn drop(&mut self) {
        if let (Some(idle), Some(pool)) = (self.idle.take(), self.pool.upgrade()) {
            pool.put_back(self.origin.clone(), idle);
        }
    }
}

/// The connection this task's client connection kept, if it goes to `origin`
/// and can take a request now.
fn take_kept(
    upstream: &Arc<Upstream>,
    origin: &Origin,
    now: Instant,
    cx: &mut Context<'_>,
) -> Option<Connection> {
    let mut kept = KEPT.try_with(|k| k.borrow_mut().take()).ok().flatten()?;
    // Made under another TLS setting (client certificate, trusted roots) or
    // to another origin: it must not carry this request. Dropped, it goes to
    // its own pool.
    if kept.origin != *origin || !std::ptr::eq(kept.pool.as_ptr(), Arc::as_ptr(upstream)) {
        return None;
    }
    let idle = kept.idle.take()?;
    idle.usable(now, cx)
}

struct Idle {
    connection: Connection,
    since: Instant,
}

impl Idle {
    /// The connection, if it has not idled [`IDLE_TIMEOUT`] and can take a
    /// request now.
    fn usable(self, now: Instant, cx: &mut Context<'_>) -> Option<Connection> {
        let Idle {
            mut connection,
            since,
        } = self;
        (now.duration_since(since) < IDLE_TIMEOUT && connection.reusable(cx)).then_some(connection)
    }
}

/// An idle connection in the pool, in one of its places. (A kept one has
/// none: its client connection's budget counts it.) Taken, it gives the place
/// back: the client connection whose request takes it counts it from then on.
struct Pooled {
    idle: Idle,
    _place: OwnedSemaphorePermit,
}

/// Connections to the upstreams of one TLS setting and connect timeout.
pub struct Upstream {
    connector: HttpsConnector<HttpConnector>,
    /// Idle connections by origin, the most recently used last. Held only to
    /// take or put back one connection, or by the sweep; never across an await.
    idle: Mutex<HashMap<Origin, Vec<Pooled>, foldhash::fast::RandomState>>,
    /// Places for idle connections, shared with every other upstream's pool:
    /// each pooled connection holds one.
    places: Arc<Semaphore>,
}

impl Upstream {
    fn new(connector: HttpsConnector<HttpConnector>, places: Arc<Semaphore>) -> Upstream {
        Upstream {
            connector,
            idle: Mutex::new(HashMap::default()),
            places,
        }
    }

    /// Close idle connections that ended or idled too long, every
    /// [`SWEEP_EVERY`], for as long as the upstream is in use.
    fn start_sweeping(upstream: &Arc<Upstream>) {
        let weak: Weak<Upstream> = Arc::downgrade(upstream);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(SWEEP_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            every.tick().await;
            loop {
                every.tick().await;
                let Some(upstream) = weak.upgrade() else {
                    return;
                };
                upstream.sweep(Instant::now());
            }
        });
    }

    /// Close the idle connections that ended or have idled [`IDLE_TIMEOUT`].
    /// The connections are looked at and closed outside the lock, so that
    /// requests taking and putting back connections meanwhile do not wait.
    fn sweep(&self, now: Instant) {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut looked_at =
            std::mem::take(&mut *self.idle.lock().unwrap_or_else(|p| p.into_inner()));
        looked_at.retain(|_, list| {
            list.retain_mut(|Pooled { idle, .. }| {
                now.duration_since(idle.since) < IDLE_TIMEOUT
                    && !idle.connection.poll_ended(&mut cx)
            });
            !list.is_empty()
        });
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        for (origin, mut list) in looked_at {
            // Put back while the sweep ran: more recently used, so last.
            let newer = idle.remove(&origin).unwrap_or_default();
            list.extend(newer);
            idle.insert(origin, list);
        }
    }

    /// Idle connections held now, over every origin.
    #[cfg(test)]
    fn idle_connections(&self) -> usize {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.values().map(Vec::len).sum()
    }

    /// The most recently used idle connection to `origin` that can take a
    /// request now; those found unusable on the way are closed.
    fn take(&self, origin: &Origin, now: Instant, cx: &mut Context<'_>) -> Option<Connection> {
        loop {
            let pooled = {
                let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
                idle.get_mut(origin)?.pop()?
            };
            if let Some(connection) = pooled.idle.usable(now, cx) {
                return Some(connection);
            }
        }
    }

    /// Keep an idle connection for the next request to `origin` in a place of
    /// the pool. With every place taken, the least recently used idle
    /// connection of this upstream gives its place up and is closed; with
    /// none here to give one, this connection is closed instead. Whether it
    /// can take a request is looked at when it is taken, or by the sweep.
    fn put_back(&self, origin: Origin, idle: Idle) {
        let mut pool = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let (place, evicted) = match self.places.clone().try_acquire_owned() {
            Ok(place) => (place, None),
            Err(_) => {
                let oldest = pool
                    .values_mut()
                    .filter(|list| !list.is_empty())
                    .min_by_key(|list| list[0].idle.since);
                let Some(list) = oldest else {
                    return;
                };
                let Pooled {
                    idle,
                    _place: place,
                } = list.remove(0);
                (place, Some(idle))
            }
        };
        pool.entry(origin).or_default().push(Pooled {
            idle,
            _place: place,
        });
        drop(pool);
        // Closed outside the lock.
        drop(evicted);
    }

    async fn connect(&self, uri: Uri) -> Result<Connection, SendError> {
        let io = self
            .connector
            .clone()
            .call(uri)
            .await
            .map_err(SendError::Connect)?;
        let (sender, driver) = http1::handshake(UpstreamIo(io))
            .await
            .map_err(SendError::Exchange)?;
        Ok(Connection {
            sender,
            driver: Some(driver),
        })
    }

    /// Send `request` (its URI absolute, its Host header set) on the connection
    /// this client connection kept, an idle one from the pool, or a new one,
    /// and wait for the answer's head. A request that a reused connection
    /// turned away before writing any of it is sent again on the next one. The
    /// answer's body drives the connection to its end, then keeps it.
    /// A `streamed` request's body is still being produced elsewhere while it
    /// is sent (see [`Answer::detach`]).
    pub async fn send(
        self: &Arc<Self>,
        mut request: Request<ProxyBody>,
        streamed: bool,
    ) -> Result<Response<ProxyBody>, SendError> {
        let uri = request.uri().clone();
        let origin = Origin {
            https: uri.scheme() == Some(&Scheme::HTTPS),
            authority: uri.authority().ok_or(SendError::NoHost)?.clone(),
        };
        // The request line carries the path only; the Host header, which
        // `headers::forward_headers` sets, names the upstream.
        *request.uri_mut() = Uri::from(
            uri.path_and_query()
                .cloned()
                .unwrap_or_else(|| PathAndQuery::from_static("/")),
        );
        loop {
            let pooled = std::future::poll_fn(|cx| {
                let now = Instant::now();
                Poll::Ready(
                    take_kept(self, &origin, now, cx).or_else(|| self.take(&origin, now, cx)),
                )
            })
            .await;
            let reused = pooled.is_some();
            let mut connection = match pooled {
                Some(c) => c,
                None => self.connect(uri.clone()).await?,
            };
            match exchange(&mut connection, request).await {
                Ok(response) => {
                    let (parts, body) = response.into_parts();
                    let mut answer = Answer {
                        body,
                        connection: Some(connection),
                        pool: Arc::downgrade(self),
                        origin: origin.clone(),
                    };
                    if streamed {
                        // The answer may come before the whole request has
                        // been sent (an early 413 or 401), and the request's
                        // producer waits for the answer only once it has sent
                        // everything: the connection needs a driver of its own
                        // to go on writing (or fail) meanwhile. Not kept:
                        // streamed requests are large and few.
                        answer.detach();
                    } else if answer.body.is_end_stream() {
                        // Nothing will poll an empty body: the connection goes
                        // back now.
                        std::future::poll_fn(|cx| {
                            answer.finish(cx);
                            Poll::Ready(())
                        })
                        .await;
                    }
                    return Ok(Response::from_parts(parts, answer.boxed()));
                }
                Err(mut failed) => match failed.take_message() {
                    Some(unsent) if reused => request = unsent,
                    _ => return Err(SendError::Exchange(failed.into_error())),
                },
            }
        }
    }
}

/// Send `request` on `connection`, driving its I/O, until the answer's head
/// has arrived.
async fn exchange(
    connection: &mut Connection,
    request: Request<ProxyBody>,
) -> Result<Response<Incoming>, hyper::client::conn::TrySendError<Request<ProxyBody>>> {
    let sent = connection.sender.try_send_request(request);
    let mut sent = std::pin::pin!(sent);
    std::future::poll_fn(|cx| {
        // Once ended (and dropped), the driver has answered `sent`: with the
        // answer, an error, or the request it did not take.
        connection.poll_ended(cx);
        sent.as_mut().poll(cx)
    })
    .await
}

/// The upstream's answer body, which drives its connection until the last
/// byte, then keeps the connection ([`Answer::finish`]). Dropped before its
/// end (the client went away), it closes the connection: what is left of the
/// answer is never read.
struct Answer {
    body: Incoming,
    connection: Option<Connection>,
    pool: Weak<Upstream>,
    origin: Origin,
}

impl Answer {
    /// Give the connection a task of its own for the rest of the exchange,
    /// and keep it from any later request: it closes when the exchange ends.
    fn detach(&mut self) {
        if let Some(Connection {
            sender,
            driver: Some(driver),
        }) = self.connection.take()
        {
            drop(sender);
            tokio::spawn(async move {
                let _ = driver.await;
            });
        }
    }

    /// The answer has been read to its end: the connection is kept by this
    /// task's client connection for its next request (the one kept before
    /// goes to the pool), or put in the pool outside such a task.
    fn finish(&mut self, cx: &mut Context<'_>) {
        let Some(mut connection) = self.connection.take() else {
            return;
        };
        // Driven once more: an answer that closes its connection
        // (`Connection: close`, HTTP/1.0) ends it now, and it is closed here
        // instead of kept.
        if connection.poll_ended(cx) || connection.sender.is_closed() {
            return;
        }
        let kept = Kept {
            origin: self.origin.clone(),
            idle: Some(Idle {
                connection,
                since: Instant::now(),
            }),
            pool: self.pool.clone(),
        };
        // The connection kept before, or this one outside `keeping` (the
        // closure is dropped unrun), goes to the pool as it is dropped.
        let _previous = KEPT.try_with(|k| k.borrow_mut().replace(kept));
    }
}

impl Body for Answer {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Some(connection) = &mut this.connection
            && connection.poll_ended(cx)
        {
            // Ended: what it read is in the body already; it serves no more.
            this.connection = None;
        }
        let frame = std::task::ready!(Pin::new(&mut this.body).poll_frame(cx));
        match &frame {
            None => this.finish(cx),
            Some(Ok(_)) if this.body.is_end_stream() => this.finish(cx),
            Some(Err(_)) => this.connection = None,
            Some(Ok(_)) => {}
        }
        Poll::Ready(frame.map(|f| f.map_err(|e| Box::new(e) as BoxError)))
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests;
