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

use std::io::{self, BufRead, Read, Write};

use memchr::{memchr, memchr3, memmem};

use super::{
    Binding, EncryptError, NamespaceScopes, is_xml_char, is_xml_name, namespace_binding,
    split_qname,
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
}

/// Where the scanner stands in the Body when it starts.
pub(super) struct BodyStart {
    /// Stream position of the first byte after the Body's start tag.
    pub position: u64,
    /// Elements open at that point (Envelope and Body).
    pub depth: usize,
    pub max_depth: usize,
}

/// The read buffer starts small (most messages are a few KiB and the buffer is
/// zeroed when it grows) and grows to `RUN_BUFFER` once a whole buffer has been
/// consumed; a single token larger than that grows it further.
const FIRST_BUFFER: usize = 8 * 1024;
const RUN_BUFFER: usize = 64 * 1024;
/// The longest reference (`&#x0000000000010FFFF;` and the like) looked at.
const MAX_REFERENCE: usize = 64;

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
    /// Attributes of the tag being parsed: name and value ranges in `buf`.
    attributes: Vec<[usize; 4]>,
    saw_element: bool,
    /// Prefixes found declared while the bindings were at `known_generation`.
    known: Vec<Vec<u8>>,
    known_generation: u64,
}

impl<'a, R: BufRead, W: Write> Scanner<'a, R, W> {
    pub(super) fn new(
        input: &'a mut Rewind<R>,
        out: &'a mut W,
        scopes: &'a mut NamespaceScopes,
        start: BodyStart,
    ) -> Self {
        let context = scopes.in_scope();
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
            known: Vec::new(),
            known_generation: u64::MAX,
        }
    }

    fn known_prefix(&self, prefix: &[u8]) -> bool {
        self.known_generation == self.scopes.generation && self.known.iter().any(|k| k == prefix)
    }

    fn position_of(&self, index: usize) -> u64 {
        self.start.position + self.offset + index as u64
    }

    fn malformed_at(&self, index: usize, reason: impl Into<String>) -> EncryptError {
        EncryptError::Malformed {
            position: self.position_of(index),
            reason: reason.into(),
        }
    }

    /// Scan up to the Body's end tag, which is left unread.
    pub(super) fn run(mut self) -> Result<BodyScan, EncryptError> {
        loop {
            let text = &self.buf[self.pos..self.checked];
            let step = match find_markup(text) {
                Some(i) if text[i] == b']' => {
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
                Some(i) => {
                    self.pos += i;
                    if self.buf[self.pos] == b'&' {
                        self.reference()?
                    } else {
                        self.markup()?
                    }
                }
                None => {
                    self.pos = self.checked;
                    Step::More
                }
            };
            match step {
                Step::Next(next) => self.pos = next,
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
                    });
                }
            }
        }
    }

    fn flush_run(&mut self) -> Result<(), EncryptError> {
        if self.run < self.pos {
            self.out
                .write_all(&self.buf[self.run..self.pos])
                .map_err(EncryptError::Write)?;
        }
        self.run = self.pos;
        Ok(())
    }

    /// Read until at least `want` bytes from `pos` are buffered, or the input
    /// ends. Returns whether anything new became readable.
    fn fill(&mut self, want: usize) -> Result<bool, EncryptError> {
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
                    Err(e) => return Err(EncryptError::from_read(e)),
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
    fn check_new(&mut self) -> Result<(), EncryptError> {
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

    /// `&…;` at `pos`.
    fn reference(&self) -> Result<Step, EncryptError> {
        let limit = self.checked.min(self.pos + MAX_REFERENCE);
        let Some(semicolon) = find(b';', &self.buf[self.pos..limit]) else {
            if limit == self.checked && !self.eof {
                return Ok(Step::More);
            }
            return Err(self.malformed_at(self.pos, "unterminated reference"));
        };
        let name = &self.buf[self.pos + 1..self.pos + semicolon];
        check_reference(name).map_err(|reason| self.malformed_at(self.pos, reason))?;
        Ok(Step::Next(self.pos + semicolon + 1))
    }

    /// `<…` at `pos`.
    fn markup(&mut self) -> Result<Step, EncryptError> {
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

    fn end_tag(&mut self) -> Result<Step, EncryptError> {
        if self.name_ends.is_empty() {
            return Ok(Step::BodyEnd);
        }
        let rest = &self.buf[self.pos..self.checked];
        let Some(gt) = find(b'>', rest) else {
            return Ok(Step::More);
        };
        let depth = self.name_ends.len();
        let open_from = if depth >= 2 {
            self.name_ends[depth - 2]
        } else {
            0
        };
        let name = rest[2..gt].trim_ascii_end();
        let open = &self.names[open_from..];
        if name != open {
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
        Ok(Step::Next(self.pos + gt + 1))
    }

    /// `<!--`, `<![CDATA[` or a DOCTYPE.
    fn declaration(&self) -> Result<Step, EncryptError> {
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
                    Some(end) => Ok(Step::Next(self.pos + 9 + end + 3)),
                    None => Ok(Step::More),
                };
            }
            Some(false) => {}
        }
        match complete(b"<!DOCTYPE") {
            None => Ok(Step::More),
            Some(true) => Err(EncryptError::Doctype {
                position: self.position_of(self.pos),
            }),
            Some(false) => Err(self.malformed_at(self.pos, "invalid markup after '<!'")),
        }
    }

    fn processing_instruction(&self) -> Result<Step, EncryptError> {
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

    fn start_tag(&mut self) -> Result<Step, EncryptError> {
        let tag = self.pos;
        let limit = self.checked;
        let buf = &self.buf;
        let Some((name_end, ascii)) = find_name_end(buf, tag + 1, limit) else {
            return Ok(Step::More);
        };
        if !name_is_qname(&buf[tag + 1..name_end], ascii) {
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
            let Some((name_to, ascii)) = find_name_end(buf, i, limit) else {
                return Ok(Step::More);
            };
            i = name_to;
            while i < limit && is_space(buf[i]) {
                i += 1;
            }
            if i >= limit {
                return Ok(Step::More);
            }
            if !name_is_qname(&buf[name_from..name_to], ascii) {
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
                return Ok(Step::More);
            };
            let (value_from, value_to) = (i + 1, i + 1 + length);
            let value = &buf[value_from..value_to];
            if value.contains(&b'<') {
                return Err(self.malformed_at(value_from, "'<' in an attribute value"));
            }
            let mut at = 0;
            while let Some(amp) = find(b'&', &value[at..]) {
                let from = at + amp + 1;
                let semicolon = find(b';', &value[from..]).ok_or_else(|| {
                    self.malformed_at(value_from + at + amp, "unterminated reference")
                })?;
                check_reference(&value[from..from + semicolon])
                    .map_err(|reason| self.malformed_at(value_from + at + amp, reason))?;
                at = from + semicolon + 1;
            }
            self.attributes
                .push([name_from, name_to, value_from, value_to]);
            i = value_to + 1;
        };
        self.element(tag, name_end, close, empty)?;
        Ok(Step::Next(end))
    }

    /// A complete start tag at `tag`: check attributes and namespaces, track
    /// the element, and rewrite it if it is a top-level element of the Body.
    fn element(
        &mut self,
        tag: usize,
        name_end: usize,
        close: usize,
        empty: bool,
    ) -> Result<(), EncryptError> {
        let depth = self.start.depth + self.name_ends.len() + 1;
        if depth > self.start.max_depth {
            return Err(EncryptError::TooDeep {
                limit: self.start.max_depth,
            });
        }
        let buf = &self.buf;
        let attribute_name = |a: &[usize; 4]| &buf[a[0]..a[1]];

        // Duplicate attributes.
        let count = self.attributes.len();
        let duplicate = if count <= 16 {
            (1..count).any(|j| {
                (0..j).any(|k| {
                    attribute_name(&self.attributes[j]) == attribute_name(&self.attributes[k])
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
        // Namespace declarations, then every prefix used must resolve.
        let mut declared = Vec::new();
        for a in &self.attributes {
            let key = &buf[a[0]..a[1]];
            if key == b"xmlns" || key.starts_with(b"xmlns:") {
                let raw = as_str(&buf[a[2]..a[3]]);
                let binding = namespace_binding(as_str(key), raw, normalize_attribute(raw))
                    .map_err(|reason| self.malformed_at(a[0], reason))?;
                declared.push(binding);
            }
        }
        self.scopes.push(declared);
        let element_prefix = prefix_of(&buf[tag + 1..name_end]);
        let attribute_prefixes = self
            .attributes
            .iter()
            .filter_map(|a| prefix_of(&buf[a[0]..a[1]]));
        for prefix in element_prefix.into_iter().chain(attribute_prefixes) {
            if prefix == b"xmlns" || self.known_prefix(prefix) {
                continue;
            }
            let text = as_str(prefix);
            if self.scopes.resolve(text).is_none() {
                let error = self.malformed_at(tag, format!("prefix {text} is not declared"));
                self.scopes.pop();
                return Err(error);
            }
            if self.known_generation != self.scopes.generation {
                self.known_generation = self.scopes.generation;
                self.known.clear();
            }
            self.known.push(prefix.to_vec());
        }
        if self.name_ends.is_empty()
            && let Err(e) = self.top_level(tag, name_end, close, empty)
        {
            self.scopes.pop();
            return Err(e);
        }
        if empty {
            self.scopes.pop();
        } else {
            self.names.extend_from_slice(&self.buf[tag + 1..name_end]);
            self.name_ends.push(self.names.len());
        }
        Ok(())
    }

    /// A top-level element of the Body is encrypted apart from its ancestors, so
    /// it carries every namespace in scope at the Body that it does not declare.
    fn top_level(
        &mut self,
        tag: usize,
        name_end: usize,
        close: usize,
        empty: bool,
    ) -> Result<(), EncryptError> {
        let name = as_str(&self.buf[tag + 1..name_end]);
        let (prefix, local) = split_qname(name);
        if local == "EncryptedData" && self.scopes.resolve(prefix) == Some(ns::XENC) {
            return Err(EncryptError::AlreadyEncrypted);
        }
        self.saw_element = true;
        let own = self
            .scopes
            .marks
            .last()
            .map_or(&self.scopes.bindings[..], |&m| &self.scopes.bindings[m..]);
        let mut rewritten = String::with_capacity(close - tag + 128);
        rewritten.push('<');
        rewritten.push_str(name);
        for b in &self.context {
            if own.iter().any(|o| o.prefix == b.prefix) {
                continue;
            }
            let value = b.raw.replace('"', "&quot;");
            if b.prefix.is_empty() {
                rewritten.push_str(&format!(r#" xmlns="{value}""#));
            } else {
                rewritten.push_str(&format!(r#" xmlns:{}="{value}""#, b.prefix));
            }
        }
        rewritten.push_str(as_str(&self.buf[name_end..close]));
        rewritten.push_str(if empty { "/>" } else { ">" });
        // Everything before the tag goes out first, then the rewritten tag.
        let end = close + if empty { 2 } else { 1 };
        let saved = self.pos;
        self.pos = tag;
        self.flush_run()?;
        self.pos = saved;
        self.out
            .write_all(rewritten.as_bytes())
            .map_err(EncryptError::Write)?;
        self.run = end;
        Ok(())
    }
}

/// Bytes already checked to be UTF-8 (by [`Scanner::check_new`]).
fn as_str(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap_or_default()
}

/// Where the name starting at `from` ends: the first byte that cannot be part
/// of it. `None` if the bytes up to `limit` are all name bytes.
/// Also says whether the name is made of ASCII name bytes only.
fn find_name_end(buf: &[u8], from: usize, limit: usize) -> Option<(usize, bool)> {
    let mut i = from;
    while i < limit && ASCII_NAME[buf[i] as usize] {
        i += 1;
    }
    let ascii = i >= limit || buf[i] < 0x80;
    if !ascii {
        // A non-ASCII name: up to the delimiters, checked by `is_qname`.
        while i < limit && !is_space(buf[i]) && !matches!(buf[i], b'=' | b'>' | b'/') {
            i += 1;
        }
    }
    (i < limit).then_some((i, ascii))
}

/// [`is_qname`] for a name from [`find_name_end`].
fn name_is_qname(name: &[u8], ascii: bool) -> bool {
    if ascii {
        ascii_qname_shape(name)
    } else {
        is_qname(name)
    }
}

/// Whether ASCII name bytes form a QName: NCNames start with a letter or `_`,
/// and at most one `:` separates two of them.
fn ascii_qname_shape(name: &[u8]) -> bool {
    let starts = |part: &[u8]| {
        part.first()
            .is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_')
    };
    match find(b':', name) {
        Some(colon) => {
            let local = &name[colon + 1..];
            starts(&name[..colon]) && starts(local) && !local.contains(&b':')
        }
        None => starts(name),
    }
}

/// The first `b` in a short `haystack` (names, references, attribute values):
/// a plain loop beats `memchr`'s setup there.
fn find(b: u8, haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|&c| c == b)
}

/// The first `<`, `&` or `]` of character data: a plain loop over the first
/// bytes (most text between tags is short), `memchr` beyond.
fn find_markup(text: &[u8]) -> Option<usize> {
    const SHORT: usize = 32;
    let head = &text[..text.len().min(SHORT)];
    if let Some(i) = head.iter().position(|&c| matches!(c, b'<' | b'&' | b']')) {
        return Some(i);
    }
    if text.len() <= SHORT {
        return None;
    }
    memchr3(b'<', b'&', b']', &text[SHORT..]).map(|i| i + SHORT)
}

/// The prefix of a QName, if it has one.
fn prefix_of(name: &[u8]) -> Option<&[u8]> {
    find(b':', name).map(|colon| &name[..colon])
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
