//! The streaming envelope rewriter: SOAP in, encrypted SOAP out, one pass.
//!
//! The content key is made and wrapped before the first byte is read, so the
//! EncryptedKey (which names the EncryptedData by Id) can be written into the
//! header before the Body arrives. Everything outside what must change is copied
//! through event by event from the parser's raw bytes: prolog, comments, other
//! header blocks, attribute order and quoting, prefixes. Body content goes
//! straight into the cipher; memory holds one parser event and one cipher block.
//!
//! The Security header for the ultimate receiver is reused when the Header has one
//! (the key goes first in it, before a Timestamp or token already there); otherwise
//! a new one is appended as the Header's last block, or a Header is created in
//! front of the Body.

mod body;

use std::cell::Cell;
use std::collections::HashMap;
use std::io::{self, BufWriter, Read, Write};

use quick_xml::events::{BytesStart, Event};
use quick_xml::reader::Reader;

use super::algorithms::{KeyIdentifier, ns};
use super::cipher::{self, CipherError, EncryptingWriter};
use super::header::{self, MessageIds};
use super::input::{self, InputTooLarge, UnsupportedEncoding};
use super::{CertificateError, EncryptOptions, Limits, Recipient, SoapVersion, XmlLimit};

const XMLNS_NAMESPACE: &str = "http://www.w3.org/2000/xmlns/";

/// Why an envelope could not be encrypted.
#[derive(Debug, thiserror::Error)]
pub enum EncryptError {
    #[error("DOCTYPE at byte {position}: document type declarations are refused")]
    Doctype { position: u64 },
    #[error("malformed XML at byte {position}: {reason}")]
    Malformed { position: u64, reason: String },
    #[error("not a SOAP envelope: root element is {found}")]
    NotSoap { found: String },
    #[error("the document has no root element")]
    NoRoot,
    #[error("the Envelope has no Body")]
    NoBody,
    #[error("the Envelope has a second Body at byte {position}")]
    TwoBodies { position: u64 },
    #[error("the Body has no element to encrypt")]
    EmptyBody,
    #[error("the Body already holds an EncryptedData")]
    AlreadyEncrypted,
    #[error("elements nest deeper than the limit of {limit} (max_depth)")]
    TooDeep { limit: usize },
    #[error("over the XML limit {limit} ({value}) at byte {position}")]
    LimitExceeded {
        limit: XmlLimit,
        value: u64,
        position: u64,
    },
    #[error("{0}")]
    TooLarge(InputTooLarge),
    #[error("{0}")]
    UnsupportedEncoding(#[from] UnsupportedEncoding),
    #[error("certificate cannot be used: {0}")]
    Certificate(#[from] CertificateError),
    #[error("{0}")]
    Cipher(#[from] CipherError),
    #[error("reading the input failed: {0}")]
    Read(io::Error),
    #[error("writing the output failed: {0}")]
    Write(io::Error),
}

impl EncryptError {
    /// Whether the caller's input is at fault (as opposed to wssgate or I/O).
    pub fn is_input_error(&self) -> bool {
        !matches!(
            self,
            EncryptError::Certificate(_)
                | EncryptError::Cipher(_)
                | EncryptError::Read(_)
                | EncryptError::Write(_)
        )
    }

    /// The limit an input went over, for `xml-limit-exceeded`.
    pub fn xml_limit(&self) -> Option<XmlLimit> {
        match self {
            EncryptError::TooDeep { .. } => Some(XmlLimit::MaxDepth),
            EncryptError::LimitExceeded { limit, .. } => Some(*limit),
            _ => None,
        }
    }

    pub(crate) fn from_read(e: io::Error) -> EncryptError {
        if let Some(limit) = e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<InputTooLarge>())
        {
            return EncryptError::TooLarge(InputTooLarge { limit: limit.limit });
        }
        EncryptError::Read(e)
    }
}

/// What was done to one message.
#[derive(Debug, Clone)]
pub struct EncryptSummary {
    pub soap_version: SoapVersion,
    pub encrypted_key_id: String,
    pub encrypted_data_id: String,
    /// Bytes of Body content encrypted.
    pub plaintext_bytes: u64,
    /// Bytes written to the output.
    pub bytes_out: u64,
    /// Whether an existing Security header was reused.
    pub reused_security_header: bool,
}

/// The SOAP version of an envelope from its first bytes (the namespace of its
/// root element), when they are enough to tell.
pub fn sniff_version(head: &[u8]) -> Option<SoapVersion> {
    let (reader, _) = input::utf8_reader(head).ok()?;
    let mut reader = Reader::from_reader(reader);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_event_into(&mut buf).ok()? {
            Event::Start(e) | Event::Empty(e) => {
                let (prefix, _) = split_qname(e.name().0);
                let wanted = if prefix.is_empty() {
                    "xmlns".to_string()
                } else {
                    format!("xmlns:{prefix}")
                };
                return e
                    .attributes()
                    .flatten()
                    .find(|a| a.key.0 == wanted)
                    .and_then(|a| SoapVersion::from_namespace(&a.value));
            }
            Event::Eof => return None,
            _ => {}
        }
    }
}

/// Encrypt a whole envelope held in memory.
pub fn encrypt_to_vec(
    envelope: &[u8],
    recipient: &Recipient,
    options: &EncryptOptions,
) -> Result<(Vec<u8>, EncryptSummary), EncryptError> {
    let mut out = Vec::with_capacity(envelope.len() * 4 / 3 + 4096);
    let summary = encrypt_envelope(envelope, &mut out, recipient, options)?;
    Ok((out, summary))
}

/// Encrypt the envelope read from `input` for `recipient`, writing to `output`.
///
/// On error, what was written to `output` is incomplete and must be discarded.
pub fn encrypt_envelope<R: Read, W: Write>(
    input: R,
    output: W,
    recipient: &Recipient,
    options: &EncryptOptions,
) -> Result<EncryptSummary, EncryptError> {
    let algorithms = options.algorithms;
    if algorithms.key_identifier == KeyIdentifier::Ski && recipient.info().ski.is_none() {
        return Err(CertificateError::NoSubjectKeyIdentifier.into());
    }
    let limited = input::LimitedReader::new(input, options.limits.max_bytes);
    let (reader, info) = input::utf8_reader(limited).map_err(|e| match e {
        input::InputError::Io(io) => EncryptError::from_read(io),
        input::InputError::Unsupported(u) => EncryptError::UnsupportedEncoding(u),
        contradictory @ input::InputError::Contradictory(_) => EncryptError::Malformed {
            position: 0,
            reason: contradictory.to_string(),
        },
    })?;

    let content_key = cipher::random_bytes(algorithms.data_encryption.key_len())?;
    let wrapped = cipher::wrap_key(
        recipient.public_key(),
        algorithms.key_transport,
        algorithms.oaep_digest,
        &content_key,
    )?;
    let ids = MessageIds::fresh()?;
    let security_elements = header::security_elements(recipient, &algorithms, &ids, &wrapped);

    let mut out = CountingWriter {
        inner: BufWriter::with_capacity(64 * 1024, output),
        count: 0,
    };
    if info.utf8_bom {
        out.write_all(&[0xEF, 0xBB, 0xBF])
            .map_err(EncryptError::Write)?;
    }
    let mut rewriter = Rewriter {
        reader: Reader::from_reader(body::Rewind::new(reader)),
        sink: Sink::Plain(out),
        options,
        transcoded: info.encoding.is_transcoded(),
        security_elements,
        ids,
        content_key,
        depth: 0,
        scopes: NamespaceScopes::default(),
        version: None,
        root_seen: false,
        header_seen: false,
        in_header: false,
        security_written: false,
        reused_security: false,
        body: BodyState::NotYet,
        plaintext_bytes: 0,
        frame: Vec::with_capacity(1024),
        scan_pending: false,
        scanned: 0,
        elements: 0,
        text_run: 0,
    };
    let config = rewriter.reader.config_mut();
    config.check_end_names = true;
    config.check_comments = true;
    config.expand_empty_elements = false;
    rewriter.run()?;
    let version = rewriter.version.ok_or(EncryptError::NoRoot)?;
    let Sink::Plain(mut out) = std::mem::replace(&mut rewriter.sink, Sink::Gone) else {
        return Err(EncryptError::NoBody);
    };
    out.flush().map_err(EncryptError::Write)?;
    Ok(EncryptSummary {
        soap_version: version,
        encrypted_key_id: rewriter.ids.encrypted_key,
        encrypted_data_id: rewriter.ids.encrypted_data,
        plaintext_bytes: rewriter.plaintext_bytes,
        bytes_out: out.count,
        reused_security_header: rewriter.reused_security,
    })
}

struct CountingWriter<W: Write> {
    inner: BufWriter<W>,
    count: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.inner.write_all(buf)?;
        self.count += buf.len() as u64;
        Ok(())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Where parser events go: to the output as they are, or into the cipher while
/// inside the Body.
enum Sink<W: Write> {
    Plain(CountingWriter<W>),
    Cipher(EncryptingWriter<CountingWriter<W>>),
    Gone,
}

impl<W: Write> Sink<W> {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Sink::Plain(w) => w.write_all(bytes),
            Sink::Cipher(w) => w.write_all(bytes),
            Sink::Gone => Err(io::Error::other("output already closed")),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyState {
    NotYet,
    Inside { saw_element: bool },
    Done,
}

/// One namespace declaration: prefix ("" for the default) and the attribute value
/// as written (still escaped), plus its unescaped URI for comparisons.
#[derive(Debug, Clone)]
struct Binding {
    prefix: String,
    raw: String,
    uri: String,
}

/// Namespace declarations of the open elements, innermost last.
///
/// Every operation costs constant work per binding it adds, removes or
/// returns: a prefix resolves through a map to the stack of its bindings, so
/// that neither many declarations nor many distinct prefixes make the parse
/// quadratic.
#[derive(Debug, Default)]
struct NamespaceScopes {
    bindings: Vec<Binding>,
    marks: Vec<usize>,
    /// For each prefix, the indices in `bindings` that bind it, innermost last.
    by_prefix: HashMap<String, Vec<usize>>,
    /// Changes whenever a binding is added or removed.
    generation: u64,
}

thread_local! {
    /// Units of namespace work done on this thread (bindings visited, lookups):
    /// lets a test show the work grows linearly with the declarations.
    static NAMESPACE_WORK: Cell<u64> = const { Cell::new(0) };
}

#[inline]
fn count_work(units: usize) {
    NAMESPACE_WORK.with(|w| w.set(w.get() + units as u64));
}

/// Units of namespace work done so far on the calling thread (see the tests
/// of linearity); encryption in [`encrypt_envelope`] runs on the caller's thread.
#[doc(hidden)]
pub fn namespace_work() -> u64 {
    NAMESPACE_WORK.with(Cell::get)
}

impl NamespaceScopes {
    #[inline]
    fn push(&mut self, declared: Vec<Binding>) {
        self.marks.push(self.bindings.len());
        if !declared.is_empty() {
            count_work(declared.len());
            self.generation += 1;
            for b in declared {
                let index = self.bindings.len();
                match self.by_prefix.get_mut(b.prefix.as_str()) {
                    Some(stack) => stack.push(index),
                    None => {
                        self.by_prefix.insert(b.prefix.clone(), vec![index]);
                    }
                }
                self.bindings.push(b);
            }
        }
    }

    /// A scope that declares nothing.
    #[inline]
    fn push_empty(&mut self) {
        self.marks.push(self.bindings.len());
    }

    #[inline]
    fn pop(&mut self) {
        if let Some(mark) = self.marks.pop()
            && mark < self.bindings.len()
        {
            count_work(self.bindings.len() - mark);
            self.generation += 1;
            for b in self.bindings.drain(mark..).rev() {
                if let Some(stack) = self.by_prefix.get_mut(b.prefix.as_str()) {
                    stack.pop();
                    if stack.is_empty() {
                        self.by_prefix.remove(b.prefix.as_str());
                    }
                }
            }
        }
    }

    /// Namespace declarations in scope (shadowed ones included).
    fn declarations(&self) -> usize {
        self.bindings.len()
    }

    fn resolve(&self, prefix: &str) -> Option<&str> {
        if prefix == "xml" {
            return Some(ns::XML);
        }
        count_work(1);
        let index = *self.by_prefix.get(prefix)?.last()?;
        Some(self.bindings[index].uri.as_str())
    }

    /// A non-default prefix currently bound to `uri`, if any (innermost first).
    fn prefix_for(&self, uri: &str) -> Option<&str> {
        count_work(self.bindings.len());
        self.bindings
            .iter()
            .rev()
            .filter(|b| !b.prefix.is_empty() && b.uri == uri)
            .map(|b| b.prefix.as_str())
            .find(|p| self.resolve(p) == Some(uri))
    }

    /// Whether the default namespace currently is `uri`.
    fn default_is(&self, uri: &str) -> bool {
        self.resolve("") == Some(uri)
    }

    /// The effective bindings in scope, one per prefix, undeclarations dropped,
    /// in declaration order.
    fn in_scope(&self) -> Vec<Binding> {
        count_work(self.bindings.len());
        self.bindings
            .iter()
            .enumerate()
            .filter(|(i, b)| {
                !b.uri.is_empty()
                    && self
                        .by_prefix
                        .get(b.prefix.as_str())
                        .and_then(|stack| stack.last())
                        == Some(i)
            })
            .map(|(_, b)| b.clone())
            .collect()
    }
}

struct Rewriter<'o, R: io::BufRead, W: Write> {
    reader: Reader<body::Rewind<R>>,
    sink: Sink<W>,
    options: &'o EncryptOptions,
    /// The input was transcoded to UTF-8; its declaration must say so.
    transcoded: bool,
    /// BinarySecurityToken (for `bst`) and EncryptedKey, ready to insert.
    security_elements: String,
    ids: MessageIds,
    content_key: Vec<u8>,
    /// Number of open elements.
    depth: usize,
    scopes: NamespaceScopes,
    version: Option<SoapVersion>,
    root_seen: bool,
    header_seen: bool,
    in_header: bool,
    security_written: bool,
    reused_security: bool,
    body: BodyState,
    plaintext_bytes: u64,
    /// Scratch buffer to hand a tag to the sink in one write.
    frame: Vec<u8>,
    /// The Body's start tag was just written: its content is next.
    scan_pending: bool,
    /// Bytes read past the parser by the Body scanner.
    scanned: u64,
    /// Elements started so far (for `max_elements`).
    elements: u64,
    /// Bytes of character data since the last tag (for `max_text_length`).
    text_run: u64,
}

/// The binding made by the namespace declaration `key="raw"` (`key` is `xmlns`
/// or `xmlns:prefix`; `value` is `raw` normalized).
fn namespace_binding(key: &str, raw: &str, value: String) -> Result<Binding, String> {
    let prefix = key.strip_prefix("xmlns:").unwrap_or("");
    if !prefix.is_empty() && value.is_empty() {
        return Err(format!("prefix {prefix} is undeclared"));
    }
    // Namespaces in XML: `xml` is bound to its namespace only, `xmlns` and the
    // xmlns namespace are never declared.
    if (prefix == "xml") != (value == ns::XML) || prefix == "xmlns" || value == XMLNS_NAMESPACE {
        return Err(format!(
            "reserved namespace prefix or name in declaration of {key}"
        ));
    }
    Ok(Binding {
        prefix: prefix.to_string(),
        raw: raw.to_string(),
        uri: value,
    })
}

/// A prefixed attribute name split at its colon: (prefix, local part).
type QualifiedName<'a> = (&'a str, &'a str);

/// An element name split into prefix and local part.
fn split_qname(name: &str) -> (&str, &str) {
    match name.split_once(':') {
        Some((p, l)) => (p, l),
        None => ("", name),
    }
}

impl<R: io::BufRead, W: Write> Rewriter<'_, R, W> {
    fn position(&self) -> u64 {
        self.reader.buffer_position() + self.scanned
    }

    fn malformed(&self, reason: impl Into<String>) -> EncryptError {
        EncryptError::Malformed {
            position: self.position(),
            reason: reason.into(),
        }
    }

    fn parse_error(&self, e: quick_xml::Error) -> EncryptError {
        match e {
            quick_xml::Error::Io(shared) => {
                // quick-xml shares the error behind an Arc: recover the size-limit
                // marker from it, or keep its kind (a stalled body is `TimedOut`).
                if let Some(limit) = shared
                    .get_ref()
                    .and_then(|inner| inner.downcast_ref::<InputTooLarge>())
                {
                    return EncryptError::TooLarge(InputTooLarge { limit: limit.limit });
                }
                EncryptError::Read(io::Error::new(shared.kind(), shared.to_string()))
            }
            other => EncryptError::Malformed {
                position: self.reader.error_position() + self.scanned,
                reason: other.to_string(),
            },
        }
    }

    fn run(&mut self) -> Result<(), EncryptError> {
        let mut buf = Vec::with_capacity(16 * 1024);
        loop {
            if std::mem::take(&mut self.scan_pending) {
                self.scan_body()?;
            }
            buf.clear();
            let event = match self.reader.read_event_into(&mut buf) {
                Ok(ev) => ev,
                Err(e) => return Err(self.parse_error(e)),
            };
            if let Some((_, reason)) = body::first_invalid_character(raw_bytes(&event)) {
                return Err(self.malformed(reason));
            }
            match event {
                Event::Eof => {
                    if self.depth != 0 {
                        return Err(self.malformed("the document ends inside an element"));
                    }
                    if !self.root_seen {
                        return Err(EncryptError::NoRoot);
                    }
                    if self.body != BodyState::Done {
                        return Err(EncryptError::NoBody);
                    }
                    return Ok(());
                }
                Event::DocType(_) => {
                    return Err(EncryptError::Doctype {
                        position: self.position(),
                    });
                }
                Event::Decl(d) => {
                    if self.position() != d.len() as u64 + 4 {
                        return Err(self.malformed("the XML declaration must come first"));
                    }
                    let text: &str = &d;
                    if !is_valid_declaration(text) {
                        return Err(self.malformed("invalid XML declaration"));
                    }
                    let text = if self.transcoded {
                        input::declaration_as_utf8(text)
                    } else {
                        text.to_string()
                    };
                    self.write(b"<?")?;
                    self.write(text.as_bytes())?;
                    self.write(b"?>")?;
                }
                Event::PI(pi) => {
                    let target = pi.split(|c: char| c.is_ascii_whitespace()).next();
                    if target.is_some_and(|t| t.eq_ignore_ascii_case("xml")) {
                        return Err(self.malformed("misplaced XML declaration"));
                    }
                    if !target.is_some_and(|t| is_xml_name(t) && !t.contains(':')) {
                        return Err(self.malformed("invalid processing instruction target"));
                    }
                    self.write(b"<?")?;
                    self.write(pi.as_bytes())?;
                    self.write(b"?>")?;
                }
                Event::Comment(c) => {
                    self.text_run = 0;
                    self.write_framed(b"<!--", c.as_bytes(), b"-->")?;
                }
                Event::Text(t) => {
                    if self.depth == 0 && !t.trim_ascii().is_empty() {
                        return Err(self.malformed("text outside the root element"));
                    }
                    if self.depth == 1 && !t.trim_ascii().is_empty() {
                        return Err(self.malformed("character data directly inside the Envelope"));
                    }
                    self.text(t.len())?;
                    if t.contains("]]>") {
                        return Err(self.malformed("']]>' in character data"));
                    }
                    self.write(t.as_bytes())?;
                }
                Event::CData(c) => {
                    if self.depth == 0 {
                        return Err(self.malformed("CDATA outside the root element"));
                    }
                    if self.depth == 1 {
                        return Err(self.malformed("character data directly inside the Envelope"));
                    }
                    self.text(c.len())?;
                    self.write_framed(b"<![CDATA[", c.as_bytes(), b"]]>")?;
                }
                Event::GeneralRef(r) => {
                    if self.depth == 0 {
                        return Err(self.malformed("reference outside the root element"));
                    }
                    if self.depth == 1 {
                        return Err(self.malformed("character data directly inside the Envelope"));
                    }
                    if r.len() > self.limits().max_name_length {
                        return Err(
                            self.over(XmlLimit::MaxNameLength, self.limits().max_name_length)
                        );
                    }
                    self.text(r.len() + 2)?;
                    if r.is_char_ref() {
                        match r.resolve_char_ref() {
                            Ok(Some(c)) if is_xml_char(c) => {}
                            _ => {
                                return Err(self
                                    .malformed(format!("invalid character reference &{};", &*r)));
                            }
                        }
                    } else if !matches!(&*r, "lt" | "gt" | "amp" | "apos" | "quot") {
                        return Err(self.malformed(format!(
                            "undefined entity &{};, entity declarations are refused",
                            &*r
                        )));
                    }
                    self.write_framed(b"&", r.as_bytes(), b";")?;
                }
                Event::Start(e) => self.start(e, false)?,
                Event::Empty(e) => self.start(e, true)?,
                Event::End(e) => {
                    self.text_run = 0;
                    let name: &str = &e;
                    self.end(name)?;
                }
            }
        }
    }

    /// Character data of `len` bytes: one text run lasts from tag to tag.
    fn text(&mut self, len: usize) -> Result<(), EncryptError> {
        self.text_run += len as u64;
        match self.limits().max_text_length {
            Some(max) if self.text_run > max => {
                Err(self.over(XmlLimit::MaxTextLength, max as usize))
            }
            _ => Ok(()),
        }
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), EncryptError> {
        self.sink.write_all(bytes).map_err(EncryptError::Write)
    }

    fn over(&self, limit: XmlLimit, value: usize) -> EncryptError {
        EncryptError::LimitExceeded {
            limit,
            value: value as u64,
            position: self.position(),
        }
    }

    fn limits(&self) -> &Limits {
        &self.options.limits
    }

    /// Check every attribute; collect namespace declarations and the other
    /// attributes' names split at the colon (prefix, local part).
    fn attributes<'e>(
        &self,
        e: &'e BytesStart<'_>,
    ) -> Result<(Vec<Binding>, Vec<QualifiedName<'e>>), EncryptError> {
        if e.attributes_raw().trim_ascii().is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        if !attributes_separated(e.attributes_raw()) {
            return Err(self.malformed("attributes must be separated by whitespace"));
        }
        let limits = *self.limits();
        let mut declared = Vec::new();
        let mut names: Vec<&'e str> = Vec::new();
        let mut qualified = Vec::new();
        for attr in e.attributes().with_checks(false) {
            let attr = attr.map_err(|err| self.malformed(format!("bad attribute: {err}")))?;
            if names.len() == limits.max_attributes_per_element {
                return Err(self.over(XmlLimit::MaxAttributesPerElement, names.len()));
            }
            let key = attr.key.0;
            if key.len() > limits.max_name_length {
                return Err(self.over(XmlLimit::MaxNameLength, limits.max_name_length));
            }
            if !is_xml_name(key) {
                return Err(self.malformed(format!("invalid attribute name {key:?}")));
            }
            let raw: &str = &attr.value;
            if limits
                .max_text_length
                .is_some_and(|max| raw.len() as u64 > max)
            {
                return Err(self.over(
                    XmlLimit::MaxTextLength,
                    limits.max_text_length.unwrap_or_default() as usize,
                ));
            }
            let value = if raw.contains('&') || raw.contains('<') {
                if raw.contains('<') {
                    return Err(self.malformed("'<' in an attribute value"));
                }
                body::check_references(raw.as_bytes(), limits.max_name_length).map_err(
                    |(_, reason)| match reason {
                        body::ReferenceError::TooLong => {
                            self.over(XmlLimit::MaxNameLength, limits.max_name_length)
                        }
                        body::ReferenceError::Invalid(reason) => self.malformed(reason),
                    },
                )?;
                attr.normalized_value(quick_xml::XmlVersion::Explicit1_0)
                    .map_err(|err| self.malformed(format!("bad attribute value: {err}")))?
                    .into_owned()
            } else {
                raw.to_string()
            };
            names.push(key);
            if key == "xmlns" || key.starts_with("xmlns:") {
                let binding = namespace_binding(key, raw, value).map_err(|r| self.malformed(r))?;
                declared.push(binding);
            } else if let Some(split) = key.split_once(':') {
                qualified.push(split);
            }
        }
        if has_duplicate(&mut names) {
            return Err(self.malformed("bad attribute: duplicate attribute name"));
        }
        Ok((declared, qualified))
    }

    /// Resolve an element name (after its own declarations are in scope).
    fn resolve_element(&self, name: &str) -> Result<(String, String), EncryptError> {
        let (prefix, local) = split_qname(name);
        let uri = match self.scopes.resolve(prefix) {
            Some(u) => u.to_string(),
            None if prefix.is_empty() => String::new(),
            None => return Err(self.malformed(format!("prefix {prefix} is not declared"))),
        };
        Ok((uri, local.to_string()))
    }

    fn start(&mut self, e: BytesStart<'_>, empty: bool) -> Result<(), EncryptError> {
        let limits = *self.limits();
        if self.depth + 1 > limits.max_depth {
            return Err(EncryptError::TooDeep {
                limit: limits.max_depth,
            });
        }
        self.elements += 1;
        if limits.max_elements.is_some_and(|max| self.elements > max) {
            return Err(self.over(
                XmlLimit::MaxElements,
                limits.max_elements.unwrap_or_default() as usize,
            ));
        }
        self.text_run = 0;
        if e.name().0.len() > limits.max_name_length {
            return Err(self.over(XmlLimit::MaxNameLength, limits.max_name_length));
        }
        if !is_xml_name(e.name().0) {
            return Err(self.malformed(format!("invalid element name {:?}", e.name().0)));
        }
        let (declared, qualified) = self.attributes(&e)?;
        let raw: &str = &e;
        let name = e.name().0;
        let (element_prefix, element_local) = split_qname(name);
        // `xmlns` is never an element's prefix (Namespaces in XML §3); the XML
        // namespace names no element, and parsers (roxmltree) refuse `xml:` on one.
        if element_prefix == "xmlns" || element_prefix == "xml" {
            return Err(self.malformed(format!(
                "element name {name:?} has the reserved prefix {element_prefix}"
            )));
        }
        // How the envelope namespace is written where a Header would be inserted
        // in front of this element (before its own declarations are in scope);
        // only a Body (or Header) child of the Envelope can need it.
        let env_scope_prefix = if self.depth == 1 && matches!(element_local, "Body" | "Header") {
            (
                self.envelope_prefix_in_scope(),
                self.named_envelope_prefix(),
            )
        } else {
            (None, None)
        };
        self.scopes.push(declared);
        if self.scopes.declarations() > limits.max_namespace_declarations {
            self.scopes.pop();
            return Err(self.over(
                XmlLimit::MaxNamespaceDeclarations,
                limits.max_namespace_declarations,
            ));
        }
        if let Err(e) = self.check_names(element_prefix, &qualified) {
            self.scopes.pop();
            return Err(e);
        }
        let result = self.dispatch_start(&e, raw, name, empty, env_scope_prefix);
        if empty {
            self.scopes.pop();
        } else {
            self.depth += 1;
        }
        result
    }

    /// Every prefix used must be declared (Namespaces in XML), at every depth:
    /// the receiver will resolve them after decryption. No two attributes may
    /// have the same expanded name (§6.3: `p:a` and `q:a` with `p` and `q`
    /// bound to one namespace).
    fn check_names(
        &self,
        element_prefix: &str,
        qualified: &[(&str, &str)],
    ) -> Result<(), EncryptError> {
        let mut expanded = Vec::with_capacity(qualified.len());
        for prefix in std::iter::once(element_prefix).chain(qualified.iter().map(|q| q.0)) {
            if !prefix.is_empty() && self.scopes.resolve(prefix).is_none() {
                return Err(self.malformed(format!("prefix {prefix} is not declared")));
            }
        }
        if qualified.len() < 2 {
            return Ok(());
        }
        for (prefix, local) in qualified {
            expanded.push((self.scopes.resolve(prefix).unwrap_or_default(), *local));
        }
        if has_duplicate(&mut expanded) {
            return Err(self.malformed(
                "bad attribute: two attributes with the same namespace and local name",
            ));
        }
        Ok(())
    }

    fn dispatch_start(
        &mut self,
        e: &BytesStart<'_>,
        raw: &str,
        name: &str,
        empty: bool,
        env_scope_prefix: (Option<String>, Option<String>),
    ) -> Result<(), EncryptError> {
        match self.depth {
            0 => {
                if self.root_seen {
                    return Err(self.malformed("more than one root element"));
                }
                self.root_seen = true;
                let (uri, local) = self.resolve_element(name)?;
                let version = SoapVersion::from_namespace(&uri);
                if local != "Envelope" || version.is_none() {
                    let found = if uri.is_empty() {
                        local
                    } else {
                        format!("{{{uri}}}{local}")
                    };
                    return Err(EncryptError::NotSoap { found });
                }
                self.version = version;
                if empty {
                    return Err(EncryptError::NoBody);
                }
                self.write_tag(raw, empty)
            }
            1 => self.envelope_child(raw, name, empty, env_scope_prefix),
            _ if self.in_header => {
                self.refuse_soap_structure_in_header(name)?;
                if self.depth == 2 {
                    self.header_block(e, raw, name, empty)
                } else {
                    self.write_tag(raw, empty)
                }
            }
            _ => self.write_tag(raw, empty),
        }
    }

    fn envelope_namespace(&self) -> &'static str {
        self.version.map(SoapVersion::namespace).unwrap_or_default()
    }

    /// How to write an element in the envelope namespace at the current scope:
    /// `Some(prefix)` or `Some("")` for the default namespace.
    fn envelope_prefix_in_scope(&self) -> Option<String> {
        let env = self.version?.namespace();
        if let Some(p) = self.scopes.prefix_for(env) {
            return Some(p.to_string());
        }
        self.scopes.default_is(env).then(String::new)
    }

    /// A decoy Envelope or Body inside the Header (of either SOAP version) would
    /// travel in plaintext beside the encrypted real one: a receiver that takes
    /// the first Body it finds would read it.
    fn refuse_soap_structure_in_header(&self, name: &str) -> Result<(), EncryptError> {
        let (uri, local) = self.resolve_element(name)?;
        if SoapVersion::from_namespace(&uri).is_some()
            && matches!(local.as_str(), "Body" | "Envelope")
        {
            return Err(self.malformed(format!("a SOAP {local} inside the Header")));
        }
        Ok(())
    }

    fn envelope_child(
        &mut self,
        raw: &str,
        name: &str,
        empty: bool,
        env_scope_prefix: (Option<String>, Option<String>),
    ) -> Result<(), EncryptError> {
        let (uri, local) = self.resolve_element(name)?;
        let is_env = uri == self.envelope_namespace();
        match (is_env, local.as_str()) {
            (true, "Header") => {
                if self.header_seen || self.body != BodyState::NotYet {
                    return Err(self.malformed("Header must come once, before the Body"));
                }
                self.header_seen = true;
                if empty {
                    // `<soap:Header/>`: open it, add the Security header, close it.
                    self.write_tag(raw, false)?;
                    let named = self.named_envelope_prefix();
                    self.write_new_security(named)?;
                    self.write(b"</")?;
                    self.write(name.as_bytes())?;
                    self.write(b">")
                } else {
                    self.in_header = true;
                    self.write_tag(raw, false)
                }
            }
            (true, "Body") => {
                if self.body != BodyState::NotYet {
                    return Err(EncryptError::TwoBodies {
                        position: self.position(),
                    });
                }
                if !self.security_written {
                    let (element_prefix, named_prefix) = env_scope_prefix;
                    let prefix = element_prefix.unwrap_or_default();
                    let tag = if prefix.is_empty() {
                        "Header".to_string()
                    } else {
                        format!("{prefix}:Header")
                    };
                    self.write(format!("<{tag}>").as_bytes())?;
                    self.write_new_security(named_prefix)?;
                    self.write(format!("</{tag}>").as_bytes())?;
                }
                if empty {
                    return Err(EncryptError::EmptyBody);
                }
                self.write_tag(raw, false)?;
                self.begin_encryption()
            }
            _ => {
                if self.body == BodyState::NotYet {
                    return Err(self.malformed(format!(
                        "element {name} before the Body: only a Header may come first"
                    )));
                }
                if self.body == BodyState::Done && self.version == Some(SoapVersion::Soap12) {
                    return Err(self.malformed("SOAP 1.2 allows no element after the Body"));
                }
                if is_env && local == "Envelope" {
                    return Err(self.malformed("an Envelope inside the Envelope"));
                }
                self.write_tag(raw, empty)
            }
        }
    }

    fn header_block(
        &mut self,
        e: &BytesStart<'_>,
        raw: &str,
        name: &str,
        empty: bool,
    ) -> Result<(), EncryptError> {
        let (uri, local) = self.resolve_element(name)?;
        if uri != ns::WSSE || local != "Security" || !self.for_ultimate(e)? {
            return self.write_tag(raw, empty);
        }
        // WSS 1.0 §6.1: one Security header per role; a second one for the
        // ultimate receiver leaves receivers to guess which one counts.
        if self.security_written {
            return Err(self.malformed("a second wsse:Security header for the ultimate receiver"));
        }
        self.write_tag(raw, false)?;
        let elements = std::mem::take(&mut self.security_elements);
        self.write(elements.as_bytes())?;
        self.security_written = true;
        self.reused_security = true;
        if empty {
            self.write(b"</")?;
            self.write(name.as_bytes())?;
            self.write(b">")?;
        }
        Ok(())
    }

    /// Whether a header block targets the ultimate receiver (no actor/role, or the
    /// SOAP 1.2 ultimateReceiver role).
    fn for_ultimate(&self, e: &BytesStart<'_>) -> Result<bool, EncryptError> {
        let env = self.envelope_namespace();
        let role_name = match self.version {
            Some(SoapVersion::Soap12) => "role",
            _ => "actor",
        };
        for attr in e.attributes().with_checks(false) {
            let attr = attr.map_err(|err| self.malformed(format!("bad attribute: {err}")))?;
            let (prefix, local) = split_qname(attr.key.0);
            if prefix.is_empty() || local != role_name || self.scopes.resolve(prefix) != Some(env) {
                continue;
            }
            let value = attr.value.trim();
            return Ok(value.is_empty() || value == ns::SOAP12_ULTIMATE_RECEIVER);
        }
        Ok(true)
    }

    /// A non-default prefix bound to the envelope namespace in the current scope.
    fn named_envelope_prefix(&self) -> Option<String> {
        let env = self.version?.namespace();
        self.scopes.prefix_for(env).map(str::to_string)
    }

    /// Write a new Security header. `named_prefix` is a prefix bound to the envelope
    /// namespace where the header is inserted (for `mustUnderstand`), if any.
    fn write_new_security(&mut self, named_prefix: Option<String>) -> Result<(), EncryptError> {
        let mut tag = format!(r#"<wsse:Security xmlns:wsse="{}""#, ns::WSSE);
        if self.options.must_understand {
            let env = self.envelope_namespace();
            let version = self.version.unwrap_or(SoapVersion::Soap11);
            let prefix = match named_prefix {
                Some(p) if p != "wsse" => p,
                _ => {
                    let p = match version {
                        SoapVersion::Soap11 => "soapenv",
                        SoapVersion::Soap12 => "env",
                    };
                    tag.push_str(&format!(r#" xmlns:{p}="{env}""#));
                    p.to_string()
                }
            };
            tag.push_str(&format!(
                r#" {prefix}:mustUnderstand="{}""#,
                version.must_understand_true()
            ));
        }
        tag.push('>');
        let elements = std::mem::take(&mut self.security_elements);
        self.write(tag.as_bytes())?;
        self.write(elements.as_bytes())?;
        self.write(b"</wsse:Security>")?;
        self.security_written = true;
        Ok(())
    }

    fn begin_encryption(&mut self) -> Result<(), EncryptError> {
        let start = header::encrypted_data_start(&self.options.algorithms, &self.ids);
        let Sink::Plain(mut out) = std::mem::replace(&mut self.sink, Sink::Gone) else {
            return Err(EncryptError::Write(io::Error::other(
                "output in wrong state",
            )));
        };
        out.write_all(start.as_bytes())
            .map_err(EncryptError::Write)?;
        let writer = EncryptingWriter::new(
            out,
            self.options.algorithms.data_encryption,
            &self.content_key,
        )?;
        self.sink = Sink::Cipher(writer);
        self.body = BodyState::Inside { saw_element: false };
        self.scan_pending = true;
        Ok(())
    }

    fn finish_encryption(&mut self, body_end_name: &str) -> Result<(), EncryptError> {
        if self.body != (BodyState::Inside { saw_element: true }) {
            return Err(EncryptError::EmptyBody);
        }
        let Sink::Cipher(writer) = std::mem::replace(&mut self.sink, Sink::Gone) else {
            return Err(EncryptError::Write(io::Error::other(
                "output in wrong state",
            )));
        };
        let (mut out, plaintext) = writer.finish().map_err(EncryptError::Write)?;
        self.plaintext_bytes = plaintext;
        out.write_all(header::ENCRYPTED_DATA_END.as_bytes())
            .and_then(|_| out.write_all(b"</"))
            .and_then(|_| out.write_all(body_end_name.as_bytes()))
            .and_then(|_| out.write_all(b">"))
            .map_err(EncryptError::Write)?;
        self.sink = Sink::Plain(out);
        self.body = BodyState::Done;
        Ok(())
    }

    /// The Body's content, up to its end tag, through the Body scanner.
    fn scan_body(&mut self) -> Result<(), EncryptError> {
        let start = body::BodyStart {
            position: self.position(),
            depth: self.depth,
            limits: self.options.limits,
            elements: self.elements,
        };
        let Sink::Cipher(out) = &mut self.sink else {
            return Err(EncryptError::Write(io::Error::other(
                "output in wrong state",
            )));
        };
        let scan = body::Scanner::new(self.reader.get_mut(), out, &mut self.scopes, start).run()?;
        self.scanned += scan.scanned;
        self.elements = scan.elements;
        self.body = BodyState::Inside {
            saw_element: scan.saw_element,
        };
        Ok(())
    }

    fn write_tag(&mut self, raw: &str, empty: bool) -> Result<(), EncryptError> {
        self.write_framed(b"<", raw.as_bytes(), if empty { b"/>" } else { b">" })
    }

    /// Write `open`, `content`, `close` with one call into the sink.
    fn write_framed(
        &mut self,
        open: &[u8],
        content: &[u8],
        close: &[u8],
    ) -> Result<(), EncryptError> {
        self.frame.clear();
        self.frame.extend_from_slice(open);
        self.frame.extend_from_slice(content);
        self.frame.extend_from_slice(close);
        self.sink
            .write_all(&self.frame)
            .map_err(EncryptError::Write)
    }

    fn end(&mut self, name: &str) -> Result<(), EncryptError> {
        if self.depth == 0 {
            return Err(self.malformed(format!("unexpected end tag </{name}>")));
        }
        let closing_depth = self.depth;
        if closing_depth == 2 && self.in_header {
            if !self.security_written {
                let named = self.named_envelope_prefix();
                self.write_new_security(named)?;
            }
            self.in_header = false;
            self.write_end(name)?;
        } else if closing_depth == 2 && matches!(self.body, BodyState::Inside { .. }) {
            self.finish_encryption(name)?;
        } else {
            self.write_end(name)?;
        }
        self.scopes.pop();
        self.depth -= 1;
        Ok(())
    }

    fn write_end(&mut self, name: &str) -> Result<(), EncryptError> {
        self.write_framed(b"</", name.as_bytes(), b">")
    }
}

/// Whether `items` holds two equal elements (sorts it when it is long).
fn has_duplicate<T: Ord>(items: &mut [T]) -> bool {
    if items.len() <= 16 {
        return (1..items.len()).any(|j| (0..j).any(|k| items[j] == items[k]));
    }
    items.sort_unstable();
    items.windows(2).any(|w| w[0] == w[1])
}

/// The bytes of an event as the parser saw them (without its delimiters).
fn raw_bytes<'a>(event: &'a Event<'_>) -> &'a [u8] {
    match event {
        Event::Start(e) | Event::Empty(e) => e.as_bytes(),
        Event::End(e) => e.as_bytes(),
        Event::Text(e) | Event::Comment(e) | Event::DocType(e) => e.as_bytes(),
        Event::CData(e) => e.as_bytes(),
        Event::Decl(e) => e.as_bytes(),
        Event::PI(e) => e.as_bytes(),
        Event::GeneralRef(e) => e.as_bytes(),
        Event::Eof => &[],
    }
}

/// The XMLDecl production: `xml`, then `version`, optional `encoding` and
/// optional `standalone`, in that order, each quoted.
fn is_valid_declaration(decl: &str) -> bool {
    let Some(mut rest) = decl.strip_prefix("xml") else {
        return false;
    };
    let mut seen = Vec::new();
    loop {
        let trimmed = rest.trim_start_matches([' ', '\t', '\r', '\n']);
        if trimmed.is_empty() {
            break;
        }
        if trimmed.len() == rest.len() {
            return false; // pseudo-attributes are separated by whitespace
        }
        let Some((name, after)) = trimmed.split_once('=') else {
            return false;
        };
        let after = after.trim_start_matches([' ', '\t', '\r', '\n']);
        let Some(quote) = after.chars().next().filter(|c| *c == '"' || *c == '\'') else {
            return false;
        };
        let Some(end) = after[1..].find(quote) else {
            return false;
        };
        let value = &after[1..1 + end];
        let name = name.trim_end_matches([' ', '\t', '\r', '\n']);
        let valid = match name {
            "version" => {
                seen.is_empty()
                    && value
                        .strip_prefix("1.")
                        .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
            }
            "encoding" => {
                seen == ["version"]
                    && value.starts_with(|c: char| c.is_ascii_alphabetic())
                    && value
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            }
            "standalone" => {
                !seen.is_empty() && !seen.contains(&"standalone") && matches!(value, "yes" | "no")
            }
            _ => false,
        };
        if !valid {
            return false;
        }
        seen.push(match name {
            "version" => "version",
            "encoding" => "encoding",
            _ => "standalone",
        });
        rest = &after[1 + end + 1..];
    }
    seen.first() == Some(&"version")
}

/// Whether every quoted attribute value is followed by whitespace or the end of
/// the tag (quick-xml accepts `a="1"b="2"`, XML does not).
fn attributes_separated(raw: &str) -> bool {
    let mut quote: Option<char> = None;
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) if c == q => {
                quote = None;
                if chars
                    .peek()
                    .is_some_and(|n| !n.is_ascii_whitespace() && *n != '/')
                {
                    return false;
                }
            }
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None => {}
        }
    }
    true
}

/// The NameStartChar production of XML 1.0 (fifth edition), without `:`.
fn is_name_start(c: char) -> bool {
    matches!(c,
        'A'..='Z' | '_' | 'a'..='z' | '\u{C0}'..='\u{D6}' | '\u{D8}'..='\u{F6}'
        | '\u{F8}'..='\u{2FF}' | '\u{370}'..='\u{37D}' | '\u{37F}'..='\u{1FFF}'
        | '\u{200C}'..='\u{200D}' | '\u{2070}'..='\u{218F}' | '\u{2C00}'..='\u{2FEF}'
        | '\u{3001}'..='\u{D7FF}' | '\u{F900}'..='\u{FDCF}' | '\u{FDF0}'..='\u{FFFD}'
        | '\u{10000}'..='\u{EFFFF}')
}

/// The NameChar production of XML 1.0, without `:`.
fn is_name_char(c: char) -> bool {
    is_name_start(c)
        || matches!(c, '-' | '.' | '0'..='9' | '\u{B7}' | '\u{300}'..='\u{36F}' | '\u{203F}'..='\u{2040}')
}

/// A QName of Namespaces in XML: `prefix:local` or `local`, each an NCName.
fn is_xml_name(name: &str) -> bool {
    let ncname = |part: &str| {
        let mut chars = part.chars();
        chars.next().is_some_and(is_name_start) && chars.all(is_name_char)
    };
    match name.split_once(':') {
        Some((prefix, local)) => ncname(prefix) && ncname(local),
        None => ncname(name),
    }
}

/// The Char production of XML 1.0.
fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}
