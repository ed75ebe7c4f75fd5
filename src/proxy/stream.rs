//! Bridges between hyper's asynchronous bodies and the engine's blocking
//! `Read`/`Write`, for bodies too large to buffer. Both directions go through
//! bounded channels, so memory stays at a few chunks whatever the size.

use std::io::{self, Read, Write};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Frame;
use tokio::sync::mpsc;

use super::{BoxError, RequestBody};
use crate::wss::input::InputTooLarge;

/// How many chunks may wait in either direction.
const CHANNEL_DEPTH: usize = 4;
/// Size of the chunks sent upstream.
const OUTPUT_CHUNK: usize = 64 * 1024;

/// A blocking reader over chunks received from an async task.
pub struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        let _ = self.current.split_to(n);
        Ok(n)
    }
}

/// When the next piece of a request body must have arrived: within `idle` of the
/// previous one (a stalled client), and the whole body by `until` (a client that
/// drips just fast enough to stay under `idle`).
#[derive(Debug, Clone, Copy)]
pub struct BodyDeadline {
    idle: std::time::Duration,
    until: tokio::time::Instant,
}

/// A request body did not arrive in time.
#[derive(Debug)]
pub struct BodyTimedOut;

impl BodyDeadline {
    /// The body starts now and must be whole within `total`.
    pub fn starting_now(idle: std::time::Duration, total: std::time::Duration) -> BodyDeadline {
        BodyDeadline {
            idle,
            until: tokio::time::Instant::now() + total,
        }
    }

    /// `work` (something the request waits for before its body is read), or
    /// [`BodyTimedOut`] when the whole body's deadline comes first.
    pub async fn within<F: std::future::Future>(&self, work: F) -> Result<F::Output, BodyTimedOut> {
        tokio::time::timeout_at(self.until, work)
            .await
            .map_err(|_| BodyTimedOut)
    }

    /// The body's next frame, or [`BodyTimedOut`].
    pub async fn next_frame<B: RequestBody>(
        &self,
        body: &mut B,
    ) -> Result<Option<Result<Frame<Bytes>, B::Error>>, BodyTimedOut> {
        let deadline = self.until.min(tokio::time::Instant::now() + self.idle);
        tokio::time::timeout_at(deadline, body.frame())
            .await
            .map_err(|_| BodyTimedOut)
    }
}

/// Feed `head` and then the rest of `body` to a [`ChannelReader`], failing with
/// [`InputTooLarge`] past `limit` bytes in all.
pub fn read_body<B>(
    head: Vec<Bytes>,
    mut body: B,
    limit: u64,
    deadline: BodyDeadline,
) -> ChannelReader
where
    B: RequestBody,
{
    let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
    tokio::spawn(async move {
        let mut total = head.iter().map(|part| part.len() as u64).sum::<u64>();
        for part in head {
            if tx.send(Ok(part)).await.is_err() {
                return;
            }
        }
        loop {
            let Ok(next) = deadline.next_frame(&mut body).await else {
                let _ = tx
                    .send(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the request body did not arrive in time",
                    )))
                    .await;
                return;
            };
            match next {
                None => return,
                Some(Err(e)) => {
                    let _ = tx.send(Err(io::Error::other(e.into()))).await;
                    return;
                }
                Some(Ok(frame)) => {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    total += data.len() as u64;
                    if total > limit {
                        let _ = tx
                            .send(Err(io::Error::other(InputTooLarge { limit })))
                            .await;
                        drain(body).await;
                        return;
                    }
                    if tx.send(Ok(data)).await.is_err() {
                        // The engine stopped reading (it refused the envelope):
                        // read the rest so that its answer reaches the client.
                        drain(body).await;
                        return;
                    }
                }
            }
        }
    });
    ChannelReader {
        rx,
        current: Bytes::new(),
    }
}

/// Read and discard what is left of a refused request body, for at most
/// [`DRAIN_TIME`] and [`DRAIN_BYTES`], so the client can read the early answer:
/// closing a socket with unread data makes the kernel reset the connection and
/// the answer is lost. Nothing read is kept; a connection draining still holds
/// its `max_connections` place.
pub async fn drain<B>(body: B)
where
    B: RequestBody,
{
    drain_up_to(body, DRAIN_BYTES).await;
}

async fn drain_up_to<B>(mut body: B, max_bytes: u64)
where
    B: RequestBody,
{
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        let mut seen = 0u64;
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(data) = frame.into_data() {
                seen += data.len() as u64;
                if seen > max_bytes {
                    return;
                }
            }
        }
    })
    .await;
}

/// The longest a refused body is read for.
pub const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(10);
/// The most of a refused body that is read (and thrown away).
pub const DRAIN_BYTES: u64 = 256 << 20;

/// A blocking writer whose output becomes an async body stream.
pub struct ChannelWriter {
    tx: mpsc::Sender<Result<Bytes, BoxError>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(
            &mut self.buf,
            Vec::with_capacity(OUTPUT_CHUNK),
        ));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the upstream request ended"))
    }

    /// Send what is left; the stream ends when the writer is dropped.
    pub fn finish(mut self) -> io::Result<()> {
        self.send()
    }

    /// End the stream with an error: the upstream request is aborted, so the
    /// receiver never sees a complete message.
    pub fn abort(self, reason: &str) {
        let _ = self.tx.blocking_send(Err(reason.to_string().into()));
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= OUTPUT_CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A writer for the engine and the body that streams what it writes.
pub fn body_channel() -> (ChannelWriter, super::ProxyBody) {
    let (tx, rx) = mpsc::channel::<Result<Bytes, BoxError>>(CHANNEL_DEPTH);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item.map(Frame::data), rx))
    });
    let body = http_body_util::StreamBody::new(stream).boxed();
    (
        ChannelWriter {
            tx,
            buf: Vec::with_capacity(OUTPUT_CHUNK),
        },
        body,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A client that never stops sending is read for at most the bound.
    #[tokio::test]
    async fn a_drain_stops_at_its_byte_bound() {
        let read = Arc::new(AtomicU64::new(0));
        let counted = read.clone();
        let endless = futures_util::stream::repeat_with(move || {
            counted.fetch_add(1024, Ordering::Relaxed);
            Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from_static(&[b'x'; 1024])))
        });
        let body = http_body_util::StreamBody::new(endless);
        tokio::time::timeout(DRAIN_TIME / 2, drain_up_to(body, 64 * 1024))
            .await
            .expect("the drain ended by its byte bound");
        let n = read.load(Ordering::Relaxed);
        assert!((64 * 1024..=66 * 1024).contains(&n), "{n} bytes read");
    }

    /// A client that sends nothing more is waited for at most DRAIN_TIME
    /// (tokio's clock, paused and advanced: no real waiting).
    #[tokio::test(start_paused = true)]
    async fn a_drain_stops_at_its_time_bound() {
        let silent =
            futures_util::stream::pending::<Result<Frame<Bytes>, std::convert::Infallible>>();
        let started = tokio::time::Instant::now();
        drain(http_body_util::StreamBody::new(silent)).await;
        assert_eq!(started.elapsed(), DRAIN_TIME);
    }
}
