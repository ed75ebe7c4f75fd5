//! Exclusive XML Canonicalization 1.0 (`http://www.w3.org/2001/10/xml-exc-c14n#`),
//! with or without comments, with the InclusiveNamespaces PrefixList.
//!
//! It canonicalizes a whole document, or in one streaming pass every element
//! named by an `Id` (unqualified, as on `ds:Object`) or `wsu:Id` attribute, each
//! into its own writer (a digest, when signing). It owns the canonical form only:
//! which elements are signed and what the digests mean lives in `sign`.
//!
//! Cost is linear in the input: namespace declarations in scope resolve through
//! a map to a stack per prefix, and each element looks up only the prefixes it
//! uses (plus the PrefixList), so neither deep nesting nor many declarations
//! make it quadratic. Nothing recurses: depth costs heap, not stack.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::{self, Write};

use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesStart, Event};
use quick_xml::reader::Reader;

use super::algorithms::ns;
use super::envelope::{first_invalid_character, is_xml_name};

#[cfg(test)]
mod tests;

/// The canonicalization algorithm URI wssgate writes.
pub const EXC_C14N: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";
/// Exclusive canonicalization keeping comments.
pub const EXC_C14N_WITH_COMMENTS: &str = "http://www.w3.org/2001/10/xml-exc-c14n#WithComments";

/// Why a document could not be canonicalized.
#[derive(Debug, thiserror::Error)]
pub enum C14nError {
    #[error("malformed XML at byte {position}: {reason}")]
    Malformed { position: u64, reason: String },
    #[error("document type declarations are refused")]
    Doctype,
    #[error("prefix {0} is not declared")]
    UndeclaredPrefix(String),
    #[error("the Id {0:?} names more than one element")]
    DuplicateId(String),
    #[error("no element has the Id {0:?}")]
    IdNotFound(String),
    #[error("writing the canonical form failed: {0}")]
    Write(#[from] io::Error),
}

/// How to canonicalize.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct C14nOptions {
    /// Keep comments (`#WithComments`).
    pub with_comments: bool,
    /// The InclusiveNamespaces PrefixList: prefixes treated as Canonical XML
    /// does (rendered where in scope and not already rendered), `""` for
    /// `#default`.
    pub inclusive_prefixes: Vec<String>,
}

impl C14nOptions {
    /// Options from a PrefixList attribute value (`"bar #default"`).
    pub fn with_prefix_list(list: &str) -> C14nOptions {
        C14nOptions {
            with_comments: false,
            inclusive_prefixes: list
                .split_ascii_whitespace()
                .map(|p| {
                    if p == "#default" {
                        String::new()
                    } else {
                        p.to_string()
                    }
                })
                .collect(),
        }
    }
}

/// Canonicalize a whole document.
pub fn canonicalize_document<W: Write>(
    xml: &str,
    options: &C14nOptions,
    out: &mut W,
) -> Result<(), C14nError> {
    let mut sinks = [out];
    run(xml, options, Target::Document, &mut sinks)
}

/// Canonicalize the subtree of each element whose `Id` or `wsu:Id` is in `ids`,
/// in one pass, into the writer at the same index. Every Id must name exactly
/// one element.
pub fn canonicalize_ids<W: Write>(
    xml: &str,
    ids: &[&str],
    options: &C14nOptions,
    outs: &mut [W],
) -> Result<(), C14nError> {
    debug_assert_eq!(ids.len(), outs.len());
    run(xml, options, Target::Ids(ids), outs)
}

/// Canonicalize one element's subtree to a vector.
pub fn canonicalize_id(xml: &str, id: &str, options: &C14nOptions) -> Result<Vec<u8>, C14nError> {
    let mut outs = [Vec::new()];
    canonicalize_ids(xml, &[id], options, &mut outs)?;
    let [out] = outs;
    Ok(out)
}

enum Target<'a> {
    Document,
    Ids(&'a [&'a str]),
    /// The first element with this namespace URI and local name.
    FirstNamed(&'a str, &'a str),
}

/// Canonicalize the subtree of the first element (in document order) with
/// namespace URI `namespace` (`""` for none) and local name `local`.
pub fn canonicalize_first_named(
    xml: &str,
    namespace: &str,
    local: &str,
    options: &C14nOptions,
) -> Result<Vec<u8>, C14nError> {
    let mut outs = [Vec::new()];
    run(
        xml,
        options,
        Target::FirstNamed(namespace, local),
        &mut outs,
    )?;
    let [out] = outs;
    if !outs_filled(&out) {
        return Err(C14nError::IdNotFound(format!("{{{namespace}}}{local}")));
    }
    Ok(out)
}

/// Every canonical element starts with `<`: an empty output means no match.
fn outs_filled(out: &[u8]) -> bool {
    !out.is_empty()
}

/// Namespace declarations in scope: prefix ("" for the default) to a stack of
/// URIs, and per open element the prefixes it declared (to pop them).
#[derive(Default)]
pub(crate) struct Scopes {
    by_prefix: HashMap<String, Vec<String>>,
    frames: Vec<Vec<String>>,
}

impl Scopes {
    pub(crate) fn push(&mut self, declared: Vec<(String, String)>) {
        let mut prefixes = Vec::with_capacity(declared.len());
        for (prefix, uri) in declared {
            self.by_prefix.entry(prefix.clone()).or_default().push(uri);
            prefixes.push(prefix);
        }
        self.frames.push(prefixes);
    }

    pub(crate) fn pop(&mut self) {
        for prefix in self.frames.pop().unwrap_or_default() {
            if let Some(stack) = self.by_prefix.get_mut(&prefix) {
                stack.pop();
                if stack.is_empty() {
                    self.by_prefix.remove(&prefix);
                }
            }
        }
    }

    /// The binding of `prefix` in scope, both strings borrowed from the scopes
    /// (`("", "")` for an undeclared default; `None` for an undeclared prefix).
    fn binding(&self, prefix: &str) -> Option<(&str, &str)> {
        if prefix == "xml" {
            return Some(("xml", ns::XML));
        }
        match self.by_prefix.get_key_value(prefix) {
            Some((p, stack)) => Some((p.as_str(), stack.last().map_or("", String::as_str))),
            None if prefix.is_empty() => Some(("", "")),
            None => None,
        }
    }

    /// The URI bound to `prefix`; `""` (no namespace) for an undeclared or
    /// undeclared-by-`xmlns=""` default.
    pub(crate) fn resolve(&self, prefix: &str) -> Option<&str> {
        if prefix == "xml" {
            return Some(ns::XML);
        }
        match self.by_prefix.get(prefix).and_then(|s| s.last()) {
            Some(uri) => Some(uri),
            None if prefix.is_empty() => Some(""),
            None => None,
        }
    }
}

/// One element being canonicalized: what its output ancestors rendered.
struct Subtree<'o, W: Write> {
    out: &'o mut W,
    /// Depth (open elements in the document) of the apex.
    apex_depth: usize,
    /// For each prefix, the URIs rendered by output ancestors, innermost last.
    rendered: HashMap<String, Vec<String>>,
    /// Per open element of the subtree, the prefixes it rendered.
    frames: Vec<Vec<String>>,
}

/// An attribute of the element being written: its namespace URI and local
/// name (the sort key), qualified name and normalized value.
pub(crate) struct Attr<'e> {
    pub(crate) uri: String,
    pub(crate) local: &'e str,
    pub(crate) qname: &'e str,
    pub(crate) value: Cow<'e, str>,
}

/// A start tag with its namespace declarations and attributes, parsed once and
/// written into every subtree it belongs to.
///
/// It borrows from the parser's event: nothing is copied for the common element
/// (no namespace declarations, values without references).
pub(crate) struct Element<'e> {
    pub(crate) qname: &'e str,
    pub(crate) prefix: &'e str,
    /// Sorted by (namespace URI, local name), the canonical order.
    pub(crate) attrs: Vec<Attr<'e>>,
}

pub(crate) fn split_qname(name: &str) -> (&str, &str) {
    match name.split_once(':') {
        Some((p, l)) => (p, l),
        None => ("", name),
    }
}

fn run<W: Write>(
    xml: &str,
    options: &C14nOptions,
    target: Target<'_>,
    outs: &mut [W],
) -> Result<(), C14nError> {
    let mut reader = Reader::from_str(xml);
    let config = reader.config_mut();
    config.check_end_names = true;
    config.expand_empty_elements = false;
    let mut scopes = Scopes::default();
    let mut depth = 0usize;
    let mut open: Vec<Subtree<'_, W>> = Vec::new();
    let (ids, whole, named) = match target {
        Target::Document => (&[][..], true, None),
        Target::Ids(ids) => (ids, false, None),
        Target::FirstNamed(uri, local) => (&[][..], false, Some((uri, local))),
    };
    let mut found = vec![false; ids.len()];
    // The writers not yet claimed by an element, by Id index.
    let mut free: Vec<Option<&mut W>> = outs.iter_mut().map(Some).collect();
    // Document mode: the root is seen (for the line breaks around top-level nodes).
    let mut root_done = false;
    if whole {
        let Some(out) = free.get_mut(0).and_then(Option::take) else {
            return Ok(());
        };
        open.push(Subtree {
            out,
            apex_depth: 0,
            rendered: HashMap::new(),
            frames: Vec::new(),
        });
    }
    loop {
        let before = reader.buffer_position();
        let event = reader.read_event().map_err(|e| C14nError::Malformed {
            position: reader.error_position(),
            reason: e.to_string(),
        })?;
        let malformed = |reason: &str| C14nError::Malformed {
            position: before,
            reason: reason.to_string(),
        };
        match event {
            Event::Eof => break,
            Event::DocType(_) => return Err(C14nError::Doctype),
            // Only as the very first thing: elsewhere it is not XML.
            Event::Decl(_) if before == 0 => {}
            Event::Decl(_) => return Err(malformed("misplaced XML declaration")),
            Event::Start(ref e) | Event::Empty(ref e) => {
                let empty = matches!(event, Event::Empty(_));
                let (declared, element) = parse_start(e, before)?;
                scopes.push(declared);
                let element = resolve(element, &scopes)?;
                depth += 1;
                if !ids.is_empty() {
                    for attr in &element.attrs {
                        let is_id =
                            attr.local == "Id" && (attr.uri.is_empty() || attr.uri == ns::WSU);
                        if !is_id {
                            continue;
                        }
                        if let Some(i) = ids.iter().position(|id| *id == attr.value) {
                            if found[i] {
                                return Err(C14nError::DuplicateId(attr.value.to_string()));
                            }
                            found[i] = true;
                            if let Some(out) = free[i].take() {
                                open.push(Subtree {
                                    out,
                                    apex_depth: depth,
                                    rendered: HashMap::new(),
                                    frames: Vec::new(),
                                });
                            }
                        }
                    }
                }
                if named.is_some_and(|(uri, local)| {
                    split_qname(element.qname).1 == local
                        && scopes.resolve(element.prefix) == Some(uri)
                }) && let Some(out) = free.get_mut(0).and_then(Option::take)
                {
                    open.push(Subtree {
                        out,
                        apex_depth: depth,
                        rendered: HashMap::new(),
                        frames: Vec::new(),
                    });
                }
                for subtree in open.iter_mut() {
                    subtree.start(&element, &scopes, options)?;
                }
                if empty {
                    end_element(&mut open, &mut scopes, &mut depth, element.qname, whole)?;
                }
            }
            Event::End(e) => {
                end_element(&mut open, &mut scopes, &mut depth, e.name().0, whole)?;
                if whole && depth == 0 {
                    root_done = true;
                }
            }
            Event::Text(t) => {
                check_characters(t.as_bytes(), before)?;
                if t.contains("]]>") {
                    return Err(malformed("']]>' in character data"));
                }
                if depth == 0 {
                    if !t.trim_ascii().is_empty() {
                        return Err(malformed("text outside the root element"));
                    }
                    continue;
                }
                let text = t.xml10_content();
                write_all(&mut open, |out| escape_text(&text, out))?;
            }
            Event::CData(c) => {
                check_characters(c.as_bytes(), before)?;
                if depth == 0 {
                    return Err(malformed("CDATA outside the root element"));
                }
                let text = c.xml10_content();
                write_all(&mut open, |out| escape_text(&text, out))?;
            }
            Event::GeneralRef(r) => {
                let text = if r.is_char_ref() {
                    match r.resolve_char_ref() {
                        Ok(Some(c)) => c.to_string(),
                        _ => return Err(malformed("invalid character reference")),
                    }
                } else {
                    match resolve_predefined_entity(&r) {
                        Some(s) => s.to_string(),
                        None => return Err(malformed("undefined entity")),
                    }
                };
                write_all(&mut open, |out| escape_text(&text, out))?;
            }
            Event::Comment(c) => {
                check_characters(c.as_bytes(), before)?;
                if !options.with_comments {
                    continue;
                }
                let text = c.xml10_content();
                top_level_node(&mut open, depth, whole, root_done, |out| {
                    out.write_all(b"<!--")?;
                    out.write_all(text.as_bytes())?;
                    out.write_all(b"-->")
                })?;
            }
            Event::PI(pi) => {
                check_characters(pi.as_bytes(), before)?;
                let target = pi.target().to_string();
                if target.eq_ignore_ascii_case("xml")
                    || !is_xml_name(&target)
                    || target.contains(':')
                {
                    return Err(malformed("invalid processing instruction target"));
                }
                let content = pi.content().trim_start_matches([' ', '\t', '\r', '\n']);
                let content = quick_xml::events::BytesText::new(content)
                    .xml10_content()
                    .into_owned();
                top_level_node(&mut open, depth, whole, root_done, |out| {
                    out.write_all(b"<?")?;
                    out.write_all(target.as_bytes())?;
                    if !content.is_empty() {
                        out.write_all(b" ")?;
                        out.write_all(content.as_bytes())?;
                    }
                    out.write_all(b"?>")
                })?;
            }
        }
    }
    if depth != 0 {
        return Err(C14nError::Malformed {
            position: xml.len() as u64,
            reason: "the document ends inside an element".into(),
        });
    }
    if let Some(i) = found.iter().position(|f| !f) {
        return Err(C14nError::IdNotFound(ids[i].to_string()));
    }
    Ok(())
}

/// Characters XML does not allow (controls, U+FFFE/U+FFFF) are refused: the
/// output would not be XML.
fn check_characters(bytes: &[u8], position: u64) -> Result<(), C14nError> {
    match first_invalid_character(bytes) {
        Some((at, reason)) => Err(C14nError::Malformed {
            position: position + at as u64,
            reason: reason.to_string(),
        }),
        None => Ok(()),
    }
}

/// A comment or PI: inside the root it is written where it is; around the root
/// (document mode) it is separated from the root element by a line break.
fn top_level_node<W: Write>(
    open: &mut [Subtree<'_, W>],
    depth: usize,
    whole: bool,
    root_done: bool,
    write: impl Fn(&mut W) -> io::Result<()>,
) -> Result<(), C14nError> {
    if depth > 0 {
        return write_all(open, write);
    }
    if !whole {
        return Ok(());
    }
    write_all(open, |out| {
        if root_done {
            out.write_all(b"\n")?;
        }
        write(out)?;
        if !root_done {
            out.write_all(b"\n")?;
        }
        Ok(())
    })
}

fn write_all<W: Write>(
    open: &mut [Subtree<'_, W>],
    write: impl Fn(&mut W) -> io::Result<()>,
) -> Result<(), C14nError> {
    for subtree in open.iter_mut() {
        write(&mut *subtree.out)?;
    }
    Ok(())
}

fn end_element<W: Write>(
    open: &mut Vec<Subtree<'_, W>>,
    scopes: &mut Scopes,
    depth: &mut usize,
    qname: &str,
    whole: bool,
) -> Result<(), C14nError> {
    if *depth == 0 {
        return Err(C14nError::Malformed {
            position: 0,
            reason: format!("unexpected end tag </{qname}>"),
        });
    }
    for subtree in open.iter_mut() {
        subtree.end(qname)?;
    }
    // A subtree is complete once its apex closes (the document's never does).
    if !whole {
        open.retain(|s| s.apex_depth != *depth);
    }
    scopes.pop();
    *depth -= 1;
    Ok(())
}

/// Split a start tag into its namespace declarations and its other attributes
/// (values normalized as an XML parser does).
pub(crate) fn parse_start<'e>(
    e: &'e BytesStart<'_>,
    position: u64,
) -> Result<(Vec<(String, String)>, Element<'e>), C14nError> {
    let malformed = |reason: String| C14nError::Malformed { position, reason };
    let qname = e.name().0;
    if !is_xml_name(qname) {
        return Err(malformed(format!("invalid element name {qname:?}")));
    }
    if let Some((_, reason)) = first_invalid_character(e.as_bytes()) {
        return Err(malformed(reason.to_string()));
    }
    if matches!(split_qname(qname).0, "xmlns" | "xml") {
        return Err(malformed(format!(
            "element name {qname:?} has a reserved prefix"
        )));
    }
    let mut declared = Vec::new();
    let mut attrs = Vec::new();
    for attr in e.attributes() {
        let attr = attr.map_err(|err| malformed(format!("bad attribute: {err}")))?;
        let key = attr.key.0;
        if !is_xml_name(key) {
            return Err(malformed(format!("invalid attribute name {key:?}")));
        }
        if attr.value.contains('<') {
            return Err(malformed("'<' in an attribute value".into()));
        }
        let value = attr
            .normalized_value(quick_xml::XmlVersion::Explicit1_0)
            .map_err(|err| malformed(format!("bad attribute value: {err}")))?;
        if key == "xmlns" {
            declared.push((String::new(), value.into_owned()));
        } else if let Some(prefix) = key.strip_prefix("xmlns:") {
            declared.push((prefix.to_string(), value.into_owned()));
        } else {
            attrs.push(Attr {
                uri: String::new(),
                local: split_qname(key).1,
                qname: key,
                value,
            });
        }
    }
    let prefix = split_qname(qname).0;
    Ok((
        declared,
        Element {
            qname,
            prefix,
            attrs,
        },
    ))
}

/// Resolve the attributes' namespaces (the element's own declarations in
/// scope) and put them in canonical order.
pub(crate) fn resolve<'e>(
    mut element: Element<'e>,
    scopes: &Scopes,
) -> Result<Element<'e>, C14nError> {
    if !element.prefix.is_empty() && scopes.resolve(element.prefix).is_none() {
        return Err(C14nError::UndeclaredPrefix(element.prefix.to_string()));
    }
    for attr in &mut element.attrs {
        let (prefix, _) = split_qname(attr.qname);
        if !prefix.is_empty() {
            attr.uri = scopes
                .resolve(prefix)
                .ok_or_else(|| C14nError::UndeclaredPrefix(prefix.to_string()))?
                .to_string();
        }
    }
    if element.attrs.len() > 1 {
        element
            .attrs
            .sort_by(|a, b| (&a.uri, a.local).cmp(&(&b.uri, b.local)));
        // `p:a` and `q:a` with p and q bound to one namespace (Namespaces in XML
        // §6.3): adjacent once sorted.
        if element
            .attrs
            .windows(2)
            .any(|w| !w[0].uri.is_empty() && w[0].uri == w[1].uri && w[0].local == w[1].local)
        {
            return Err(C14nError::Malformed {
                position: 0,
                reason: "two attributes with the same namespace and local name".into(),
            });
        }
    }
    Ok(element)
}

impl<W: Write> Subtree<'_, W> {
    /// Write a start tag: the namespaces it visibly uses (and the PrefixList's)
    /// that no output ancestor rendered with the same URI, then its attributes
    /// in (namespace URI, local name) order.
    fn start(
        &mut self,
        element: &Element<'_>,
        scopes: &Scopes,
        options: &C14nOptions,
    ) -> Result<(), C14nError> {
        // What to declare here, found without allocating in the common case
        // (nothing new): the element's prefix, its attributes', the PrefixList.
        let mut render: Vec<(&str, &str)> = Vec::new();
        let mut consider = |prefix: &str| {
            if prefix == "xml" || render.iter().any(|(p, _)| *p == prefix) {
                return;
            }
            let Some((p, uri)) = scopes.binding(prefix) else {
                // A PrefixList entry not in scope here renders nothing.
                return;
            };
            let current = self
                .rendered
                .get(prefix)
                .and_then(|s| s.last())
                .map(String::as_str);
            let needed = if prefix.is_empty() && uri.is_empty() {
                // `xmlns=""` only to undo a default an output ancestor rendered.
                current.is_some_and(|c| !c.is_empty())
            } else {
                current != Some(uri)
            };
            if needed {
                render.push((p, uri));
            }
        };
        consider(element.prefix);
        for attr in &element.attrs {
            let (prefix, _) = split_qname(attr.qname);
            if !prefix.is_empty() {
                consider(prefix);
            }
        }
        for prefix in &options.inclusive_prefixes {
            consider(prefix);
        }
        render.sort_unstable();
        let out = &mut *self.out;
        out.write_all(b"<")?;
        out.write_all(element.qname.as_bytes())?;
        let mut frame = Vec::with_capacity(render.len());
        for (prefix, uri) in render {
            if prefix.is_empty() {
                out.write_all(b" xmlns=\"")?;
            } else {
                out.write_all(b" xmlns:")?;
                out.write_all(prefix.as_bytes())?;
                out.write_all(b"=\"")?;
            }
            escape_attr(uri, out)?;
            out.write_all(b"\"")?;
            self.rendered
                .entry(prefix.to_string())
                .or_default()
                .push(uri.to_string());
            frame.push(prefix.to_string());
        }
        for attr in &element.attrs {
            out.write_all(b" ")?;
            out.write_all(attr.qname.as_bytes())?;
            out.write_all(b"=\"")?;
            escape_attr(&attr.value, out)?;
            out.write_all(b"\"")?;
        }
        out.write_all(b">")?;
        self.frames.push(frame);
        Ok(())
    }

    fn end(&mut self, qname: &str) -> Result<(), C14nError> {
        self.out.write_all(b"</")?;
        self.out.write_all(qname.as_bytes())?;
        self.out.write_all(b">")?;
        for prefix in self.frames.pop().unwrap_or_default() {
            if let Some(stack) = self.rendered.get_mut(&prefix) {
                stack.pop();
            }
        }
        Ok(())
    }
}

/// Text nodes: `&`, `<`, `>` and carriage return escaped.
fn escape_text<W: Write>(text: &str, out: &mut W) -> io::Result<()> {
    escape(text, out, |c| match c {
        b'&' => Some(&b"&amp;"[..]),
        b'<' => Some(b"&lt;"),
        b'>' => Some(b"&gt;"),
        b'\r' => Some(b"&#xD;"),
        _ => None,
    })
}

/// Attribute values: `&`, `<`, `"` and the whitespace a parser would normalize.
fn escape_attr<W: Write>(text: &str, out: &mut W) -> io::Result<()> {
    escape(text, out, |c| match c {
        b'&' => Some(&b"&amp;"[..]),
        b'<' => Some(b"&lt;"),
        b'"' => Some(b"&quot;"),
        b'\t' => Some(b"&#x9;"),
        b'\n' => Some(b"&#xA;"),
        b'\r' => Some(b"&#xD;"),
        _ => None,
    })
}

fn escape<W: Write>(
    text: &str,
    out: &mut W,
    replace: impl Fn(u8) -> Option<&'static [u8]>,
) -> io::Result<()> {
    let bytes = text.as_bytes();
    let mut from = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if let Some(r) = replace(b) {
            out.write_all(&bytes[from..i])?;
            out.write_all(r)?;
            from = i + 1;
        }
    }
    out.write_all(&bytes[from..])
}
