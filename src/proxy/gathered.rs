//! A request body read so far, kept as the frames it came in.
//!
//! hyper hands a body over as slices of its connection's read buffer. Joining
//! them into one buffer copied every multi-frame body once more (5 % of the
//! daemon's CPU with 100 KiB bodies, docs/PERFORMANCE.md, "Request bodies read
//! without a copy"); kept as they are, they go upstream in one gathered write
//! and the engine reads across them.
//!
//! A frame keeps the whole read buffer it is a slice of (up to
//! [`crate::listener::MAX_CONNECTION_BUFFER`]) alive. So only frames of
//! [`KEPT_FRAME`] bytes or more are kept, and at most [`KEPT_PARTS`] of them;
//! smaller ones are copied together. What a body keeps alive is then at most
//! four times what it holds, plus one buffer for its first frame (kept whatever
//! its size, as most bodies are that one frame): a client that sends many small
//! frames makes each request hold no more than it sent.

use std::io::{self, Read};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};

use super::{BoxError, ProxyBody};

/// Frames at least this long are kept as hyper gave them.
const KEPT_FRAME: usize = 8 * 1024;
/// At most this many parts are kept apart; past them every frame is copied.
const KEPT_PARTS: usize = 16;

/// The frames of a body read so far.
#[derive(Default)]
pub(super) struct Gathered {
    /// Kept frames, and runs of small frames copied together, in order.
    parts: Vec<Bytes>,
    /// Small frames since the last kept one, copied.
    small: Vec<u8>,
    len: usize,
}

impl Gathered {
    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn push(&mut self, data: Bytes) {
        if data.is_empty() {
            return;
        }
        self.len += data.len();
        let first = self.parts.is_empty() && self.small.is_empty();
        if first || (data.len() >= KEPT_FRAME && self.parts.len() < KEPT_PARTS) {
            self.end_small_run();
            self.parts.push(data);
        } else {
            self.small.extend_from_slice(&data);
        }
    }

    fn end_small_run(&mut self) {
        if !self.small.is_empty() {
            self.parts
                .push(Bytes::from(std::mem::take(&mut self.small)));
        }
    }

    /// The parts, in order (none for an empty body).
    pub(super) fn into_parts(mut self) -> Vec<Bytes> {
        self.end_small_run();
        self.parts
    }

    /// The whole body in one buffer: the one frame as it came, or the parts
    /// joined.
    pub(super) fn into_bytes(self) -> Bytes {
        join(self.into_parts())
    }
}

/// `parts` in one buffer (without a copy when there is one part).
pub(super) fn join(mut parts: Vec<Bytes>) -> Bytes {
    if parts.len() <= 1 {
        return parts.pop().unwrap_or_default();
    }
    let mut joined = Vec::with_capacity(parts.iter().map(Bytes::len).sum());
    for part in &parts {
        joined.extend_from_slice(part);
    }
    Bytes::from(joined)
}

/// Reads `parts` one after the other.
pub(super) struct PartsReader<'a> {
    parts: &'a [Bytes],
    /// Read of `parts[0]` so far.
    offset: usize,
}

impl<'a> PartsReader<'a> {
    pub(super) fn new(parts: &'a [Bytes]) -> PartsReader<'a> {
        PartsReader { parts, offset: 0 }
    }
}

impl Read for PartsReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut filled = 0;
        while filled < buf.len() {
            let Some((part, rest)) = self.parts.split_first() else {
                break;
            };
            let available = &part[self.offset..];
            let n = available.len().min(buf.len() - filled);
            buf[filled..filled + n].copy_from_slice(&available[..n]);
            filled += n;
            self.offset += n;
            if self.offset == part.len() {
                self.parts = rest;
                self.offset = 0;
            }
        }
        Ok(filled)
    }
}

/// A body of `parts`, its length known.
pub(super) fn parts_body(parts: Vec<Bytes>) -> ProxyBody {
    let remaining = parts.iter().map(|p| p.len() as u64).sum();
    http_body_util::BodyExt::boxed(Parts {
        parts: parts.into_iter(),
        remaining,
    })
}

struct Parts {
    parts: std::vec::IntoIter<Bytes>,
    remaining: u64,
}

impl Body for Parts {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let next = self.parts.next();
        if let Some(part) = &next {
            self.remaining -= part.len() as u64;
        }
        Poll::Ready(next.map(|part| Ok(Frame::data(part))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    /// A frame as hyper gives one: a slice of a larger read buffer.
    fn frame_of(buffer: &Bytes, from: usize, len: usize) -> Bytes {
        buffer.slice(from..from + len)
    }

    fn same_allocation(a: &Bytes, b: &Bytes) -> bool {
        a.as_ptr() == b.as_ptr()
    }

    #[test]
    fn one_frame_is_kept_as_it_came() {
        let buffer = Bytes::from(vec![7u8; 32 * 1024]);
        let frame = frame_of(&buffer, 100, 2000);
        let mut gathered = Gathered::default();
        gathered.push(frame.clone());
        assert_eq!(gathered.len(), 2000);
        assert!(same_allocation(&gathered.into_bytes(), &frame));
    }

    #[test]
    fn large_frames_are_kept_and_small_ones_copied() {
        let buffer = Bytes::from((0..32 * 1024).map(|i| i as u8).collect::<Vec<u8>>());
        let first = frame_of(&buffer, 0, 100);
        let small = [frame_of(&buffer, 100, 10), frame_of(&buffer, 110, 20)];
        let large = frame_of(&buffer, 130, KEPT_FRAME);
        let mut gathered = Gathered::default();
        gathered.push(first.clone());
        for frame in &small {
            gathered.push(frame.clone());
        }
        gathered.push(large.clone());
        gathered.push(frame_of(&buffer, 130 + KEPT_FRAME, 5));
        let parts = gathered.into_parts();
        assert_eq!(parts.len(), 4, "first, small run, large, small run");
        assert!(same_allocation(&parts[0], &first));
        assert!(
            !same_allocation(&parts[1], &small[0]),
            "small frames are copied"
        );
        assert!(same_allocation(&parts[2], &large));
        assert_eq!(join(parts), buffer.slice(..130 + KEPT_FRAME + 5));
    }

    /// However a client frames its body, what the parts keep alive is bounded
    /// by what it sent: every part but the first is a copy or at least
    /// `KEPT_FRAME` long, and there are at most `KEPT_PARTS + 2` parts.
    #[test]
    fn what_a_body_keeps_alive_is_bounded_by_what_it_holds() {
        let buffer = Bytes::from(vec![1u8; 32 * 1024]);
        for (label, sizes) in [
            ("tiny frames", vec![1usize; 50_000]),
            ("alternating", [1usize, KEPT_FRAME].repeat(100)),
            ("large frames", vec![KEPT_FRAME; 100]),
        ] {
            let mut gathered = Gathered::default();
            let mut kept_frames = Vec::new();
            for (i, &size) in sizes.iter().enumerate() {
                let frame = frame_of(&buffer, i % 100, size);
                kept_frames.push(frame.clone());
                gathered.push(frame);
            }
            let total: usize = sizes.iter().sum();
            assert_eq!(gathered.len(), total, "{label}");
            let parts = gathered.into_parts();
            assert!(
                parts.len() <= KEPT_PARTS + 2,
                "{label}: {} parts",
                parts.len()
            );
            let aliased = parts[1..]
                .iter()
                .filter(|p| kept_frames.iter().any(|f| same_allocation(p, f)))
                .count();
            assert!(aliased <= KEPT_PARTS, "{label}: {aliased} frames kept");
            for part in &parts[1..] {
                let copied = !kept_frames.iter().any(|f| same_allocation(part, f));
                assert!(copied || part.len() >= KEPT_FRAME, "{label}");
            }
            assert_eq!(
                parts.iter().map(Bytes::len).sum::<usize>(),
                total,
                "{label}"
            );
        }
    }

    #[test]
    fn the_parts_read_and_send_as_the_body_they_were() {
        let body: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
        let buffer = Bytes::from(body.clone());
        // Frames of many sizes, across the kept-frame threshold.
        let mut gathered = Gathered::default();
        let mut at = 0;
        for size in [1, 9000, 3, 4096, 20_000, 7, 8192].iter().cycle() {
            let size = (*size).min(body.len() - at);
            gathered.push(frame_of(&buffer, at, size));
            at += size;
            if at == body.len() {
                break;
            }
        }
        let parts = gathered.into_parts();
        for chunk in [1, 7, 4096, 1 << 20] {
            let mut reader = PartsReader::new(&parts);
            let mut read = Vec::new();
            let mut buf = vec![0u8; chunk];
            loop {
                let n = reader.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                read.extend_from_slice(&buf[..n]);
            }
            assert!(read == body, "read {chunk} bytes at a time");
        }
        let sent = parts_body(parts);
        assert_eq!(sent.size_hint().exact(), Some(body.len() as u64));
        let collected = futures_util::FutureExt::now_or_never(sent.collect())
            .unwrap()
            .unwrap()
            .to_bytes();
        assert!(collected == body, "the body sends what was read");
        assert!(Gathered::default().into_parts().is_empty());
        assert!(join(Vec::new()).is_empty());
    }
}
