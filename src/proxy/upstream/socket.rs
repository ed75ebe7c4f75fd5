//! An upstream connection's socket, as hyper reads and writes it.
//!
//! hyper writes a request's head and the body it has at hand together: with
//! one gathered write (`writev`) when the socket says it can take one, or else
//! by copying the body behind the head into one buffer. hyper-openssl's stream
//! neither says so nor passes a gathered write on, so over plain TCP every
//! request body was copied once more on its way out, and the connection's
//! buffer grew to its largest message and kept that size while pooled. This
//! wrapper passes gathered writes on for plain TCP (docs/PERFORMANCE.md,
//! "Request bodies written without a copy"). A TLS stream keeps the copy:
//! `SSL_write` takes one buffer, and gathering would send the head and the body
//! as records and system calls of their own.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_openssl::client::legacy::MaybeHttpsStream;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// A plain or TLS connection to an upstream.
pub(super) struct UpstreamIo(pub(super) MaybeHttpsStream<TokioIo<TcpStream>>);

impl UpstreamIo {
    fn stream(self: Pin<&mut Self>) -> Pin<&mut MaybeHttpsStream<TokioIo<TcpStream>>> {
        Pin::new(&mut self.get_mut().0)
    }
}

impl Read for UpstreamIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        self.stream().poll_read(cx, buf)
    }
}

impl Write for UpstreamIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.stream().poll_write(cx, buf)
    }

    fn is_write_vectored(&self) -> bool {
        match &self.0 {
            MaybeHttpsStream::Http(tcp) => tcp.is_write_vectored(),
            MaybeHttpsStream::Https(_) => false,
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().0 {
            MaybeHttpsStream::Http(tcp) => Pin::new(tcp).poll_write_vectored(cx, bufs),
            // As the trait's own default: the first slice that is not empty.
            MaybeHttpsStream::Https(tls) => {
                let first = bufs.iter().find(|b| !b.is_empty()).map_or(&[][..], |b| b);
                Pin::new(tls).poll_write(cx, first)
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.stream().poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.stream().poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    /// A plain connection says it takes gathered writes (what makes hyper
    /// gather a request's head and body instead of copying the body), and a
    /// gathered write reaches the socket whole and in order.
    #[tokio::test]
    async fn a_plain_connection_takes_gathered_writes() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let tcp = TcpStream::connect(addr).await.unwrap();
        let (mut peer, _) = listener.accept().await.unwrap();
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            peer.read_to_end(&mut got).await.unwrap();
            got
        });
        let mut io = UpstreamIo(MaybeHttpsStream::Http(TokioIo::new(tcp)));
        assert!(io.is_write_vectored());

        let head = b"POST /x HTTP/1.1\r\ncontent-length: 70000\r\n\r\n";
        let body: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
        let slices = [IoSlice::new(head), IoSlice::new(&[]), IoSlice::new(&body)];
        let mut expected = head.to_vec();
        expected.extend_from_slice(&body);
        let write = async {
            let mut sent = 0;
            while sent < expected.len() {
                // After the first write, what is left goes as one slice.
                let rest = [IoSlice::new(&expected[sent..])];
                let bufs: &[IoSlice<'_>] = if sent == 0 { &slices } else { &rest };
                let n = std::future::poll_fn(|cx| Pin::new(&mut io).poll_write_vectored(cx, bufs))
                    .await
                    .unwrap();
                assert!(n > 0, "a write makes progress");
                if sent == 0 {
                    assert!(n > head.len(), "the first write took the body too");
                }
                sent += n;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), write)
            .await
            .expect("the writes finish");
        drop(io);
        let got = tokio::time::timeout(Duration::from_secs(10), reader)
            .await
            .expect("the peer reads to the end")
            .unwrap();
        assert!(got == expected, "the bytes arrive whole and in order");
    }
}
