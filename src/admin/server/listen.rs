//! The admin and probe listeners: accept within their connection caps, TLS when
//! configured, request heads and handshakes within `header_timeout`.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::Admin;
use crate::config::ListenerLimits;
use crate::listener::Acceptor;

/// Serve the admin API on `listener` (with TLS when `tls` is given) until
/// `shutdown` completes, within the `[admin]` connection cap and timeouts.
pub async fn run(
    admin: Arc<Admin>,
    listener: TcpListener,
    tls: Option<openssl::ssl::SslAcceptor>,
    shutdown: impl Future<Output = ()>,
) {
    let tls = tls.map(Arc::new);
    let limits = admin.control.shared().load().config.admin.listener;
    let mut acceptor = Acceptor::new(
        listener,
        "admin",
        limits.max_connections.unwrap_or(usize::MAX),
    );
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            (stream, _, permit) = acceptor.accept() => {
                let admin = admin.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    let service = service_fn(move |req| {
                        let admin = admin.clone();
                        async move { Ok::<_, Infallible>(admin.handle(req).await) }
                    });
                    let builder = crate::listener::http1(&limits);
                    match tls {
                        Some(acceptor) => {
                            // A handshake gets as long as a request head: a client
                            // that opens a socket and says nothing is cut there too.
                            let handshake = async {
                                let ssl = openssl::ssl::Ssl::new(acceptor.context()).ok()?;
                                let mut stream = tokio_openssl::SslStream::new(ssl, stream).ok()?;
                                std::pin::Pin::new(&mut stream).accept().await.ok()?;
                                Some(stream)
                            };
                            let Ok(Some(stream)) =
                                tokio::time::timeout(limits.header_timeout, handshake).await
                            else {
                                return;
                            };
                            let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                        }
                        None => {
                            let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                        }
                    }
                });
            }
            () = &mut shutdown => return,
        }
    }
}

/// Serve the probe endpoints on `listener` until `shutdown` completes, within
/// `limits` (`[probe]`).
pub async fn run_probe(
    admin: Arc<Admin>,
    listener: TcpListener,
    limits: ListenerLimits,
    shutdown: impl Future<Output = ()>,
) {
    let mut acceptor = Acceptor::new(
        listener,
        "probe",
        limits.max_connections.unwrap_or(usize::MAX),
    );
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            (stream, _, permit) = acceptor.accept() => {
                let admin = admin.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    let service = service_fn(move |req| {
                        let admin = admin.clone();
                        async move { Ok::<_, Infallible>(admin.handle_probe(req).await) }
                    });
                    let _ = crate::listener::http1(&limits)
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
            () = &mut shutdown => return,
        }
    }
}

/// The TLS acceptor for a non-loopback admin listener.
pub fn tls_acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<openssl::ssl::SslAcceptor, String> {
    use openssl::ssl::{SslAcceptor, SslFiletype, SslMethod};
    let mut b =
        SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server()).map_err(|e| e.to_string())?;
    b.set_certificate_chain_file(cert)
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    b.set_private_key_file(key, SslFiletype::PEM)
        .map_err(|e| format!("{}: {e}", key.display()))?;
    b.check_private_key().map_err(|e| e.to_string())?;
    Ok(b.build())
}
