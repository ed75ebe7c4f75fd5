//! The Body's content, checked and encrypted without parser events.
//!
//! Inside the Body only a few things matter: that the content is well-formed XML
//! (the receiver will parse it after decryption), that every prefix it uses is
//! declared, how deep it nests, and where the Body ends. The top-level elements
//! are rewritten to carry the namespaces in scope at the Body; every other byte
//! is handed to the cipher unchanged, in short runs, and the cipher encrypts a
//! block after each token (see `cipher::stepped`).
//!
//! [`Scanner`] reads from the same input as the event parser, through
//! [`Rewind`]: it stops at the Body's end tag and gives the unread bytes back, so
//! the parser sees `</Body>` next as if it had read the content itself.

mod bytes;
mod seen;
mod tags;
mod top_level;

pub(crate) use bytes::first_invalid_character;
use bytes::*;
use seen::*;
use top_level::*;

use std::io::{self, BufRead, Read, Write};
use std::ops::Range;

use memchr::{memchr, memchr3, memmem};

use super::{
    Binding, EncryptError, Limits, NamespaceScopes, PrefixMap, XmlLimit, has_duplicate,
    is_xml_char, is_xml_name, namespace_binding, split_qname,
};
use crate::wss::algorithms::ns;
use crate::wss::cipher::EncryptingWriter;

/// A buffered reader that can be given bytes back.
pub(super) struct Rewind<R> {
    front: Vec<u8>,
    pos: usize,
    inner: R,
}

impl<R> Rewind<R> {
    pub(super) fn new(inner: R) -> Self {
        Rewind {
            front: Vec::new(),
            pos: 0,
            inner,
        }
    }

    /// Put `bytes` in front of what is still unread.
    fn unread(&mut self, bytes: &[u8]) {
        let mut front = Vec::with_capacity(bytes.len() + self.front.len() - self.pos);
        front.extend_from_slice(bytes);
        front.extend_from_slice(&self.front[self.pos..]);
        self.front = front;
        self.pos = 0;
    }
}

impl<R: BufRead> Read for Rewind<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.front.len() {
            // Lets a `BufReader` hand a large read straight to its source.
            return self.inner.read(out);
        }
        let n = {
            let available = self.fill_buf()?;
            let n = available.len().min(out.len());
            out[..n].copy_from_slice(&available[..n]);
            n
        };
        self.consume(n);
        Ok(n)
    }
}

impl<R: BufRead> BufRead for Rewind<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.pos < self.front.len() {
            return Ok(&self.front[self.pos..]);
        }
        self.inner.fill_buf()
    }

    fn consume(&mut self, amount: usize) {
        if self.pos < self.front.len() {
            self.pos += amount;
            if self.pos >= self.front.len() {
                self.front = Vec::new();
                self.pos = 0;
            }
        } else {
            self.inner.consume(amount);
        }
    }
}

/// What the scan of one Body found.
pub(super) struct BodyScan {
    /// Bytes consumed from the input (the Body's content, without its end tag).
    pub scanned: u64,
    /// The Body holds at least one element.
    pub saw_element: bool,
    /// Elements in the document so far (those before the Body included).
    pub elements: u64,
}

/// Where the scanner stands in the Body when it starts.
pub(super) struct BodyStart {
    /// Stream position of the first byte after the Body's start tag.
    pub position: u64,
    /// Elements open at that point (Envelope and Body).
    pub depth: usize,
    pub limits: Limits,
    /// Elements in the document before the Body's content.
    pub elements: u64,
}

/// The read buffer starts small (most messages are a few KiB and the buffer is
/// zeroed when it grows) and grows to `RUN_BUFFER` once a whole buffer has been
/// consumed; a single token larger than that grows it further.
const FIRST_BUFFER: usize = 8 * 1024;
const RUN_BUFFER: usize = 64 * 1024;
/// A top-level element of the Body is held back up to this size (or twice the
/// declarations in scope, if more) to redeclare only the namespaces it uses.
/// Small, because nothing of a held element can be encrypted before its end.
const HOLD_BACK: usize = 4 * 1024;
/// Accepted bytes go to the cipher (or the hold) in runs of about this length,
/// so that the cipher's steps follow close behind the scan.
const HANDOFF: usize = 2 * 1024;
/// Redeclared namespaces may add this much to the Body, plus half the input.
const REDECLARATION_ALLOWANCE: u64 = 8 * 1024;
/// Prefixes remembered as declared (see `Scanner::known`).
const KNOWN_PREFIXES: usize = 8;

/// An error, boxed so that the scanner's results fit in two registers.
type Fault = Box<EncryptError>;

/// What a token parser found at `pos`.
enum Step {
    /// The token ends before this index.
    Next(usize),
    /// The token does not end within the bytes read so far.
    More,
    /// `pos` is the Body's own end tag.
    BodyEnd,
}

pub(super) struct Scanner<'a, R, W: Write> {
    input: &'a mut Rewind<R>,
    /// The Body's cipher, stepped after each token.
    out: &'a mut EncryptingWriter<W>,
    scopes: &'a mut NamespaceScopes,
    /// Bindings in scope at the Body, added to each top-level element.
    context: Vec<Binding>,
    start: BodyStart,
    buf: Vec<u8>,
    /// Next byte to look at.
    pos: usize,
    /// Bytes read into `buf`.
    len: usize,
    /// `buf[..checked]` is valid UTF-8 holding only XML characters.
    checked: usize,
    /// `buf[run..pos]` is accepted but not yet written.
    run: usize,
    /// Input position of `buf[0]`, counted from the scan's start.
    offset: u64,
    eof: bool,
    /// Names of the open elements, concatenated, and where each ends.
    names: Vec<u8>,
    name_ends: Vec<usize>,
    /// Attributes of the tag being parsed.
    attributes: Vec<Attribute>,
    saw_element: bool,
    /// Start tags already checked, to recognise repeated ones.
    tags: SeenTags,
    /// Prefixes found declared while the bindings were at `known_generation`
    /// (a few, most recent first: a cache, not a set).
    known: Vec<Vec<u8>>,
    known_generation: u64,
    /// Elements in the document so far.
    elements: u64,
    /// Input position (counted like `offset`) where the current text run began.
    text_from: u64,
    /// What the context's namespaces look like, to redeclare the used ones.
    redeclare: Redeclaration,
    /// The top-level element being held back, and its bytes so far.
    held: Option<Held>,
    hold: Vec<u8>,
    /// The held top-level element just ended: release it.
    release_pending: bool,
}

impl<'a, R: BufRead, W: Write> Scanner<'a, R, W> {
    pub(super) fn new(
        input: &'a mut Rewind<R>,
        out: &'a mut EncryptingWriter<W>,
        scopes: &'a mut NamespaceScopes,
        start: BodyStart,
    ) -> Self {
        let context = scopes.in_scope();
        let mut by_prefix = PrefixMap::with_capacity_and_hasher(context.len(), Default::default());
        let mut default = None;
        let mut bytes = 0;
        for (i, b) in context.iter().enumerate() {
            if b.prefix.is_empty() {
                default = Some(i);
            } else {
                by_prefix.insert(b.prefix.as_bytes().into(), i);
            }
            bytes += declaration_len(b);
        }
        let redeclare = Redeclaration {
            by_prefix,
            default,
            bytes,
            used_by: vec![0; context.len()],
            used: Vec::new(),
            element: 0,
            written: 0,
        };
        let elements = start.elements;
        Scanner {
            input,
            out,
            scopes,
            context,
            start,
            buf: vec![0; FIRST_BUFFER],
            pos: 0,
            len: 0,
            checked: 0,
            run: 0,
            offset: 0,
            eof: false,
            names: Vec::new(),
            name_ends: Vec::new(),
            attributes: Vec::new(),
            saw_element: false,
            tags: SeenTags::default(),
            known: Vec::new(),
            known_generation: u64::MAX,
            elements,
            text_from: 0,
            redeclare,
            held: None,
            hold: Vec::new(),
            release_pending: false,
        }
    }

    fn over(&self, limit: XmlLimit, value: u64, index: usize) -> Fault {
        Box::new(EncryptError::LimitExceeded {
            limit,
            value,
            position: self.position_of(index),
        })
    }

    fn max_text(&self) -> u64 {
        self.start.limits.max_text_length.unwrap_or(u64::MAX)
    }

    /// Character data from `text_from` up to `index` must fit `max_text_length`.
    #[inline]
    fn check_text_run(&self, index: usize) -> Result<(), Fault> {
        let run = (self.offset + index as u64).saturating_sub(self.text_from);
        if run > self.max_text() {
            return Err(self.over(XmlLimit::MaxTextLength, self.max_text(), index));
        }
        Ok(())
    }

    /// A name of `len` bytes so far must fit `max_name_length`.
    #[inline]
    fn check_name_length(&self, len: usize, index: usize) -> Result<(), Fault> {
        let max = self.start.limits.max_name_length;
        if len > max {
            return Err(self.over(XmlLimit::MaxNameLength, max as u64, index));
        }
        Ok(())
    }

    fn known_prefix(&self, prefix: &[u8]) -> bool {
        self.known_generation == self.scopes.generation
            && self.known.iter().any(|k| same(k, prefix))
    }

    fn position_of(&self, index: usize) -> u64 {
        self.start.position + self.offset + index as u64
    }

    fn malformed_at(&self, index: usize, reason: impl Into<String>) -> Fault {
        Box::new(EncryptError::Malformed {
            position: self.position_of(index),
            reason: reason.into(),
        })
    }

    /// Scan up to the Body's end tag, which is left unread.
    pub(super) fn run(mut self) -> Result<BodyScan, EncryptError> {
        self.scan().map_err(|fault| *fault)
    }

    fn scan(&mut self) -> Result<BodyScan, Fault> {
        loop {
            let text = &self.buf[self.pos..self.checked];
            let step = match find_markup(text) {
                Some(i) if text[i] == b'<' => {
                    self.pos += i;
                    self.check_text_run(self.pos)?;
                    match self.markup()? {
                        Step::Next(next) => {
                            self.text_from = self.offset + next as u64;
                            Step::Next(next)
                        }
                        other => other,
                    }
                }
                Some(i) if text[i] == b'&' => {
                    self.pos += i;
                    self.reference()?
                }
                Some(i) => {
                    if text[i..].starts_with(b"]]>") {
                        return Err(self.malformed_at(self.pos + i, "']]>' in character data"));
                    }
                    if text.len() - i < 3 && text[i..].iter().all(|&b| b == b']') {
                        // `]` or `]]` at the end: the next read may bring `>`.
                        self.pos += i;
                        Step::More
                    } else {
                        Step::Next(self.pos + i + 1)
                    }
                }
                None => {
                    self.pos = self.checked;
                    self.check_text_run(self.pos)?;
                    Step::More
                }
            };
            match step {
                Step::Next(next) => {
                    self.pos = next;
                    // One block of the cipher's work beside the scan's.
                    self.out
                        .step()
                        .map_err(|e| Box::new(EncryptError::Write(e)))?;
                    if self.pos - self.run >= HANDOFF {
                        self.flush_run()?;
                    }
                    if std::mem::take(&mut self.release_pending) {
                        self.flush_run()?;
                        self.release_held()?;
                    }
                }
                Step::More => {
                    let available = self.len - self.pos;
                    let want = (available * 2).max(available + 1);
                    if !self.fill(want)? {
                        return Err(
                            self.malformed_at(self.len, "the document ends inside the Body")
                        );
                    }
                }
                Step::BodyEnd => {
                    self.flush_run()?;
                    self.input.unread(&self.buf[self.pos..self.len]);
                    return Ok(BodyScan {
                        scanned: self.offset + self.pos as u64,
                        saw_element: self.saw_element,
                        elements: self.elements,
                    });
                }
            }
        }
    }

    fn flush_run(&mut self) -> Result<(), Fault> {
        if self.run < self.pos {
            if self.held.is_some() {
                self.hold.extend_from_slice(&self.buf[self.run..self.pos]);
                if self.hold.len() > HOLD_BACK.max(2 * self.redeclare.bytes) {
                    self.run = self.pos;
                    return self.release_overflowing();
                }
            } else {
                self.out
                    .write_all(&self.buf[self.run..self.pos])
                    .map_err(|e| Box::new(EncryptError::Write(e)))?;
            }
        }
        self.run = self.pos;
        Ok(())
    }

    /// Read until at least `want` bytes from `pos` are buffered, or the input
    /// ends. Returns whether anything new became readable.
    fn fill(&mut self, want: usize) -> Result<bool, Fault> {
        self.flush_run()?;
        if self.pos > 0 {
            self.buf.copy_within(self.pos..self.len, 0);
            self.offset += self.pos as u64;
            self.len -= self.pos;
            self.checked -= self.pos;
            self.pos = 0;
            self.run = 0;
        }
        if self.buf.len() < want {
            self.buf.resize(want.max(self.buf.len() * 2), 0);
        } else if self.buf.len() < RUN_BUFFER && self.offset >= self.buf.len() as u64 {
            // A whole buffer was consumed already: a large Body, read in long runs.
            self.buf.resize(RUN_BUFFER, 0);
        }
        let before = self.checked;
        while !self.eof && (self.len < want.min(self.buf.len()) || self.checked == before) {
            if self.len == self.buf.len() {
                // Full of a character split by the buffer's end: cannot happen with
                // a buffer larger than 4 bytes, but never loop on it.
                break;
            }
            let n = loop {
                match self.input.read(&mut self.buf[self.len..]) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(Box::new(EncryptError::from_read(e))),
                }
            };
            if n == 0 {
                self.eof = true;
            }
            self.len += n;
            self.check_new()?;
        }
        Ok(self.checked > before)
    }

    /// Check newly read bytes: UTF-8, and only characters XML allows.
    fn check_new(&mut self) -> Result<(), Fault> {
        let new = &self.buf[self.checked..self.len];
        let valid = match std::str::from_utf8(new) {
            Ok(_) => new.len(),
            Err(e) if e.error_len().is_none() && !self.eof => e.valid_up_to(),
            Err(e) => {
                return Err(self.malformed_at(self.checked + e.valid_up_to(), "invalid UTF-8"));
            }
        };
        if let Some((i, reason)) = first_invalid_character(&new[..valid]) {
            return Err(self.malformed_at(self.checked + i, reason));
        }
        self.checked += valid;
        Ok(())
    }

    /// `&…;` at `pos`. Its name may be any length up to `max_name_length`
    /// (`&#x000…041;` is well-formed however many zeros lead).
    fn reference(&self) -> Result<Step, Fault> {
        let rest = &self.buf[self.pos..self.checked];
        if let Some(length) = common_reference(rest) {
            self.check_name_length(length - 2, self.pos)?;
            return Ok(Step::Next(self.pos + length));
        }
        let Some(end) = rest[1..].iter().position(|&b| !is_reference_byte(b)) else {
            self.check_name_length(rest.len() - 1, self.pos)?;
            if !self.eof {
                return Ok(Step::More);
            }
            return Err(self.malformed_at(self.pos, "unterminated reference"));
        };
        self.check_name_length(end, self.pos)?;
        if rest[1 + end] != b';' {
            return Err(self.malformed_at(self.pos, "unterminated reference"));
        }
        check_reference(&rest[1..1 + end]).map_err(|reason| self.malformed_at(self.pos, reason))?;
        Ok(Step::Next(self.pos + end + 2))
    }

    /// `<…` at `pos`.
    fn markup(&mut self) -> Result<Step, Fault> {
        let rest = &self.buf[self.pos..self.checked];
        if rest.len() < 2 {
            return Ok(Step::More);
        }
        match rest[1] {
            b'/' => self.end_tag(),
            b'!' => self.declaration(),
            b'?' => self.processing_instruction(),
            _ => self.start_tag(),
        }
    }

    fn end_tag(&mut self) -> Result<Step, Fault> {
        if self.name_ends.is_empty() {
            return Ok(Step::BodyEnd);
        }
        let rest = &self.buf[self.pos..self.checked];
        let depth = self.name_ends.len();
        let open_from = if depth >= 2 {
            self.name_ends[depth - 2]
        } else {
            0
        };
        let open = &self.names[open_from..];
        // Usually `</name>` exactly: compare in place before looking for `>`.
        let exact = open.len() + 2;
        let gt = if rest.get(exact) == Some(&b'>') && same(&rest[2..exact], open) {
            exact
        } else {
            match find(b'>', rest) {
                Some(gt) => gt,
                None => return Ok(Step::More),
            }
        };
        let name = rest[2..gt].trim_ascii_end();
        if !same(name, open) {
            return Err(self.malformed_at(
                self.pos,
                format!(
                    "end tag </{}> does not match <{}>",
                    String::from_utf8_lossy(name),
                    String::from_utf8_lossy(open)
                ),
            ));
        }
        self.names.truncate(open_from);
        self.name_ends.pop();
        self.scopes.pop();
        if self.name_ends.is_empty() && self.held.is_some() {
            self.release_pending = true;
        }
        Ok(Step::Next(self.pos + gt + 1))
    }

    /// `<!--`, `<![CDATA[` or a DOCTYPE.
    fn declaration(&self) -> Result<Step, Fault> {
        let rest = &self.buf[self.pos..self.checked];
        let complete = |prefix: &[u8]| -> Option<bool> {
            if rest.len() >= prefix.len() {
                Some(rest.starts_with(prefix))
            } else if prefix.starts_with(rest) {
                None
            } else {
                Some(false)
            }
        };
        match complete(b"<!--") {
            None => return Ok(Step::More),
            Some(true) => {
                let Some(end) = memmem::find(&rest[4..], b"-->") else {
                    return Ok(Step::More);
                };
                let content = &rest[4..4 + end];
                if memmem::find(content, b"--").is_some() || content.ends_with(b"-") {
                    return Err(self.malformed_at(self.pos, "'--' inside a comment"));
                }
                return Ok(Step::Next(self.pos + 4 + end + 3));
            }
            Some(false) => {}
        }
        match complete(b"<![CDATA[") {
            None => return Ok(Step::More),
            Some(true) => {
                return match memmem::find(&rest[9..], b"]]>") {
                    Some(end) if end as u64 > self.max_text() => {
                        Err(self.over(XmlLimit::MaxTextLength, self.max_text(), self.pos))
                    }
                    Some(end) => Ok(Step::Next(self.pos + 9 + end + 3)),
                    None if (rest.len() - 9) as u64 > self.max_text() => {
                        Err(self.over(XmlLimit::MaxTextLength, self.max_text(), self.pos))
                    }
                    None => Ok(Step::More),
                };
            }
            Some(false) => {}
        }
        match complete(b"<!DOCTYPE") {
            None => Ok(Step::More),
            Some(true) => Err(Box::new(EncryptError::Doctype {
                position: self.position_of(self.pos),
            })),
            Some(false) => Err(self.malformed_at(self.pos, "invalid markup after '<!'")),
        }
    }

    fn processing_instruction(&self) -> Result<Step, Fault> {
        let rest = &self.buf[self.pos..self.checked];
        let Some(end) = memmem::find(&rest[2..], b"?>") else {
            return Ok(Step::More);
        };
        let content = &rest[2..2 + end];
        let target_len = content
            .iter()
            .position(|b| is_space(*b))
            .unwrap_or(content.len());
        let target = std::str::from_utf8(&content[..target_len]).unwrap_or("");
        if target.eq_ignore_ascii_case("xml") {
            return Err(self.malformed_at(self.pos, "misplaced XML declaration"));
        }
        if !is_xml_name(target) || target.contains(':') {
            return Err(self.malformed_at(self.pos, "invalid processing instruction target"));
        }
        Ok(Step::Next(self.pos + 2 + end + 2))
    }
}

/// A namespace declaration as written on a top-level element (` xmlns:p="…"`).
fn declaration(b: &Binding) -> String {
    let value = b.raw.replace('"', "&quot;");
    if b.prefix.is_empty() {
        format!(r#" xmlns="{value}""#)
    } else {
        format!(r#" xmlns:{}="{value}""#, b.prefix)
    }
}

/// The length of [`declaration`]`(b)`, without writing it.
fn declaration_len(b: &Binding) -> usize {
    let quotes = b.raw.bytes().filter(|&c| c == b'"').count();
    let colon = usize::from(!b.prefix.is_empty());
    " xmlns=\"\"".len() + colon + b.prefix.len() + b.raw.len() + 5 * quotes
}

/// Bytes that may be part of a reference's or a prefix's name: ASCII name
/// bytes except `:`, `#` and every byte of a non-ASCII character.
fn is_reference_byte(b: u8) -> bool {
    b >= 0x80 || b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'#')
}

/// Why the references of an attribute value are refused.
pub(super) enum ReferenceError {
    /// A reference's name is longer than `max_name_length`.
    TooLong,
    Invalid(String),
}

/// Check every reference in an attribute value (`&amp;`, `&#x41;`): each is
/// terminated, well-formed and refers to a character XML allows. On error,
/// the index of the `&`.
pub(super) fn check_references(
    value: &[u8],
    max_name_length: usize,
) -> Result<(), (usize, ReferenceError)> {
    let mut at = 0;
    while let Some(amp) = find(b'&', &value[at..]) {
        let amp = at + amp;
        let from = amp + 1;
        let Some(semicolon) = find(b';', &value[from..]) else {
            return Err((
                amp,
                ReferenceError::Invalid("unterminated reference".into()),
            ));
        };
        if semicolon > max_name_length {
            return Err((amp, ReferenceError::TooLong));
        }
        check_reference(&value[from..from + semicolon])
            .map_err(|reason| (amp, ReferenceError::Invalid(reason)))?;
        at = from + semicolon + 1;
    }
    Ok(())
}

/// Bytes already checked to be UTF-8 (by [`Scanner::check_new`]).
fn as_str(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap_or_default()
}

#[cfg(test)]
mod tests;
