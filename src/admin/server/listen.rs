//! The admin and probe listeners: accept with back-off, TLS when configured.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::Admin;

/// Serve the admin API on `listener` (with TLS when `tls` is given) until
/// `shutdown` completes.
pub async fn run(
    admin: Arc<Admin>,
    listener: TcpListener,
    tls: Option<openssl::ssl::SslAcceptor>,
    shutdown: impl Future<Output = ()>,
) {
    let tls = tls.map(Arc::new);
    tokio::pin!(shutdown);
    let mut backoff = crate::descriptors::AcceptBackoff::default();
    loop {
        tokio::select! {
            (stream, _) = backoff.accept(&listener, "admin") => {
                let admin = admin.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let admin = admin.clone();
                        async move { Ok::<_, Infallible>(admin.handle(req).await) }
                    });
                    let builder = hyper::server::conn::http1::Builder::new();
                    match tls {
                        Some(acceptor) => {
                            let Ok(ssl) = openssl::ssl::Ssl::new(acceptor.context()) else { return };
                            let Ok(mut stream) = tokio_openssl::SslStream::new(ssl, stream) else { return };
                            if std::pin::Pin::new(&mut stream).accept().await.is_err() {
                                return;
                            }
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

/// Serve the probe endpoints on `listener` until `shutdown` completes.
pub async fn run_probe(
    admin: Arc<Admin>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut backoff = crate::descriptors::AcceptBackoff::default();
    loop {
        tokio::select! {
            (stream, _) = backoff.accept(&listener, "probe") => {
                let admin = admin.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let admin = admin.clone();
                        async move { Ok::<_, Infallible>(admin.handle_probe(req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .timer(hyper_util::rt::TokioTimer::new())
                        .header_read_timeout(std::time::Duration::from_secs(10))
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
