//! The Body's content, checked and encrypted without parser events.
//!
//! Inside the Body only a few things matter: that the content is well-formed XML
//! (the receiver will parse it after decryption), that every prefix it uses is
//! declared, how deep it nests, and where the Body ends. The top-level elements
//! are rewritten to carry the namespaces in scope at the Body; every other byte
//! is handed to the cipher unchanged, in runs as long as the read buffer.
//!
//! [`Scanner`] reads from the same input as the event parser, through
//! [`Rewind`]: it stops at the Body's end tag and gives the unread bytes back, so
//! the parser sees `</Body>` next as if it had read the content itself.

use std::collections::HashMap;
use std::io::{self, BufRead, Read, Write};
use std::ops::Range;

use memchr::{memchr, memchr3, memmem};

use super::{
    Binding, EncryptError, Limits, NamespaceScopes, XmlLimit, has_duplicate, is_xml_char,
    is_xml_name, namespace_binding, split_qname,
};
use crate::wss::algorithms::ns;

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
const HOLD_BACK: usize = 64 * 1024;
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

pub(super) struct Scanner<'a, R, W> {
    input: &'a mut Rewind<R>,
    out: &'a mut W,
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

/// The bindings in scope at the Body, indexed for the top-level elements.
struct Redeclaration {
    /// Non-default prefixes of `context`, to their index.
    by_prefix: HashMap<Box<[u8]>, usize>,
    /// Index of the default namespace in `context`.
    default: Option<usize>,
    /// Bytes of all of the context's declarations, as written out.
    bytes: usize,
    /// Per context binding: the top-level element that last used it.
    used_by: Vec<u64>,
    used: Vec<usize>,
    /// Number of top-level elements so far (stamps `used_by`).
    element: u64,
    /// Bytes of declarations added to the Body so far.
    written: u64,
}

/// A top-level element of the Body whose start tag is not written yet.
struct Held {
    /// Length of its name (the tag is `hold[..1 + name_len]`, then the rest).
    name_len: usize,
    /// Prefixes the tag declares itself (sorted): not redeclared.
    own: Vec<String>,
    /// An unprefixed element is inside: the default namespace is used.
    uses_default: bool,
}

impl<'a, R: BufRead, W: Write> Scanner<'a, R, W> {
    pub(super) fn new(
        input: &'a mut Rewind<R>,
        out: &'a mut W,
        scopes: &'a mut NamespaceScopes,
        start: BodyStart,
    ) -> Self {
        let context = scopes.in_scope();
        let mut by_prefix = HashMap::with_capacity(context.len());
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

    fn start_tag(&mut self) -> Result<Step, Fault> {
        let tag = self.pos;
        let limit = self.checked;
        if !self.name_ends.is_empty()
            && let Some(seen) = self
                .tags
                .find(&self.buf[tag..limit], self.scopes.generation)
            && let Some(step) = self.seen_tag(tag, seen)?
        {
            return Ok(step);
        }
        let buf = &self.buf;
        let Some(name) = find_name_end(buf, tag + 1, limit) else {
            self.check_name_length(limit - tag - 1, tag)?;
            return Ok(Step::More);
        };
        let name_end = name.end;
        self.check_name_length(name_end - tag - 1, tag)?;
        if !name.is_qname(&buf[tag + 1..name_end]) {
            return Err(self.malformed_at(
                tag,
                format!(
                    "invalid element name {:?}",
                    String::from_utf8_lossy(&buf[tag + 1..name_end])
                ),
            ));
        }
        // Attributes, up to `>` or `/>`.
        self.attributes.clear();
        let mut i = name_end;
        let (close, empty, end) = loop {
            let space_from = i;
            while i < limit && is_space(buf[i]) {
                i += 1;
            }
            if i >= limit {
                return Ok(Step::More);
            }
            match buf[i] {
                b'>' => break (i, false, i + 1),
                b'/' => {
                    if i + 1 >= limit {
                        return Ok(Step::More);
                    }
                    if buf[i + 1] != b'>' {
                        return Err(self.malformed_at(i, "expected '>' after '/' in a tag"));
                    }
                    break (i, true, i + 2);
                }
                _ if i == space_from => {
                    return Err(self.malformed_at(i, "attributes must be separated by whitespace"));
                }
                _ => {}
            }
            let name_from = i;
            if self.attributes.len() == self.start.limits.max_attributes_per_element {
                return Err(self.over(
                    XmlLimit::MaxAttributesPerElement,
                    self.attributes.len() as u64,
                    tag,
                ));
            }
            let Some(attribute) = find_name_end(buf, i, limit) else {
                self.check_name_length(limit - name_from, name_from)?;
                return Ok(Step::More);
            };
            let name_to = attribute.end;
            self.check_name_length(name_to - name_from, name_from)?;
            i = name_to;
            while i < limit && is_space(buf[i]) {
                i += 1;
            }
            if i >= limit {
                return Ok(Step::More);
            }
            if !attribute.is_qname(&buf[name_from..name_to]) {
                return Err(self.malformed_at(
                    name_from,
                    format!(
                        "invalid attribute name {:?}",
                        String::from_utf8_lossy(&buf[name_from..name_to])
                    ),
                ));
            }
            if buf[i] != b'=' {
                return Err(self.malformed_at(i, "bad attribute: expected '=' after its name"));
            }
            i += 1;
            while i < limit && is_space(buf[i]) {
                i += 1;
            }
            if i >= limit {
                return Ok(Step::More);
            }
            let quote = buf[i];
            if quote != b'"' && quote != b'\'' {
                return Err(self.malformed_at(i, "bad attribute: value not quoted"));
            }
            let Some(length) = memchr(quote, &buf[i + 1..limit]) else {
                if (limit - i - 1) as u64 > self.max_text() {
                    return Err(self.over(XmlLimit::MaxTextLength, self.max_text(), i));
                }
                return Ok(Step::More);
            };
            let (value_from, value_to) = (i + 1, i + 1 + length);
            self.check_attribute_value(value_from..value_to)?;
            self.attributes.push(Attribute {
                name: name_from..name_to,
                colon: attribute.colon,
                value: value_from..value_to,
            });
            i = value_to + 1;
        };
        let nested = !self.name_ends.is_empty();
        let declared = self.element(tag, name, close, empty)?;
        if nested && !declared {
            // Checked once in this namespace context: the same bytes pass again.
            // With one attribute, only the bytes up to its value are kept: records
            // repeat the tag with another value (`<item no="17">`).
            let (len, value_follows) = match &self.attributes[..] {
                [only] => (only.value.start - tag, true),
                _ => (end - tag, false),
            };
            let seen = SeenTag {
                len,
                name_len: name_end - tag - 1,
                empty,
                value_follows,
            };
            self.tags
                .insert(&self.buf[tag..tag + len], seen, self.scopes.generation);
        }
        Ok(Step::Next(end))
    }

    /// A remembered start tag at `tag`: `None` if what follows the remembered
    /// bytes is not the one attribute value and the tag's end (the full path
    /// then reads the tag).
    fn seen_tag(&mut self, tag: usize, seen: SeenTag) -> Result<Option<Step>, Fault> {
        let (end, empty) = if seen.value_follows {
            let value_from = tag + seen.len;
            let quote = self.buf[value_from - 1];
            let Some(length) = memchr(quote, &self.buf[value_from..self.checked]) else {
                return Ok(None);
            };
            let value_to = value_from + length;
            if self.check_attribute_value(value_from..value_to).is_err() {
                return Ok(None);
            }
            let mut i = value_to + 1;
            while i < self.checked && is_space(self.buf[i]) {
                i += 1;
            }
            match &self.buf[i..self.checked] {
                [b'>', ..] => (i + 1, false),
                [b'/', b'>', ..] => (i + 2, true),
                _ => return Ok(None),
            }
        } else {
            (tag + seen.len, seen.empty)
        };
        self.check_depth()?;
        self.count_element(tag)?;
        self.scopes.push_empty();
        self.close_start_tag(tag + 1..tag + 1 + seen.name_len, empty);
        Ok(Some(Step::Next(end)))
    }

    /// An attribute value: no `<`, and only well-formed references.
    fn check_attribute_value(&self, value: Range<usize>) -> Result<(), Fault> {
        let value_from = value.start;
        let value = &self.buf[value];
        if value.len() as u64 > self.max_text() {
            return Err(self.over(XmlLimit::MaxTextLength, self.max_text(), value_from));
        }
        if value.contains(&b'<') {
            return Err(self.malformed_at(value_from, "'<' in an attribute value"));
        }
        check_references(value, self.start.limits.max_name_length).map_err(|(at, e)| match e {
            ReferenceError::TooLong => self.over(
                XmlLimit::MaxNameLength,
                self.start.limits.max_name_length as u64,
                value_from + at,
            ),
            ReferenceError::Invalid(reason) => self.malformed_at(value_from + at, reason),
        })
    }

    fn count_element(&mut self, tag: usize) -> Result<(), Fault> {
        self.elements += 1;
        match self.start.limits.max_elements {
            Some(max) if self.elements > max => Err(self.over(XmlLimit::MaxElements, max, tag)),
            _ => Ok(()),
        }
    }

    fn check_depth(&self) -> Result<(), Fault> {
        let depth = self.start.depth + self.name_ends.len() + 1;
        if depth > self.start.limits.max_depth {
            return Err(Box::new(EncryptError::TooDeep {
                limit: self.start.limits.max_depth,
            }));
        }
        Ok(())
    }

    /// The start tag's scope is pushed: track the element it opens.
    fn close_start_tag(&mut self, name: Range<usize>, empty: bool) {
        if let Some(held) = &mut self.held
            && !held.uses_default
            && find(b':', &self.buf[name.clone()]).is_none()
        {
            held.uses_default = true;
        }
        if empty {
            self.scopes.pop();
        } else {
            self.names.extend_from_slice(&self.buf[name]);
            self.name_ends.push(self.names.len());
        }
    }

    /// A complete start tag at `tag`: check attributes and namespaces, track
    /// the element, and rewrite it if it is a top-level element of the Body.
    /// Returns whether the tag declares namespaces.
    fn element(
        &mut self,
        tag: usize,
        name: Name,
        close: usize,
        empty: bool,
    ) -> Result<bool, Fault> {
        self.check_depth()?;
        self.count_element(tag)?;
        let declared = if self.attributes.is_empty() {
            Vec::new()
        } else {
            self.attribute_bindings(tag)?
        };
        let declares = !declared.is_empty();
        if declares {
            self.scopes.push(declared);
            let max = self.start.limits.max_namespace_declarations;
            if self.scopes.declarations() > max {
                self.scopes.pop();
                return Err(self.over(XmlLimit::MaxNamespaceDeclarations, max as u64, tag));
            }
        } else {
            self.scopes.push_empty();
        }
        let checked = self.check_prefixes(tag, name).and_then(|()| {
            if self.name_ends.is_empty() {
                self.top_level(tag, name.end, close, empty)
            } else {
                Ok(())
            }
        });
        if let Err(e) = checked {
            self.scopes.pop();
            return Err(e);
        }
        self.close_start_tag(tag + 1..name.end, empty);
        Ok(declares)
    }

    /// Refuse duplicate attributes; the namespaces the attributes declare.
    fn attribute_bindings(&self, tag: usize) -> Result<Vec<Binding>, Fault> {
        let buf = &self.buf;
        let attribute_name = |a: &Attribute| &buf[a.name.clone()];
        let count = self.attributes.len();
        let duplicate = if count <= 16 {
            (1..count).any(|j| {
                (0..j).any(|k| {
                    same(
                        attribute_name(&self.attributes[j]),
                        attribute_name(&self.attributes[k]),
                    )
                })
            })
        } else {
            let mut sorted: Vec<&[u8]> = self.attributes.iter().map(attribute_name).collect();
            sorted.sort_unstable();
            sorted.windows(2).any(|w| w[0] == w[1])
        };
        if duplicate {
            return Err(self.malformed_at(tag, "bad attribute: duplicate attribute name"));
        }
        let mut declared = Vec::new();
        for a in &self.attributes {
            let key = attribute_name(a);
            if key == b"xmlns" || key.starts_with(b"xmlns:") {
                let raw = as_str(&buf[a.value.clone()]);
                let binding = namespace_binding(as_str(key), raw, normalize_attribute(raw))
                    .map_err(|reason| self.malformed_at(a.name.start, reason))?;
                declared.push(binding);
            }
        }
        Ok(declared)
    }

    /// Every prefix the element and its attributes use must be declared; no
    /// element has the prefix `xmlns`; no two attributes have the same
    /// expanded name (Namespaces in XML §6.3).
    fn check_prefixes(&mut self, tag: usize, name: Name) -> Result<(), Fault> {
        if let Some(colon) = name.colon {
            if matches!(&self.buf[tag + 1..colon], b"xmlns" | b"xml") {
                return Err(self.malformed_at(tag, "an element name with a reserved prefix"));
            }
            self.check_prefix(tag, tag + 1..colon)?;
        }
        let mut qualified = 0;
        for k in 0..self.attributes.len() {
            let a = &self.attributes[k];
            if let Some(colon) = a.colon {
                let prefix = a.name.start..colon;
                if &self.buf[prefix.clone()] != b"xmlns" {
                    qualified += 1;
                }
                self.check_prefix(tag, prefix)?;
            }
        }
        if qualified >= 2 {
            self.check_expanded_names(tag)?;
        }
        Ok(())
    }

    /// `p:a` and `q:a` with `p` and `q` bound to one namespace are one name twice.
    fn check_expanded_names(&self, tag: usize) -> Result<(), Fault> {
        let mut expanded: Vec<(&str, &[u8])> = Vec::new();
        for a in &self.attributes {
            let Some(colon) = a.colon else { continue };
            let prefix = as_str(&self.buf[a.name.start..colon]);
            if prefix == "xmlns" {
                continue;
            }
            let uri = self.scopes.resolve(prefix).unwrap_or_default();
            expanded.push((uri, &self.buf[colon + 1..a.name.end]));
        }
        if has_duplicate(&mut expanded) {
            return Err(self.malformed_at(
                tag,
                "bad attribute: two attributes with the same namespace and local name",
            ));
        }
        Ok(())
    }

    #[inline]
    fn check_prefix(&mut self, tag: usize, prefix: Range<usize>) -> Result<(), Fault> {
        let prefix = &self.buf[prefix];
        if self.known_prefix(prefix) || prefix == b"xmlns" {
            return Ok(());
        }
        let text = as_str(prefix);
        if self.scopes.resolve(text).is_none() {
            return Err(self.malformed_at(tag, format!("prefix {text} is not declared")));
        }
        if self.known_generation != self.scopes.generation {
            self.known_generation = self.scopes.generation;
            self.known.clear();
        }
        // A handful: with thousands of distinct prefixes a longer list would
        // cost more to search than the lookup it saves.
        if self.known.len() == KNOWN_PREFIXES {
            self.known.pop();
        }
        self.known.insert(0, prefix.to_vec());
        Ok(())
    }

    /// A top-level element of the Body is encrypted apart from its ancestors, so
    /// it carries the namespaces in scope at the Body that it uses and does not
    /// declare. Which ones it uses is known at its end: it is held back until
    /// then, up to [`HOLD_BACK`] bytes; a larger one carries them all.
    fn top_level(
        &mut self,
        tag: usize,
        name_end: usize,
        _close: usize,
        empty: bool,
    ) -> Result<(), Fault> {
        let name = as_str(&self.buf[tag + 1..name_end]);
        let (prefix, local) = split_qname(name);
        if local == "EncryptedData" && self.scopes.resolve(prefix) == Some(ns::XENC) {
            return Err(Box::new(EncryptError::AlreadyEncrypted));
        }
        self.saw_element = true;
        let own = self
            .scopes
            .marks
            .last()
            .map_or(&self.scopes.bindings[..], |&m| &self.scopes.bindings[m..]);
        let mut own: Vec<String> = own.iter().map(|b| b.prefix.clone()).collect();
        own.sort_unstable();
        // Everything before the tag goes out first; the tag starts the hold.
        let saved = self.pos;
        self.pos = tag;
        self.flush_run()?;
        self.pos = saved;
        self.hold.clear();
        self.held = Some(Held {
            name_len: name_end - tag - 1,
            own,
            uses_default: false,
        });
        self.redeclare.element += 1;
        self.release_pending = empty;
        Ok(())
    }

    /// The held top-level element ended: write it with the namespaces it uses.
    fn release_held(&mut self) -> Result<(), Fault> {
        let Some(held) = self.held.take() else {
            return Ok(());
        };
        let r = &mut self.redeclare;
        r.used.clear();
        let stamp = r.element;
        let mark = |i: usize, r: &mut Redeclaration| {
            if r.used_by[i] != stamp {
                r.used_by[i] = stamp;
                r.used.push(i);
            }
        };
        if held.uses_default
            && let Some(i) = r.default
        {
            mark(i, r);
        }
        // Every `prefix:` in the element: names, and QNames in attribute values
        // and text (`xsi:type="p:T"`). Runs end at a colon, so each byte is
        // looked at at most twice.
        let bytes = &self.hold;
        let mut after_colon = 0;
        for colon in memchr::memchr_iter(b':', bytes) {
            let mut from = colon;
            while from > after_colon && is_reference_byte(bytes[from - 1]) {
                from -= 1;
            }
            if from < colon
                && let Some(&i) = r.by_prefix.get(&bytes[from..colon])
            {
                mark(i, r);
            }
            after_colon = colon + 1;
        }
        r.used.sort_unstable();
        self.write_held(&held, false)
    }

    /// The held element outgrew the hold: it carries every namespace in scope
    /// at the Body (its size pays for them), and the rest of it streams.
    fn release_overflowing(&mut self) -> Result<(), Fault> {
        let Some(held) = self.held.take() else {
            return Ok(());
        };
        self.write_held(&held, true)
    }

    fn write_held(&mut self, held: &Held, all: bool) -> Result<(), Fault> {
        let mut declarations = String::new();
        let r = &self.redeclare;
        let mut add = |b: &Binding| {
            if held.own.binary_search(&b.prefix).is_err() {
                declarations.push_str(&declaration(b));
            }
        };
        if all {
            self.context.iter().for_each(&mut add);
        } else {
            r.used.iter().for_each(|&i| add(&self.context[i]));
        }
        // Half of the input so far, and a little: with base64 (4/3) the output
        // stays within twice the input, plus the security header.
        let written = self.redeclare.written + declarations.len() as u64;
        let input_so_far = self.position_of(self.pos);
        if written > REDECLARATION_ALLOWANCE + input_so_far / 2 {
            return Err(self.over(XmlLimit::NamespaceRedeclaration, written, self.pos));
        }
        self.redeclare.written = written;
        let split = 1 + held.name_len;
        let write = |out: &mut W, bytes: &[u8]| {
            out.write_all(bytes)
                .map_err(|e| Box::new(EncryptError::Write(e)))
        };
        write(self.out, &self.hold[..split])?;
        write(self.out, declarations.as_bytes())?;
        write(self.out, &self.hold[split..])?;
        self.hold.clear();
        if self.hold.capacity() > HOLD_BACK * 2 {
            self.hold = Vec::new();
        }
        Ok(())
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

/// Start tags that were checked and declare no namespace, by their bytes.
///
/// Bodies are mostly lists of records: the same tags (`<ns:amount>`,
/// `<ns:item type="x">`) again and again. A tag whose exact bytes passed every
/// check (name, attributes, prefixes) in the same namespace bindings passes
/// them again, so only its depth is checked and the element is tracked. A tag
/// with one attribute is kept up to that attribute's value (`<ns:item no="`),
/// since records repeat it with other values: the value and the tag's end are
/// then checked, and anything else after the value takes the full path.
/// Bindings are identified by [`NamespaceScopes::generation`], which changes
/// whenever one is added or removed; tags that declare namespaces and the
/// Body's top-level elements (which are rewritten) are never remembered.
#[derive(Default)]
struct SeenTags {
    slots: [SeenSlot; SEEN_SLOTS],
}

const SEEN_SLOTS: usize = 16;
/// Longer tags are not remembered.
const SEEN_BYTES: usize = 32;

#[derive(Clone, Copy, Default)]
struct SeenSlot {
    /// `bytes[..tag.len]` is the tag, `<` to `>`; an empty slot has `len` 0.
    bytes: [u8; SEEN_BYTES],
    tag: SeenTag,
    generation: u64,
}

#[derive(Clone, Copy, Default)]
struct SeenTag {
    /// Bytes remembered: the whole tag, or up to its one attribute's value.
    len: usize,
    name_len: usize,
    /// The tag ends in `/>` (whole tags).
    empty: bool,
    /// `len` ends after the quote that opens the tag's only attribute value.
    value_follows: bool,
}

impl SeenTags {
    /// The slot for a tag: by the eight bytes after `<`.
    #[inline(always)]
    fn slot(text: &[u8]) -> Option<usize> {
        let word = word_at(text, 1)?;
        Some((word.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 60) as usize % SEEN_SLOTS)
    }

    /// The tag `text` starts with, if it was seen under `generation`.
    #[inline]
    fn find(&self, text: &[u8], generation: u64) -> Option<SeenTag> {
        let slot = &self.slots[Self::slot(text)?];
        let len = slot.tag.len;
        let known = len != 0
            && slot.generation == generation
            && text.len() >= len
            && same(&text[..len], &slot.bytes[..len]);
        known.then_some(slot.tag)
    }

    /// Tags shorter than nine bytes (no word after `<`) are not remembered.
    fn insert(&mut self, tag: &[u8], seen: SeenTag, generation: u64) {
        if tag.len() > SEEN_BYTES {
            return;
        }
        if let Some(slot) = Self::slot(tag) {
            let slot = &mut self.slots[slot];
            slot.bytes[..tag.len()].copy_from_slice(tag);
            slot.tag = seen;
            slot.generation = generation;
        }
    }
}

/// An attribute of the tag being parsed, as ranges of the read buffer.
struct Attribute {
    name: Range<usize>,
    /// Index of the `:` in the name (names of ASCII bytes).
    colon: Option<usize>,
    value: Range<usize>,
}

/// A name found by [`find_name_end`].
#[derive(Clone, Copy)]
struct Name {
    /// Index of the first byte after the name.
    end: usize,
    /// Made of ASCII name bytes only; then `colon` and `colons` describe it.
    ascii: bool,
    /// Index of its first `:`.
    colon: Option<usize>,
    colons: u32,
}

impl Name {
    /// Whether the name (`name`, the bytes it spans) is a QName.
    #[inline]
    fn is_qname(&self, name: &[u8]) -> bool {
        if !self.ascii {
            return is_qname(name);
        }
        let start = self.end - name.len();
        self.colons <= 1
            && starts_ncname(name)
            && self
                .colon
                .is_none_or(|colon| starts_ncname(&name[colon - start + 1..]))
    }
}

/// Where the name starting at `from` ends: the first byte that cannot be part
/// of it. `None` if the bytes up to `limit` are all name bytes.
#[inline(always)]
fn find_name_end(buf: &[u8], from: usize, limit: usize) -> Option<Name> {
    let bytes = &buf[..limit];
    let mut i = from;
    let mut colon = None;
    let mut colons = 0;
    // Eight bytes at a time: no branch per byte, names are short.
    let mut stopped = false;
    while let Some(word) = word_at(bytes, i) {
        let (stops, colon_bytes) = classify_name_bytes(word);
        let inside = match stops {
            0 => colon_bytes,
            _ => colon_bytes & ((1u64 << stops.trailing_zeros()) - 1),
        };
        if inside != 0 {
            colon.get_or_insert(i + inside.trailing_zeros() as usize / 8);
            colons += inside.count_ones();
        }
        if stops != 0 {
            i += stops.trailing_zeros() as usize / 8;
            stopped = true;
            break;
        }
        i += 8;
    }
    if !stopped {
        while i < limit && ASCII_NAME[buf[i] as usize] {
            if buf[i] == b':' {
                colon.get_or_insert(i);
                colons += 1;
            }
            i += 1;
        }
    }
    let ascii = i >= limit || buf[i] < 0x80;
    if !ascii {
        // A non-ASCII name: up to the delimiters, checked by `is_qname`.
        while i < limit && !is_space(buf[i]) && !matches!(buf[i], b'=' | b'>' | b'/') {
            i += 1;
        }
        colon = find(b':', &buf[from..i]).map(|c| from + c);
    }
    (i < limit).then_some(Name {
        end: i,
        ascii,
        colon,
        colons,
    })
}

// Byte classification eight bytes at a time in a `u64` ("SWAR"): each function
// returns a word with the high bit set in the bytes it selects.
const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// The eight bytes at `at`, little-endian, if there are eight.
#[inline(always)]
fn word_at(bytes: &[u8], at: usize) -> Option<u64> {
    let eight = bytes.get(at..at.checked_add(8)?)?;
    Some(u64::from_le_bytes(eight.try_into().ok()?))
}

/// The bytes of `word` equal to `b`. Exact for the lowest selected byte only
/// (a borrow can mark bytes above it), which is all a search needs.
#[inline(always)]
fn bytes_equal(word: u64, b: u8) -> u64 {
    let x = word ^ (ONES * u64::from(b));
    x.wrapping_sub(ONES) & !x & HIGHS
}

/// The bytes that are not ASCII name bytes ([`ASCII_NAME`]), and the colons.
/// Exact for every byte (colons: for every byte before the first non-name byte).
#[inline(always)]
fn classify_name_bytes(word: u64) -> (u64, u64) {
    let high = word & HIGHS;
    let low = word & !HIGHS;
    // Bytes of `low` (all below 0x80) that are at least `n`: adding 0x80 - n
    // sets the high bit exactly then, and never carries into the next byte.
    let at_least = |n: u8| low.wrapping_add(ONES * u64::from(0x80 - n)) & HIGHS;
    let between = |from: u8, to: u8| at_least(from) & !at_least(to + 1);
    let colons = between(b':', b':');
    let name = (between(b'-', b'.') | between(b'0', b':'))
        | between(b'A', b'Z')
        | between(b'_', b'_')
        | between(b'a', b'z');
    (high | (!name & HIGHS), colons)
}

/// Whether ASCII name bytes form a QName: NCNames start with a letter or `_`,
/// and at most one `:` separates two of them.
fn ascii_qname_shape(name: &[u8]) -> bool {
    match find(b':', name) {
        Some(colon) => {
            let local = &name[colon + 1..];
            starts_ncname(&name[..colon]) && starts_ncname(local) && !local.contains(&b':')
        }
        None => starts_ncname(name),
    }
}

/// Whether ASCII name bytes start the way an NCName must: a letter or `_`.
fn starts_ncname(part: &[u8]) -> bool {
    part.first()
        .is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_')
}

/// The first `b` in a short `haystack` (names, references, attribute values):
/// a plain loop beats `memchr`'s setup there.
fn find(b: u8, haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|&c| c == b)
}

/// The first `<`, `&` or `]` of character data: eight bytes at a time over the
/// first bytes (most text between tags is short), `memchr` beyond.
#[inline]
fn find_markup(text: &[u8]) -> Option<usize> {
    const SHORT: usize = 64;
    let mut at = 0;
    while at < SHORT {
        let Some(word) = word_at(text, at) else {
            return text[at..]
                .iter()
                .position(|&b| matches!(b, b'<' | b'&' | b']'))
                .map(|i| at + i);
        };
        let stops = bytes_equal(word, b'<') | bytes_equal(word, b'&') | bytes_equal(word, b']');
        if stops != 0 {
            return Some(at + stops.trailing_zeros() as usize / 8);
        }
        at += 8;
    }
    memchr3(b'<', b'&', b']', &text[at..]).map(|i| i + at)
}

/// Whether two short byte strings (names, prefixes) are equal, compared a
/// word at a time rather than through `memcmp`.
#[inline(always)]
fn same(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let word =
        |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().unwrap_or_default());
    let half =
        |s: &[u8], at: usize| u32::from_le_bytes(s[at..at + 4].try_into().unwrap_or_default());
    match n {
        0..4 => a.iter().zip(b).all(|(x, y)| x == y),
        4..8 => half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4),
        8..=16 => word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8),
        17..=32 => {
            word(a, 0) == word(b, 0)
                && word(a, 8) == word(b, 8)
                && word(a, n - 16) == word(b, n - 16)
                && word(a, n - 8) == word(b, n - 8)
        }
        _ => a == b,
    }
}

/// The length of the reference at the start of `text` if it is one of the
/// common well-formed ones: a predefined entity or a decimal or hexadecimal
/// character reference to a character XML allows. Anything else (including a
/// reference not complete in `text`) is left to [`check_reference`].
#[inline]
fn common_reference(text: &[u8]) -> Option<usize> {
    match text.get(1)? {
        b'#' => {
            let (from, radix) = if text.get(2) == Some(&b'x') {
                (3, 16)
            } else {
                (2, 10)
            };
            let mut value: u32 = 0;
            let mut i = from;
            while let Some(digit) = text.get(i).and_then(|&b| char::from(b).to_digit(radix)) {
                value = value.saturating_mul(radix).saturating_add(digit);
                i += 1;
            }
            let valid = i > from
                && text.get(i) == Some(&b';')
                && char::from_u32(value).is_some_and(is_xml_char);
            valid.then_some(i + 1)
        }
        b'a' if text.get(1..5) == Some(b"amp;") => Some(5),
        b'l' if text.get(1..4) == Some(b"lt;") => Some(4),
        b'g' if text.get(1..4) == Some(b"gt;") => Some(4),
        b'q' if text.get(1..6) == Some(b"quot;") => Some(6),
        b'a' if text.get(1..6) == Some(b"apos;") => Some(6),
        _ => None,
    }
}

/// ASCII bytes of a QName: letters, digits, `_`, `-`, `.` and `:`.
static ASCII_NAME: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 128 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.' | b':');
        b += 1;
    }
    table
};

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// A QName, with an ASCII fast path.
fn is_qname(name: &[u8]) -> bool {
    if name.iter().all(|&b| ASCII_NAME[b as usize]) {
        return ascii_qname_shape(name);
    }
    std::str::from_utf8(name).is_ok_and(is_xml_name)
}

/// The name of a reference between `&` and `;`.
fn check_reference(name: &[u8]) -> Result<(), String> {
    let text = as_str(name);
    if let Some(number) = text.strip_prefix('#') {
        let value = match number.strip_prefix('x') {
            Some(hex) if !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
                u32::from_str_radix(hex, 16).ok()
            }
            None if !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()) => {
                number.parse::<u32>().ok()
            }
            _ => None,
        };
        return match value.and_then(char::from_u32) {
            Some(c) if is_xml_char(c) => Ok(()),
            _ => Err(format!("invalid character reference &{text};")),
        };
    }
    match text {
        "lt" | "gt" | "amp" | "apos" | "quot" => Ok(()),
        _ if is_qname(name) => Err(format!(
            "undefined entity &{text};, entity declarations are refused"
        )),
        _ => Err(format!("invalid reference &{text};")),
    }
}

/// Attribute-value normalization of XML 1.0 for CDATA attributes: references
/// replaced, whitespace characters turned into spaces. References are checked.
fn normalize_attribute(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(i) = rest.find(['&', '\t', '\n', '\r']) {
        out.push_str(&rest[..i]);
        if rest.as_bytes()[i] != b'&' {
            out.push(' ');
            rest = &rest[i + 1..];
            continue;
        }
        let Some(end) = rest[i..].find(';') else {
            out.push_str(&rest[i..]);
            return out;
        };
        let name = &rest[i + 1..i + end];
        let replacement = match name {
            "lt" => Some('<'),
            "gt" => Some('>'),
            "amp" => Some('&'),
            "apos" => Some('\''),
            "quot" => Some('"'),
            _ => name.strip_prefix('#').and_then(|n| {
                match n.strip_prefix('x') {
                    Some(hex) => u32::from_str_radix(hex, 16).ok(),
                    None => n.parse().ok(),
                }
                .and_then(char::from_u32)
            }),
        };
        match replacement {
            Some(c) => out.push(c),
            None => out.push_str(&rest[i..=i + end]),
        }
        rest = &rest[i + end + 1..];
    }
    out.push_str(rest);
    out
}

/// The first byte XML 1.0 does not allow: a C0 control other than tab, line
/// feed and carriage return, or the start of U+FFFE or U+FFFF. `bytes` is UTF-8.
pub(super) fn first_invalid_character(bytes: &[u8]) -> Option<(usize, &'static str)> {
    const CHUNK: usize = 64;
    let control = |b: u8| b < 0x20 && b != b'\t' && b != b'\n' && b != b'\r';
    for (n, chunk) in bytes.chunks(CHUNK).enumerate() {
        // Branch-free over the chunk (vectorizes); find the byte only on a hit.
        if chunk.iter().fold(false, |hit, &b| hit | control(b)) {
            let i = chunk.iter().position(|&b| control(b)).unwrap_or(0);
            return Some((n * CHUNK + i, "a control character that XML does not allow"));
        }
    }
    let mut at = 0;
    while let Some(i) = memchr(0xEF, &bytes[at..]) {
        let i = at + i;
        if bytes.get(i + 1) == Some(&0xBF) && matches!(bytes.get(i + 2), Some(0xBE | 0xBF)) {
            return Some((i, "the non-character U+FFFE or U+FFFF"));
        }
        at = i + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every byte value at every position of a word, with name bytes around it.
    fn words() -> impl Iterator<Item = (u64, usize, u8)> {
        (0..8).flat_map(|at| {
            (0..=255u8).map(move |b| {
                let mut bytes = *b"ab:-._9Z";
                bytes[at] = b;
                (u64::from_le_bytes(bytes), at, b)
            })
        })
    }

    #[test]
    fn word_classification_agrees_with_the_byte_tables() {
        for (word, at, b) in words() {
            let (stops, colons) = classify_name_bytes(word);
            let bytes = word.to_le_bytes();
            for (k, &c) in bytes.iter().enumerate() {
                let bit = 0x80u64 << (8 * k);
                assert_eq!(
                    stops & bit == 0,
                    ASCII_NAME[c as usize],
                    "byte {c:#x} at {k}"
                );
                if ASCII_NAME[c as usize] {
                    assert_eq!(colons & bit != 0, c == b':', "byte {c:#x} at {k}");
                }
            }
            let found = bytes_equal(word, b);
            let want = bytes.iter().position(|&c| c == b);
            assert_eq!(
                (found != 0).then(|| found.trailing_zeros() as usize / 8),
                want,
                "{b:#x} at {at}"
            );
        }
    }

    #[test]
    fn markup_is_found_at_every_offset() {
        for len in 0..80 {
            for at in 0..len {
                for stop in [b'<', b'&', b']'] {
                    let mut text = vec![b'x'; len];
                    text[at] = stop;
                    assert_eq!(
                        find_markup(&text),
                        Some(at),
                        "{} at {at} of {len}",
                        stop as char
                    );
                }
            }
            assert_eq!(find_markup(&vec![b'x'; len]), None);
        }
    }

    #[test]
    fn short_comparison_agrees_with_slices() {
        let a: Vec<u8> = (0..40).collect();
        for n in 0..40 {
            assert!(same(&a[..n], &a[..n]));
            for k in 0..n {
                let mut b = a[..n].to_vec();
                b[k] ^= 1;
                assert!(!same(&a[..n], &b), "length {n}, byte {k}");
            }
            assert!(!same(&a[..n], &a[..n + 1]));
        }
    }

    #[test]
    fn declaration_length_is_computed_right() {
        for (prefix, raw) in [("", "urn:x"), ("p", "urn:x"), ("pp", "a\"b\"c"), ("", "")] {
            let b = Binding {
                prefix: prefix.into(),
                raw: raw.into(),
                uri: raw.into(),
            };
            assert_eq!(declaration_len(&b), declaration(&b).len(), "{prefix} {raw}");
        }
    }

    #[test]
    fn common_references_agree_with_the_full_check() {
        let names = [
            "amp",
            "lt",
            "gt",
            "quot",
            "apos",
            "#65",
            "#x41",
            "#x1D11E",
            "#1114111",
            "#1114112",
            "#0",
            "#x0",
            "#xD800",
            "#xFFFE",
            "#9",
            "#x",
            "#",
            "#X41",
            "#-1",
            "#99999999999",
            "ampx",
            "am",
            "nbsp",
            "#x10FFFF",
            "#x110000",
            "#0065",
            "quo",
            "aposx",
        ];
        for name in names {
            let text = format!("&{name};rest");
            let full = check_reference(name.as_bytes()).is_ok();
            match common_reference(text.as_bytes()) {
                Some(length) => {
                    assert!(full, "{name} accepted by the fast path only");
                    assert_eq!(length, name.len() + 2, "{name}");
                }
                None => assert!(!full, "{name}: well-formed but not recognised"),
            }
        }
    }
}
