//! The encrypting reverse proxy: accepts SOAP requests, finds the route by the
//! longest path prefix, encrypts the Body for the certificate of the route's alias
//! (from the snapshot loaded once for the request), forwards to the upstream and
//! streams its answer back unchanged.
//!
//! Bodies up to `stream_threshold` are buffered and sent with a Content-Length;
//! larger ones are encrypted as they arrive and streamed chunked to the upstream,
//! so memory stays flat up to `max_body`. A decrypt route (the receiver side)
//! reads the request whole and decrypts it with its key ring instead, and an
//! encrypt route with `response = "decrypt"` decrypts the answer (`inbound`).
//! wssgate's own errors are SOAP Faults made in one place ([`fault`]). A request
//! is never retried once a byte was sent.

mod access;
pub mod fault;
mod forward;
pub mod gate;
mod gathered;
mod headers;
mod inbound;
mod signing;
pub mod stream;
mod target;
pub mod upstream;

pub use inbound::decrypt_request;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};

use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::listener::Acceptor;
use crate::state::Shared;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body type of every request and response the proxy handles.
pub type ProxyBody = http_body_util::combinators::BoxBody<Bytes, BoxError>;

/// A request body the proxy can read, stream and drain from its own tasks:
/// hyper's `Incoming` on a socket, or any in-process body in tests.
pub trait RequestBody:
    hyper::body::Body<Data = Bytes, Error: Into<BoxError> + Send> + Send + Unpin + 'static
{
}

impl<B> RequestBody for B where
    B: hyper::body::Body<Data = Bytes, Error: Into<BoxError> + Send> + Send + Unpin + 'static
{
}

pub(crate) fn full_body(bytes: Bytes) -> ProxyBody {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

/// Everything the proxy shares between requests.
pub struct Proxy {
    /// The published snapshot (config, routes, certificates) and its reload path.
    pub shared: Arc<Shared>,
    /// Upstream clients with their connection pools.
    clients: upstream::Clients,
    /// Pause state per route; outlives snapshots.
    pub gates: Arc<gate::Gates>,
    /// Bounds buffered encryptions and decryptions running at once on the
    /// blocking pool: more than the cores can run only adds threads and their
    /// working memory.
    encryptions: Arc<tokio::sync::Semaphore>,
    /// Client connections open at once, within the descriptor budget
    /// ([`crate::descriptors`]).
    connections: Arc<tokio::sync::Semaphore>,
    /// Streamed requests at once ([`STREAMS`]): each holds a blocking thread for
    /// as long as its client sends.
    streams: Arc<tokio::sync::Semaphore>,
}

/// The runtime's blocking pool (set in `main`): buffered encryptions and
/// decryptions above the inline size, streamed requests, upstream name
/// resolution and file work share it.
pub const BLOCKING_THREADS: usize = 512;

/// Streamed requests (bodies above `stream_threshold`) in progress at once.
/// Each keeps one blocking thread until its client has sent the whole body, so
/// without a bound slow clients could take every thread, and buffered
/// encryptions, decryptions and upstream connects would wait behind them. Half
/// the pool: the other half is always there for that work. A streamed request
/// beyond the bound waits for a place within its `request_timeout`.
pub const STREAMS: usize = BLOCKING_THREADS / 2;

impl Proxy {
    pub fn new(shared: Arc<Shared>, gates: Arc<gate::Gates>) -> Proxy {
        Proxy::with_connections(
            shared,
            gates,
            tokio::sync::Semaphore::MAX_PERMITS,
            crate::descriptors::MAX_IDLE_UPSTREAM,
        )
    }

    /// A proxy that keeps at most `max_connections` client connections open,
    /// and at most `idle_upstream` idle upstream connections besides those
    /// ([`crate::descriptors`]).
    pub fn with_connections(
        shared: Arc<Shared>,
        gates: Arc<gate::Gates>,
        max_connections: usize,
        idle_upstream: usize,
    ) -> Proxy {
        Proxy {
            shared,
            clients: upstream::Clients::new(idle_upstream),
            gates,
            encryptions: Arc::new(tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, |n| n.get() * 2),
            )),
            connections: Arc::new(tokio::sync::Semaphore::new(
                max_connections.min(tokio::sync::Semaphore::MAX_PERMITS),
            )),
            streams: Arc::new(tokio::sync::Semaphore::new(STREAMS)),
        }
    }

    /// This proxy with at most `streams` streamed requests at once instead of
    /// [`STREAMS`].
    pub fn limit_streams(mut self, streams: usize) -> Proxy {
        self.streams = Arc::new(tokio::sync::Semaphore::new(streams));
        self
    }

    /// Places for streamed requests free now.
    pub fn streams_available(&self) -> usize {
        self.streams.available_permits()
    }

    /// Handle one request. Any body will do, so tests call this in process
    /// without a socket.
    pub async fn handle<B: RequestBody>(
        &self,
        request: Request<B>,
        peer: SocketAddr,
    ) -> Response<ProxyBody> {
        forward::handle(self, request, peer).await
    }
}

/// Serve the proxy on `listener` until `shutdown` completes, then stop accepting
/// and give in-flight requests up to the configured grace period to finish.
pub async fn run(proxy: Arc<Proxy>, listener: TcpListener, shutdown: impl Future<Output = ()>) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    let limits = proxy.shared.load().config.proxy.listener;
    // A connection is accepted only with a place in the descriptor budget: beyond
    // it, clients wait in the listen backlog rather than a held request finding no
    // descriptor for its upstream at release. Accept errors (out of descriptors
    // and the like) back off and the proxy keeps serving.
    let mut acceptor = Acceptor::sharing(listener, "proxy", proxy.connections.clone());
    loop {
        tokio::select! {
            (stream, peer, permit) = acceptor.accept() => {
                let _ = stream.set_nodelay(true);
                let proxy = proxy.clone();
                let service = service_fn(move |req| {
                    let proxy = proxy.clone();
                    async move { Ok::<_, Infallible>(proxy.handle(req, peer).await) }
                });
                let conn = crate::listener::http1(&limits)
                    .serve_connection(TokioIo::new(stream), service);
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    // The place outlives the upstream connection the client
                    // connection kept: that one goes to the pool, which takes
                    // a place of its own there, as `keeping` ends.
                    let _permit = permit;
                    upstream::keeping(async move {
                        if let Err(e) = conn.await {
                            tracing::debug!(error = %e, %peer, "connection ended with an error");
                        }
                    })
                    .await;
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(acceptor);
    let grace = proxy.shared.load().config.proxy.shutdown_grace;
    tracing::info!(
        grace_secs = grace.as_secs_f64(),
        "shutting down: no new connections; waiting for in-flight requests"
    );
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(grace) => tracing::warn!("shutdown grace period over; closing remaining connections"),
    }
}
