//! A request body read so far, kept as the frames it came in.
//!
//! hyper hands a body over as slices of its connection's read buffer. Joining
//! them into one buffer copied every multi-frame body once more (5 % of the
//! daemon's CPU with 100 KiB bodies, docs/PERFORMANCE.md, "Request bodies read
//! without a copy"). Kept as they are, they go to a plain-TCP upstream in
//! gathered writes, and the engine reads across them.
//!
//! A frame keeps the whole read buffer it is a slice of alive. hyper reads at
//! most [`crate::listener::MAX_CONNECTION_BUFFER`] (32 KiB) at a time, into a
//! buffer that can grow to about twice that. So only frames of [`KEPT_FRAME`]
//! bytes or more are kept, at most [`KEPT_PARTS`] of them, and smaller ones are
//! copied together (into room reserved from the announced length). A kept frame
//! then holds alive at most about four times its length. The first frame is
//! kept whatever its size, since most bodies are that one frame (its buffer
//! holds the request's headers too). A client that sends many small frames
//! therefore makes a request hold about what it sent.
//!
//! Routes that parse the body whole (decrypting, signing) gather it joined
//! ([`Gathered::joined`]), as one buffer with room for the announced length.

use std::io::{self, Read};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};

use super::{BoxError, ProxyBody};

/// Frames at least this long are kept as hyper gave them.
const KEPT_FRAME: usize = 16 * 1024;
// A kept frame holds alive at most about four times its length: hyper's read
// buffers stay within about twice the read size.
const _: () = assert!(KEPT_FRAME * 2 >= crate::listener::MAX_CONNECTION_BUFFER);
/// Room reserved for copied frames is at most this (an announced length is a
/// claim, not data).
const RESERVED: usize = 256 * 1024;
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
    /// The length the request announced (0 if none).
    announced: usize,
    /// Every frame after the first is copied, and the first joins them.
    join: bool,
}

impl Gathered {
    /// For a body of `announced` bytes (0 if not announced), kept as frames.
    pub(super) fn new(announced: u64) -> Gathered {
        Gathered {
            announced: usize::try_from(announced).unwrap_or(usize::MAX),
            ..Gathered::default()
        }
    }

    /// For a body to be parsed whole: joined as it comes, in room reserved
    /// from the announced length.
    pub(super) fn joined(announced: u64) -> Gathered {
        Gathered {
            join: true,
            ..Gathered::new(announced)
        }
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn push(&mut self, data: Bytes) {
        if data.is_empty() {
            return;
        }
        self.len += data.len();
        if self.parts.is_empty() && self.small.is_empty() {
            self.parts.push(data);
            return;
        }
        if !self.join && data.len() >= KEPT_FRAME && self.parts.len() < KEPT_PARTS {
            self.end_small_run();
            self.parts.push(data);
            return;
        }
        if self.small.is_empty() {
            let room = self
                .announced
                .saturating_sub(self.len - data.len())
                .min(RESERVED);
            self.small.reserve(room.max(data.len()));
            if self.join {
                // The first frame goes first into the one buffer.
                for first in self.parts.drain(..) {
                    self.small.reserve(first.len());
                    self.small.extend_from_slice(&first);
                }
            }
        }
        self.small.extend_from_slice(&data);
    }

    fn end_small_run(&mut self) {
        if !self.small.is_empty() {
            let mut run = std::mem::take(&mut self.small);
            // Room reserved for frames that came kept instead.
            run.shrink_to_fit();
            self.parts.push(Bytes::from(run));
        }
    }

    /// The parts, in order (none for an empty body).
    pub(super) fn into_parts(mut self) -> Vec<Bytes> {
        self.end_small_run();
        self.parts
    }

    /// The whole body in one buffer: the one frame as it came, or the parts
    /// joined (without a further copy when gathered [`Gathered::joined`]).
    pub(super) fn into_bytes(self) -> Bytes {
        join(&self.into_parts())
    }
}

/// `parts` in one buffer (without a copy when there is one part).
pub(super) fn join(parts: &[Bytes]) -> Bytes {
    if let [] | [_] = parts {
        return parts.first().cloned().unwrap_or_default();
    }
    let mut joined = Vec::with_capacity(parts.iter().map(Bytes::len).sum());
    for part in parts {
        joined.extend_from_slice(part);
    }
    Bytes::from(joined)
}

/// The SOAP version of a body held in parts: from its first part, or, when that
/// part ends before the document element's start tag does, from them all.
pub(super) fn sniff_version(parts: &[Bytes]) -> Option<crate::wss::SoapVersion> {
    let first = crate::wss::sniff_version(parts.first()?);
    if first.is_some() || parts.len() == 1 {
        return first;
    }
    crate::wss::sniff_version(&join(parts))
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

    /// The two start at the same byte: one is the other, not a copy.
    fn same_slice(a: &Bytes, b: &Bytes) -> bool {
        a.as_ptr() == b.as_ptr()
    }

    #[test]
    fn one_frame_is_kept_as_it_came() {
        let buffer = Bytes::from(vec![7u8; 32 * 1024]);
        let frame = frame_of(&buffer, 100, 2000);
        let mut gathered = Gathered::default();
        gathered.push(frame.clone());
        assert_eq!(gathered.len(), 2000);
        assert!(same_slice(&gathered.into_bytes(), &frame));
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
        assert!(same_slice(&parts[0], &first));
        assert!(!same_slice(&parts[1], &small[0]), "small frames are copied");
        assert!(same_slice(&parts[2], &large));
        assert_eq!(join(&parts), buffer.slice(..130 + KEPT_FRAME + 5));
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
                .filter(|p| kept_frames.iter().any(|f| same_slice(p, f)))
                .count();
            assert!(aliased <= KEPT_PARTS, "{label}: {aliased} frames kept");
            for part in &parts[1..] {
                let copied = !kept_frames.iter().any(|f| same_slice(part, f));
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
        assert!(join(&[]).is_empty());
    }

    #[test]
    fn a_body_to_parse_whole_is_one_buffer() {
        let buffer = Bytes::from((0..32 * 1024).map(|i| (i % 199) as u8).collect::<Vec<u8>>());
        let mut gathered = Gathered::joined(30_000);
        let mut at = 0;
        for size in [100, 20_000, 10, 9_000] {
            gathered.push(frame_of(&buffer, at, size));
            at += size;
        }
        let parts = gathered.into_parts();
        assert_eq!(parts.len(), 1, "joined as it came");
        assert_eq!(parts[0], buffer.slice(..at));
        let mut one = Gathered::joined(100);
        let frame = frame_of(&buffer, 5, 100);
        one.push(frame.clone());
        assert!(
            same_slice(&one.into_bytes(), &frame),
            "one frame is not copied"
        );
    }

    #[test]
    fn the_version_is_found_wherever_the_first_frame_ends() {
        let envelope = Bytes::from_static(
            b"<?xml version=\"1.0\"?><s:Envelope xmlns:s=\"http://www.w3.org/2003/05/soap-envelope\"><s:Body><a/></s:Body></s:Envelope>",
        );
        // Every cut from the first byte to just past the root's start tag.
        let root_end = envelope.windows(2).position(|w| w == b"\">").unwrap() + 2;
        for cut in 1..=root_end {
            let parts = [envelope.slice(..cut), envelope.slice(cut..)];
            assert_eq!(
                sniff_version(&parts),
                Some(crate::wss::SoapVersion::Soap12),
                "first frame of {cut} bytes"
            );
        }
        assert_eq!(sniff_version(&[]), None);
    }

    #[test]
    fn empty_parts_and_buffers_read_as_nothing() {
        let parts = [
            Bytes::from_static(b"ab"),
            Bytes::new(),
            Bytes::from_static(b"c"),
        ];
        let mut reader = PartsReader::new(&parts);
        assert_eq!(reader.read(&mut []).unwrap(), 0);
        let mut all = Vec::new();
        reader.read_to_end(&mut all).unwrap();
        assert_eq!(all, b"abc");
        assert_eq!(PartsReader::new(&[]).read(&mut [0u8; 4]).unwrap(), 0);
    }

    /// hyper ends a body when `is_end_stream` says so: it must agree with the
    /// size hint after every frame.
    #[test]
    fn the_sent_body_ends_with_its_last_part() {
        let parts = vec![Bytes::from_static(b"abc"), Bytes::from_static(b"de")];
        let mut body = parts_body(parts);
        let mut context = Context::from_waker(std::task::Waker::noop());
        for left in [2u64, 0] {
            assert!(!body.is_end_stream());
            let Poll::Ready(Some(Ok(frame))) = Pin::new(&mut body).poll_frame(&mut context) else {
                panic!("a frame is ready");
            };
            assert!(frame.is_data());
            assert_eq!(body.size_hint().exact(), Some(left));
        }
        assert!(body.is_end_stream());
        assert!(matches!(
            Pin::new(&mut body).poll_frame(&mut context),
            Poll::Ready(None)
        ));
        assert!(parts_body(Vec::new()).is_end_stream());
    }
}
