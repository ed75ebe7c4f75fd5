//! What the proxy, admin and probe listeners share: a cap on the connections open
//! at once, the accept back-off, and the HTTP/1 settings that bound a slow client.
//!
//! A connection is accepted only with a permit; beyond the cap, clients wait in
//! the kernel's listen backlog, so a flood on one port cannot take the
//! descriptors another port needs. The request head must arrive within
//! `header_timeout`; hyper starts that timer whenever a connection waits for a
//! request head, so it also closes keep-alive connections idle for that long.
//! How long a request body may take is the request handlers' to bound (they know
//! when a hold ends and the body begins).

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::server::conn::http1;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::ListenerLimits;
use crate::descriptors::AcceptBackoff;

/// Each connection's read buffer, and so the largest request head (a larger one
/// is answered 431). hyper's default of ~400 KiB lets the buffers of idle
/// keep-alive connections stay large.
pub const MAX_CONNECTION_BUFFER: usize = 32 * 1024;

/// A listener that accepts within a connection cap.
pub struct Acceptor {
    listener: TcpListener,
    /// Which listener, for the logs.
    name: &'static str,
    backoff: AcceptBackoff,
    /// One permit per open connection; the connection's task holds it.
    permits: Arc<Semaphore>,
}

impl Acceptor {
    /// `max_connections` at once (`usize::MAX`: as many as the semaphore holds).
    pub fn new(listener: TcpListener, name: &'static str, max_connections: usize) -> Acceptor {
        Acceptor::sharing(
            listener,
            name,
            Arc::new(Semaphore::new(
                max_connections.clamp(1, Semaphore::MAX_PERMITS),
            )),
        )
    }

    /// An acceptor whose cap is `permits` (owned by someone who reports on it).
    pub fn sharing(listener: TcpListener, name: &'static str, permits: Arc<Semaphore>) -> Acceptor {
        Acceptor {
            listener,
            name,
            backoff: AcceptBackoff::default(),
            permits,
        }
    }

    /// The next connection, once one of the cap's places is free. Cancel-safe:
    /// dropped while waiting, it neither loses a connection nor keeps a place.
    pub async fn accept(&mut self) -> (TcpStream, SocketAddr, OwnedSemaphorePermit) {
        let permit = match self.permits.clone().acquire_owned().await {
            Ok(permit) => permit,
            // The semaphore is never closed; waiting forever is the honest answer.
            Err(_) => std::future::pending().await,
        };
        let (stream, peer) = self.backoff.accept(&self.listener, self.name).await;
        (stream, peer, permit)
    }
}

/// HTTP/1 settings for a listener with `limits`.
pub fn http1(limits: &ListenerLimits) -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(MAX_CONNECTION_BUFFER);
    builder
}
