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
mod error;
mod namespaces;
mod soap;
mod xml;

pub use error::{EncryptError, EncryptSummary};
pub use namespaces::namespace_work;
use namespaces::*;
use xml::*;
/// The XML rules the canonicalizer shares with the rewriter.
pub(crate) use {body::first_invalid_character, xml::is_xml_name};

use std::cell::Cell;
use std::io::{self, BufWriter, Read, Write};

use quick_xml::events::{BytesStart, Event};
use quick_xml::reader::Reader;

use super::algorithms::{KeyIdentifier, ns};

/// The scanner's maps (namespace prefixes, which the sender chooses): a fast
/// hash with a per-process random seed, so that colliding prefixes cannot be
/// chosen in advance. SipHash cost a sixth of a small message's encryption.
pub(super) type PrefixMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
use super::cipher::{self, CipherError, EncryptingWriter};
use super::header::{self, MessageIds};
use super::input::{self, InputTooLarge, UnsupportedEncoding};
use super::{CertificateError, EncryptOptions, Limits, Recipient, SoapVersion, XmlLimit};

const XMLNS_NAMESPACE: &str = "http://www.w3.org/2000/xmlns/";

/// The SOAP version of an envelope from its first bytes (the namespace of its
/// root element), when they are enough to tell. Called on every request, so a
/// UTF-8 head is parsed where it lies; only other encodings are decoded first.
pub fn sniff_version(head: &[u8]) -> Option<SoapVersion> {
    if input::is_utf8_as_is(head) {
        let mut reader = Reader::from_reader(head);
        loop {
            match reader.read_event().ok()? {
                Event::Start(e) | Event::Empty(e) => return root_version(&e),
                Event::Eof => return None,
                _ => {}
            }
        }
    }
    let (reader, _) = input::utf8_reader_sized(head, Some(head.len())).ok()?;
    let mut reader = Reader::from_reader(reader);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_event_into(&mut buf).ok()? {
            Event::Start(e) | Event::Empty(e) => return root_version(&e),
            Event::Eof => return None,
            _ => {}
        }
    }
}

/// The SOAP version of the namespace `root`'s own prefix is bound to on it.
fn root_version(root: &BytesStart<'_>) -> Option<SoapVersion> {
    let (prefix, _) = split_qname(root.name().0);
    let declares = |key: &str| match prefix {
        "" => key == "xmlns",
        p => key.strip_prefix("xmlns:") == Some(p),
    };
    root.attributes()
        .flatten()
        .find(|a| declares(a.key.0))
        .and_then(|a| SoapVersion::from_namespace(&a.value))
}

/// Encrypt a whole envelope held in memory.
pub fn encrypt_to_vec(
    envelope: &[u8],
    recipient: &Recipient,
    options: &EncryptOptions,
) -> Result<(Vec<u8>, EncryptSummary), EncryptError> {
    encrypt_held_to_vec(envelope, envelope.len(), recipient, options)
}

/// Encrypt a whole envelope held in memory in pieces (a request body as its
/// frames came), read through `envelope`, `len` bytes in all.
pub fn encrypt_held_to_vec<R: Read>(
    envelope: R,
    len: usize,
    recipient: &Recipient,
    options: &EncryptOptions,
) -> Result<(Vec<u8>, EncryptSummary), EncryptError> {
    let mut out = Vec::with_capacity(len * 4 / 3 + 4096);
    let summary = encrypt_envelope_with(envelope, &mut out, recipient, options, None, Some(len))?;
    Ok((out, summary))
}

/// Encrypt a whole envelope held in memory, and the header element whose
/// unqualified `Id` is `element_id` too (a Signature), with the same key.
pub(crate) fn encrypt_to_vec_with(
    envelope: &[u8],
    recipient: &Recipient,
    options: &EncryptOptions,
    element_id: Option<&str>,
) -> Result<(Vec<u8>, EncryptSummary), EncryptError> {
    let mut out = Vec::with_capacity(envelope.len() * 4 / 3 + 4096);
    let summary = encrypt_envelope_with(
        envelope,
        &mut out,
        recipient,
        options,
        element_id,
        Some(envelope.len()),
    )?;
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
    encrypt_envelope_with(input, output, recipient, options, None, None)
}

fn encrypt_envelope_with<R: Read, W: Write>(
    input: R,
    output: W,
    recipient: &Recipient,
    options: &EncryptOptions,
    element_id: Option<&str>,
    input_len: Option<usize>,
) -> Result<EncryptSummary, EncryptError> {
    let algorithms = options.algorithms;
    if algorithms.key_identifier == KeyIdentifier::Ski && recipient.info().ski.is_none() {
        return Err(CertificateError::NoSubjectKeyIdentifier.into());
    }
    let limited = input::LimitedReader::new(input, options.limits.max_bytes);
    let (reader, info) = input::utf8_reader_sized(limited, input_len).map_err(|e| match e {
        input::InputError::Io(io) => EncryptError::from_read(io),
        input::InputError::Unsupported(u) => EncryptError::UnsupportedEncoding(u),
        contradictory @ input::InputError::Contradictory(_) => EncryptError::Malformed {
            position: 0,
            reason: contradictory.to_string(),
        },
    })?;

    // Every random value of the message in one draw: each call into OpenSSL's
    // generator costs more than the few dozen bytes it makes. The parts are split
    // off from the end, so the content key keeps the draw's allocation (the rest
    // of which holds only what is published: IVs and ids).
    let (key_len, iv_len) = (
        algorithms.data_encryption.key_len(),
        algorithms.data_encryption.iv_len(),
    );
    let element_len = if element_id.is_some() {
        header::ID_BYTES + iv_len
    } else {
        0
    };
    let mut content_key =
        cipher::random_bytes(key_len + iv_len + MessageIds::RANDOM_LEN + element_len)?;
    let mut element_random = content_key.split_off(key_len + iv_len + MessageIds::RANDOM_LEN);
    let id_bytes = content_key.split_off(key_len + iv_len);
    let body_iv = content_key.split_off(key_len);
    let wrapped = recipient.key_wrap().wrap(
        algorithms.key_transport,
        algorithms.oaep_digest,
        &content_key,
    )?;
    let mut ids = MessageIds::from_random(id_bytes[..].try_into().expect("RANDOM_LEN bytes"));
    let element_iv = if element_id.is_some() {
        let iv = element_random.split_off(header::ID_BYTES);
        ids.encrypted_element = Some(header::random_id("ED", &element_random));
        Some(iv)
    } else {
        None
    };
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
        body_iv: Some(body_iv),
        element_iv,
        depth: 0,
        scopes: NamespaceScopes::default(),
        version: None,
        root_seen: false,
        header_seen: false,
        in_header: false,
        security_written: false,
        reused_security: false,
        security_offset: 0,
        element_id,
        element_depth: None,
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
    if rewriter.element_id.is_some() {
        return Err(EncryptError::Malformed {
            position: rewriter.position(),
            reason: "the element to encrypt is not in the Header".into(),
        });
    }
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
        security_elements_offset: rewriter.security_offset,
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
    /// The Body's IV, drawn with the content key (taken when its encryption begins).
    body_iv: Option<Vec<u8>>,
    /// The IV of the header element encrypted too (`element_id`), drawn likewise.
    element_iv: Option<Vec<u8>>,
    /// Number of open elements.
    depth: usize,
    scopes: NamespaceScopes,
    version: Option<SoapVersion>,
    root_seen: bool,
    header_seen: bool,
    in_header: bool,
    security_written: bool,
    reused_security: bool,
    /// Output offset of the security elements (see [`EncryptSummary`]).
    security_offset: u64,
    /// The unqualified `Id` of a header element to encrypt as an element.
    element_id: Option<&'o str>,
    /// The depth of that element while it is being encrypted.
    element_depth: Option<usize>,
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
                } else if self.is_element_to_encrypt(e) {
                    self.encrypt_element(raw, empty)
                } else {
                    self.write_tag(raw, empty)
                }
            }
            _ => self.write_tag(raw, empty),
        }
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
            if self.element_depth == Some(closing_depth - 1) {
                self.finish_element_encryption()?;
            }
        }
        self.scopes.pop();
        self.depth -= 1;
        Ok(())
    }

    fn write_end(&mut self, name: &str) -> Result<(), EncryptError> {
        self.write_framed(b"</", name.as_bytes(), b">")
    }
}

#[cfg(test)]
mod sniff_tests {
    use super::*;

    const S11: &str = "http://schemas.xmlsoap.org/soap/envelope/";
    const S12: &str = "http://www.w3.org/2003/05/soap-envelope";

    fn utf16le(text: &str) -> Vec<u8> {
        let mut out = vec![0xFF, 0xFE];
        out.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
        out
    }

    #[test]
    fn the_version_is_read_from_the_roots_own_prefix_in_every_encoding() {
        let v11 = Some(SoapVersion::Soap11);
        let v12 = Some(SoapVersion::Soap12);
        let cases: Vec<(Vec<u8>, Option<SoapVersion>)> = vec![
            (format!(r#"<s:Envelope xmlns:s="{S11}"><s:Body/>"#).into(), v11),
            (format!(r#"<Envelope xmlns="{S12}"><Body/>"#).into(), v12),
            (
                format!(r#"<?xml version="1.0" encoding="UTF-8"?><!-- c --><e:Envelope xmlns:x="{S11}" xmlns:e="{S12}">"#).into(),
                v12,
            ),
            // Another prefix bound to SOAP's namespace does not make the root SOAP.
            (format!(r#"<e:Envelope xmlns:s="{S11}" xmlns:e="urn:x">"#).into(), None),
            (format!(r#"<Envelope xmlns:s="{S11}">"#).into(), None),
            (format!(r#"<s:Envelope xmlns:ss="{S11}">"#).into(), None),
            // Encodings other than UTF-8 as it stands go through the decoder.
            (
                format!(r#"<?xml version="1.0" encoding="ISO-8859-1"?><s:Envelope xmlns:s="{S11}">"#).into(),
                v11,
            ),
            ([&[0xEF, 0xBB, 0xBF][..], format!(r#"<s:Envelope xmlns:s="{S12}">"#).as_bytes()].concat(), v12),
            (utf16le(&format!(r#"<s:Envelope xmlns:s="{S11}">"#)), v11),
            (b"<s:Envel".to_vec(), None),
            (b"".to_vec(), None),
        ];
        for (head, expected) in cases {
            assert_eq!(
                sniff_version(&head),
                expected,
                "{}",
                String::from_utf8_lossy(&head)
            );
        }
        assert!(input::is_utf8_as_is(b"<a/>"));
        assert!(input::is_utf8_as_is(
            br#"<?xml version="1.0" encoding="utf-8"?><a/>"#
        ));
        assert!(!input::is_utf8_as_is(
            br#"<?xml version="1.0" encoding="latin1"?><a/>"#
        ));
        assert!(!input::is_utf8_as_is(&utf16le("<a/>")));
    }
}

#[cfg(test)]
mod draw_tests {
    use super::*;
    use crate::receiver::{CertSpec, KeyPair};
    use base64::Engine as _;

    fn cipher_values(out: &str) -> Vec<Vec<u8>> {
        out.split("<xenc:CipherValue>")
            .skip(1)
            .map(|p| {
                let text = &p[..p.find('<').unwrap()];
                base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .unwrap()
            })
            .collect()
    }

    /// Every `Id` value wssgate made (`PREFIX-` and 16 hex digits) as bytes.
    fn made_ids(out: &str) -> Vec<Vec<u8>> {
        out.split("Id=\"")
            .skip(1)
            .filter_map(|p| {
                let value = &p[..p.find('"')?];
                let (_, hex_part) = value.split_once('-')?;
                (hex_part.len() == 2 * header::ID_BYTES)
                    .then(|| hex::decode(hex_part).ok())
                    .flatten()
            })
            .collect()
    }

    /// The key, both IVs and every id come from one draw: no part is another's
    /// bytes, and a second message shares none of them.
    #[test]
    fn each_part_of_the_draw_is_used_once_with_an_encrypted_header_element_too() {
        let pair = KeyPair::generate(&CertSpec::default()).unwrap();
        let recipient = Recipient::new(pair.cert.clone()).unwrap();
        let rsa = pair.key.rsa().unwrap();
        let envelope = br#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Header><wsse:Security xmlns:wsse="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"><Sig Id="sig-1">signed</Sig></wsse:Security></s:Header><s:Body><a>1</a></s:Body></s:Envelope>"#;
        let mut options = EncryptOptions::default();
        options.algorithms.key_identifier = KeyIdentifier::Bst;
        let mut seen: Vec<Vec<u8>> = Vec::new();
        for _ in 0..2 {
            let (out, _) =
                encrypt_to_vec_with(envelope, &recipient, &options, Some("sig-1")).unwrap();
            let out = String::from_utf8(out).unwrap();
            let values = cipher_values(&out);
            assert_eq!(values.len(), 3, "key, element, Body: {out}");
            let mut key = vec![0; rsa.size() as usize];
            let n = rsa
                .private_decrypt(&values[0], &mut key, openssl::rsa::Padding::PKCS1_OAEP)
                .unwrap();
            key.truncate(n);
            assert_eq!(key.len(), 32);
            let ivs = [values[1][..16].to_vec(), values[2][..16].to_vec()];
            let ids = made_ids(&out);
            // EncryptedKey, EncryptedData, the element's EncryptedData, the token.
            assert_eq!(ids.len(), 4, "{out}");
            let parts: Vec<&[u8]> = [&key[..], &ivs[0], &ivs[1]]
                .into_iter()
                .chain(ids.iter().map(Vec::as_slice))
                .collect();
            for (i, part) in parts.iter().enumerate() {
                for (j, other) in parts.iter().enumerate() {
                    if i != j {
                        assert!(
                            other.windows(8).all(|w| !part.windows(8).any(|p| p == w)),
                            "parts {i} and {j} share bytes"
                        );
                    }
                }
                for earlier in &seen {
                    assert!(earlier.windows(8).all(|w| !part.windows(8).any(|p| p == w)));
                }
            }
            seen.extend(parts.into_iter().map(<[u8]>::to_vec));
        }
    }
}

#[cfg(test)]
mod stepping_tests {
    use super::*;
    use crate::receiver::{CertSpec, KeyPair};
    use crate::wss::DataEncryption;

    /// With AES-CBC the Body's blocks are encrypted in steps between the
    /// scanner's tokens, nearly all of them: the scanner hands its bytes over in
    /// short runs and steps the cipher after each token. GCM is not stepped.
    #[test]
    fn the_body_is_encrypted_while_it_is_scanned() {
        let pair = KeyPair::generate(&CertSpec::default()).unwrap();
        let recipient = Recipient::new(pair.cert.clone()).unwrap();
        let lines: String = (0..2000)
            .map(|i| {
                format!(r#"<o:line no="{i}"><o:sku>SKU-{i:08}</o:sku><o:qty>3</o:qty></o:line>"#)
            })
            .collect();
        let envelope = format!(
            r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><o:submit xmlns:o="urn:o">{lines}</o:submit></s:Body></s:Envelope>"#
        );
        let blocks = (lines.len() / 16) as u64;
        for (data_encryption, stepped) in [
            (DataEncryption::Aes256Cbc, true),
            (DataEncryption::Aes128Cbc, true),
            (DataEncryption::Aes256Gcm, false),
        ] {
            let mut options = EncryptOptions::default();
            options.algorithms.data_encryption = data_encryption;
            let before = cipher::STEPPED_BLOCKS.with(|n| n.get());
            encrypt_to_vec(envelope.as_bytes(), &recipient, &options).unwrap();
            let steps = cipher::STEPPED_BLOCKS.with(|n| n.get()) - before;
            if stepped {
                assert!(
                    steps * 10 >= blocks * 9,
                    "{data_encryption}: {steps} of {blocks}"
                );
            } else {
                assert_eq!(steps, 0, "{data_encryption}");
            }
        }
    }
}
