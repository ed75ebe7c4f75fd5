//! What arrives before the XML parser sees a byte: the size limit, the byte-order
//! mark and the declared encoding.
//!
//! wssgate parses and writes UTF-8. A UTF-8 document (with or without BOM) passes
//! through untouched. ISO-8859-1 (and its aliases) and UTF-16 (by BOM) are transcoded
//! to UTF-8 on the fly, and the XML declaration is rewritten to say `UTF-8`; any other
//! declared encoding is refused with `UnsupportedEncoding`.

use std::io::{self, BufRead, BufReader, Read};

/// Marker carried inside an `io::Error` when the input passes its size limit.
#[derive(Debug, thiserror::Error)]
#[error("input is larger than {limit} bytes")]
pub struct InputTooLarge {
    pub limit: u64,
}

/// A reader that fails with [`InputTooLarge`] once more than `limit` bytes are read.
pub struct LimitedReader<R> {
    inner: R,
    remaining: u64,
    limit: u64,
    read: u64,
}

impl<R: Read> LimitedReader<R> {
    pub fn new(inner: R, limit: Option<u64>) -> Self {
        let limit = limit.unwrap_or(u64::MAX);
        LimitedReader {
            inner,
            remaining: limit,
            limit,
            read: 0,
        }
    }
}

impl<R: Read> Read for LimitedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if n as u64 > self.remaining {
            self.remaining = 0;
            return Err(io::Error::other(InputTooLarge { limit: self.limit }));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// The encoding the document arrived in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceEncoding {
    Utf8,
    Latin1,
    Utf16Le,
    Utf16Be,
}

impl SourceEncoding {
    pub fn is_transcoded(self) -> bool {
        self != SourceEncoding::Utf8
    }
}

/// How the input was prepared for the parser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputInfo {
    pub encoding: SourceEncoding,
    /// A UTF-8 byte-order mark was present (it is written back to the output).
    pub utf8_bom: bool,
}

/// The declared encoding is one wssgate does not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unsupported encoding {0:?} (UTF-8 is read as is; ISO-8859-1 and UTF-16 are transcoded to UTF-8)"
)]
pub struct UnsupportedEncoding(pub String);

/// A UTF-8 reader over the document, and how it was made.
pub type Utf8Input<'a> = (Box<dyn BufRead + 'a>, InputInfo);

/// The input could not be read, or is in an encoding wssgate does not read.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("{0}")]
    Unsupported(#[from] UnsupportedEncoding),
    /// The byte-order mark and the declaration disagree about the encoding.
    #[error("a UTF-8 byte-order mark, but the declaration says encoding {0:?}")]
    Contradictory(String),
}

/// Sniff the BOM and XML declaration and return a UTF-8 reader over the document.
pub fn utf8_reader<'a, R: Read + 'a>(input: R) -> Result<Utf8Input<'a>, InputError> {
    utf8_reader_sized(input, None)
}

/// [`utf8_reader`] for a document of `expected` bytes, when that is known (it is
/// in memory): its read buffer is no larger than the document. A buffer is
/// zeroed when first filled (`Read` implementations outside `std` cannot be
/// handed uninitialized memory), which for a 1 KiB message cost more than
/// parsing its Envelope.
pub fn utf8_reader_sized<'a, R: Read + 'a>(
    mut input: R,
    expected: Option<usize>,
) -> Result<Utf8Input<'a>, InputError> {
    let mut head = Vec::with_capacity(512);
    (&mut input).take(512).read_to_end(&mut head)?;
    let (skip, encoding, utf8_bom) = source_encoding(&head)?;
    head.drain(..skip);
    let whole = io::Cursor::new(head).chain(input);
    let info = InputInfo { encoding, utf8_bom };
    let reader: Box<dyn BufRead + 'a> = if encoding.is_transcoded() {
        Box::new(BufReader::with_capacity(
            64 * 1024,
            Transcoder::new(whole, encoding),
        ))
    } else {
        // Half the Body scanner's read size: once the parser has drained it, the
        // scanner's reads go straight to the source instead of through a copy.
        let capacity = expected.map_or(UTF8_READ_BUFFER, |n| {
            n.saturating_add(1).clamp(1024, UTF8_READ_BUFFER)
        });
        Box::new(BufReader::with_capacity(capacity, whole))
    };
    Ok((reader, info))
}

/// Whether [`utf8_reader`] would hand `head` on unchanged: no byte order mark,
/// not UTF-16, and no declared encoding other than UTF-8 (or ASCII).
pub fn is_utf8_as_is(head: &[u8]) -> bool {
    matches!(
        source_encoding(&head[..head.len().min(512)]),
        Ok((0, SourceEncoding::Utf8, false))
    )
}

/// How a document starting with `head` (its first 512 bytes at most) is read:
/// the bytes of its byte order mark, its encoding, and whether the mark was
/// UTF-8's.
fn source_encoding(head: &[u8]) -> Result<(usize, SourceEncoding, bool), InputError> {
    Ok(if head.starts_with(&[0xEF, 0xBB, 0xBF]) {
        // Receivers believe the declaration once the mark is gone (or the mark
        // and ignore the declaration): the two must agree.
        if let Some(declared) = declared_encoding(&head[3..])
            && !is_utf8_name(&declared)
        {
            return Err(InputError::Contradictory(declared));
        }
        (3, SourceEncoding::Utf8, true)
    } else if head.starts_with(&[0xFF, 0xFE]) {
        (2, SourceEncoding::Utf16Le, false)
    } else if head.starts_with(&[0xFE, 0xFF]) {
        (2, SourceEncoding::Utf16Be, false)
    } else if head.starts_with(&[0x3C, 0x00, 0x3F, 0x00]) {
        (0, SourceEncoding::Utf16Le, false)
    } else if head.starts_with(&[0x00, 0x3C, 0x00, 0x3F]) {
        (0, SourceEncoding::Utf16Be, false)
    } else {
        let declared = declared_encoding(head);
        let encoding = match declared.as_deref().map(str::to_ascii_lowercase).as_deref() {
            None => SourceEncoding::Utf8,
            Some(name) if is_utf8_name(name) => SourceEncoding::Utf8,
            Some("iso-8859-1" | "iso8859-1" | "latin1" | "latin-1" | "l1" | "iso_8859-1") => {
                SourceEncoding::Latin1
            }
            Some(_) => return Err(UnsupportedEncoding(declared.unwrap_or_default()).into()),
        };
        (0, encoding, false)
    })
}

/// The read buffer of a UTF-8 document of unknown size.
const UTF8_READ_BUFFER: usize = 32 * 1024;

/// Names of encodings read as UTF-8 (ASCII is a subset).
fn is_utf8_name(name: &str) -> bool {
    matches!(
        name.to_ascii_lowercase().as_str(),
        "utf-8" | "utf8" | "us-ascii" | "ascii"
    )
}

/// The `encoding` pseudo-attribute of an XML declaration at the start of `head`.
pub fn declared_encoding(head: &[u8]) -> Option<String> {
    // `<?xml` followed by whitespace: `<?xml-stylesheet …?>` is a PI, not a
    // declaration, whatever pseudo-attributes it carries.
    if !head.starts_with(b"<?xml") || !head.get(5).is_some_and(u8::is_ascii_whitespace) {
        return None;
    }
    let end = head.windows(2).position(|w| w == b"?>")?;
    let decl = std::str::from_utf8(&head[..end]).ok()?;
    let at = decl.find("encoding")?;
    let rest = decl[at + "encoding".len()..]
        .trim_start()
        .strip_prefix('=')?;
    let rest = rest.trim_start();
    let quote = rest.chars().next()?;
    if quote != '"' && quote != '\'' {
        return None;
    }
    let value = &rest[1..];
    let close = value.find(quote)?;
    Some(value[..close].to_string())
}

/// Replace the value of `encoding` in an XML declaration's content with `UTF-8`.
pub fn declaration_as_utf8(decl: &str) -> String {
    let Some(at) = decl.find("encoding") else {
        return decl.to_string();
    };
    let after = &decl[at..];
    let Some(q1) = after.find(['"', '\'']) else {
        return decl.to_string();
    };
    let quote = after.as_bytes()[q1] as char;
    let Some(q2) = after[q1 + 1..].find(quote) else {
        return decl.to_string();
    };
    let start = at + q1 + 1;
    let end = start + q2;
    format!("{}UTF-8{}", &decl[..start], &decl[end..])
}

/// Decodes Latin-1 or UTF-16 into UTF-8 as it is read.
struct Transcoder<R> {
    inner: R,
    encoding: SourceEncoding,
    raw: Vec<u8>,
    /// Bytes of an incomplete UTF-16 code unit or surrogate pair kept for the next read.
    leftover: Vec<u8>,
    out: Vec<u8>,
    out_pos: usize,
}

impl<R: Read> Transcoder<R> {
    fn new(inner: R, encoding: SourceEncoding) -> Self {
        Transcoder {
            inner,
            encoding,
            raw: vec![0u8; 32 * 1024],
            leftover: Vec::new(),
            out: Vec::new(),
            out_pos: 0,
        }
    }

    fn refill(&mut self) -> io::Result<bool> {
        let n = self.inner.read(&mut self.raw)?;
        self.out.clear();
        self.out_pos = 0;
        if n == 0 {
            if !self.leftover.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "input ends inside a UTF-16 character",
                ));
            }
            return Ok(false);
        }
        match self.encoding {
            SourceEncoding::Latin1 => {
                for &b in &self.raw[..n] {
                    let mut tmp = [0u8; 2];
                    self.out
                        .extend_from_slice(char::from(b).encode_utf8(&mut tmp).as_bytes());
                }
            }
            SourceEncoding::Utf16Le | SourceEncoding::Utf16Be => {
                let mut bytes = std::mem::take(&mut self.leftover);
                bytes.extend_from_slice(&self.raw[..n]);
                let whole = bytes.len() / 2 * 2;
                let mut units: Vec<u16> = bytes[..whole]
                    .chunks_exact(2)
                    .map(|c| {
                        if self.encoding == SourceEncoding::Utf16Le {
                            u16::from_le_bytes([c[0], c[1]])
                        } else {
                            u16::from_be_bytes([c[0], c[1]])
                        }
                    })
                    .collect();
                let mut keep = bytes[whole..].to_vec();
                // Keep a trailing high surrogate for the next read.
                if let Some(&last) = units.last()
                    && (0xD800..0xDC00).contains(&last)
                {
                    units.pop();
                    let mut k = bytes[whole - 2..whole].to_vec();
                    k.extend_from_slice(&keep);
                    keep = k;
                }
                self.leftover = keep;
                for c in char::decode_utf16(units) {
                    let c = c.map_err(|_| {
                        io::Error::new(io::ErrorKind::InvalidData, "invalid UTF-16 surrogate")
                    })?;
                    let mut tmp = [0u8; 4];
                    self.out
                        .extend_from_slice(c.encode_utf8(&mut tmp).as_bytes());
                }
            }
            SourceEncoding::Utf8 => self.out.extend_from_slice(&self.raw[..n]),
        }
        Ok(true)
    }
}

impl<R: Read> Read for Transcoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.out_pos == self.out.len() {
            if !self.refill()? {
                return Ok(0);
            }
        }
        let n = buf.len().min(self.out.len() - self.out_pos);
        buf[..n].copy_from_slice(&self.out[self.out_pos..self.out_pos + n]);
        self.out_pos += n;
        Ok(n)
    }
}
