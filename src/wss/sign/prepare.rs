//! The first signing pass: find the parts to sign and the Security header, give
//! each part a `wsu:Id`, and put the Timestamp and token into the header,
//! leaving the place where the Signature goes.
//!
//! The message is edited as text: a few insertions at byte offsets found by the
//! parser, everything else copied as it came (prefixes, quoting, whitespace), so
//! that what the client wrote is what is digested and what is sent.

use quick_xml::events::Event;
use quick_xml::reader::Reader;

use super::super::algorithms::ns;
use super::super::c14n::{self, Scopes};
use super::xml::Ids;
use super::{EncryptOptions, SignError, SignPart, SignPlan, SoapVersion, fresh_id};

/// The WS-Addressing namespaces whose headers `sign_parts` may name.
const WSA: &[&str] = &[
    "http://www.w3.org/2005/08/addressing",
    "http://schemas.xmlsoap.org/ws/2004/08/addressing",
];

/// The deepest element the pass looks at: a Security header's child.
const DEEPEST: usize = 4;

/// The message with Ids and security content in place, but no Signature yet.
pub(super) struct Prepared {
    pub(super) text: String,
    /// Where the Signature is to be inserted.
    pub(super) signature_offset: usize,
    /// What is signed, in SignedInfo order.
    pub(super) signed_ids: Vec<String>,
    pub(super) version: SoapVersion,
}

/// One insertion (after removing `remove` bytes at `at`).
struct Edit {
    at: usize,
    remove: usize,
    insert: String,
    /// Offset in `insert` where the Signature goes, for the header's edit.
    signature_at: Option<usize>,
}

/// An element to sign, in document order.
struct Target {
    part: SignPart,
    id: String,
}

pub(super) fn prepare(
    text: &str,
    plan: &SignPlan,
    options: &EncryptOptions,
    security_content: &str,
    ids: &Ids,
) -> Result<Prepared, SignError> {
    let mut reader = Reader::from_str(text);
    let config = reader.config_mut();
    config.check_end_names = true;
    config.expand_empty_elements = false;
    let mut scopes = Scopes::default();
    let mut depth = 0usize;
    let mut version = None;
    let mut envelope_prefix = String::new();
    let mut in_header = false;
    let mut in_security = false;
    let mut header_end: Option<usize> = None;
    let mut header_empty: Option<(usize, String)> = None;
    let mut header_seen = false;
    let mut security: Option<Edit> = None;
    let mut body_at: Option<usize> = None;
    let mut targets: Vec<Target> = Vec::new();
    let mut edits: Vec<Edit> = Vec::new();
    let adds_timestamp = plan.timestamp_ttl.is_some();
    let limit = options.limits.max_depth;
    loop {
        let before = reader.buffer_position() as usize;
        let event = reader.read_event().map_err(|e| SignError::Malformed {
            position: reader.error_position(),
            reason: e.to_string(),
        })?;
        let after = reader.buffer_position() as usize;
        let malformed = |reason: String| SignError::Malformed {
            position: before as u64,
            reason,
        };
        match event {
            Event::Eof => break,
            Event::DocType(_) => return Err(SignError::Doctype),
            // Below the header blocks' children nothing is looked at: the depth
            // is counted, the rest is left to the canonicalization pass.
            Event::Start(_) if depth >= DEEPEST => {
                depth += 1;
                if depth > limit {
                    return Err(SignError::TooDeep { limit });
                }
            }
            Event::Empty(_) if depth >= DEEPEST => {}
            Event::End(_) if depth > DEEPEST => depth -= 1,
            Event::Start(ref e) | Event::Empty(ref e) => {
                let empty = matches!(event, Event::Empty(_));
                let (declared, element) =
                    c14n::parse_start(e, before as u64).map_err(|e| malformed(e.to_string()))?;
                scopes.push(declared);
                let element = c14n::resolve(element, &scopes)?;
                depth += 1;
                if depth > limit {
                    return Err(SignError::TooDeep { limit });
                }
                let local = c14n::split_qname(element.qname).1;
                let uri = scopes.resolve(element.prefix).unwrap_or_default();
                let env = version.map(SoapVersion::namespace).unwrap_or_default();
                let mut part = None;
                match depth {
                    1 => {
                        let v = SoapVersion::from_namespace(uri).filter(|_| local == "Envelope");
                        let Some(v) = v else {
                            return Err(SignError::NotSoap {
                                found: format!("{{{uri}}}{local}"),
                            });
                        };
                        version = Some(v);
                        envelope_prefix = element.prefix.to_string();
                    }
                    2 if uri == env && local == "Header" => {
                        if header_seen || body_at.is_some() {
                            return Err(malformed("Header must come once, before the Body".into()));
                        }
                        header_seen = true;
                        if empty {
                            header_empty = Some((after - 2, element.qname.to_string()));
                        } else {
                            in_header = true;
                        }
                    }
                    2 if uri == env && local == "Body" => {
                        if body_at.is_some() {
                            return Err(SignError::TwoBodies);
                        }
                        body_at = Some(before);
                        if plan.parts.contains(&SignPart::Body) {
                            part = Some(SignPart::Body);
                        }
                    }
                    3 if in_header => {
                        if SoapVersion::from_namespace(uri).is_some()
                            && matches!(local, "Body" | "Envelope")
                        {
                            return Err(malformed(format!("a SOAP {local} inside the Header")));
                        }
                        if uri == ns::WSSE && local == "Security" && for_ultimate(&element, env) {
                            if security.is_some() {
                                return Err(malformed(
                                    "a second wsse:Security header for the ultimate receiver"
                                        .into(),
                                ));
                            }
                            security = Some(if empty {
                                // `<wsse:Security/>`: open it, fill it, close it.
                                Edit {
                                    at: after - 2,
                                    remove: 2,
                                    insert: format!(">{security_content}</{}>", element.qname),
                                    signature_at: Some(1 + security_content.len()),
                                }
                            } else {
                                in_security = true;
                                Edit {
                                    at: after,
                                    remove: 0,
                                    insert: security_content.to_string(),
                                    signature_at: Some(security_content.len()),
                                }
                            });
                        } else if WSA.contains(&uri)
                            && plan
                                .parts
                                .contains(&SignPart::Addressing(local.to_string()))
                        {
                            part = Some(SignPart::Addressing(local.to_string()));
                        }
                    }
                    4 if in_security
                        && adds_timestamp
                        && uri == ns::WSU
                        && local == "Timestamp" =>
                    {
                        return Err(SignError::TimestampPresent);
                    }
                    _ => {}
                }
                if let Some(part) = part {
                    let (id, edit) = identify(&element, &scopes, before)?;
                    if let Some(edit) = edit {
                        edits.push(edit);
                    }
                    targets.push(Target { part, id });
                }
                if empty {
                    scopes.pop();
                    depth -= 1;
                }
            }
            Event::End(_) => {
                if depth == 3 && in_security {
                    in_security = false;
                }
                if depth == 2 && in_header {
                    in_header = false;
                    header_end = Some(before);
                }
                scopes.pop();
                depth = depth.saturating_sub(1);
            }
            _ => {}
        }
    }
    let version = version.ok_or(SignError::NotSoap {
        found: "nothing".into(),
    })?;
    let body_at = body_at.ok_or(SignError::NoBody)?;
    let security = match security {
        Some(edit) => edit,
        None => {
            let (open, close) = new_security(version, options.must_understand);
            let header_prefix = if envelope_prefix.is_empty() {
                String::new()
            } else {
                format!("{envelope_prefix}:")
            };
            let inner = format!("{open}{security_content}");
            let signature_at = inner.len();
            if let Some(at) = header_end {
                Edit {
                    at,
                    remove: 0,
                    insert: format!("{inner}{close}"),
                    signature_at: Some(signature_at),
                }
            } else if let Some((at, qname)) = header_empty {
                Edit {
                    at,
                    remove: 2,
                    insert: format!(">{inner}{close}</{qname}>"),
                    signature_at: Some(1 + signature_at),
                }
            } else {
                let open_header = format!("<{header_prefix}Header>");
                Edit {
                    at: body_at,
                    remove: 0,
                    signature_at: Some(open_header.len() + signature_at),
                    insert: format!("{open_header}{inner}{close}</{header_prefix}Header>"),
                }
            }
        }
    };
    edits.push(security);
    edits.sort_by_key(|e| e.at);

    let mut out = String::with_capacity(text.len() + 4096);
    let mut from = 0;
    let mut signature_offset = 0;
    for edit in edits {
        out.push_str(&text[from..edit.at]);
        if let Some(at) = edit.signature_at {
            signature_offset = out.len() + at;
        }
        out.push_str(&edit.insert);
        from = edit.at + edit.remove;
    }
    out.push_str(&text[from..]);

    let mut signed_ids = Vec::new();
    for part in &plan.parts {
        match part {
            SignPart::Timestamp => signed_ids.push(ids.timestamp.clone()),
            _ => signed_ids.extend(
                targets
                    .iter()
                    .filter(|t| &t.part == part)
                    .map(|t| t.id.clone()),
            ),
        }
    }
    Ok(Prepared {
        text: out,
        signature_offset,
        signed_ids,
        version,
    })
}

/// The element's `wsu:Id`, kept if it has one, else a fresh one and the edit
/// that adds it (declaring a prefix for the utility namespace when none in
/// scope names it, without shadowing a `wsu` prefix bound to anything else).
fn identify(
    element: &c14n::Element,
    scopes: &Scopes,
    tag_at: usize,
) -> Result<(String, Option<Edit>), SignError> {
    if let Some(attr) = element
        .attrs
        .iter()
        .find(|a| a.uri == ns::WSU && a.local == "Id")
    {
        return Ok((attr.value.to_string(), None));
    }
    let id = fresh_id("id")?;
    let mut prefix = "wsu".to_string();
    let mut n = 0;
    let declare = loop {
        match scopes.resolve(&prefix) {
            Some(uri) if uri == ns::WSU => break false,
            None => break true,
            Some(_) => {
                n += 1;
                prefix = format!("wsu{n}");
            }
        }
    };
    let mut insert = String::new();
    if declare {
        insert.push_str(&format!(" xmlns:{prefix}=\"{}\"", ns::WSU));
    }
    insert.push_str(&format!(" {prefix}:Id=\"{id}\""));
    Ok((
        id,
        Some(Edit {
            at: tag_at + 1 + element.qname.len(),
            remove: 0,
            insert,
            signature_at: None,
        }),
    ))
}

/// Whether a header block targets the ultimate receiver (no actor/role in the
/// envelope namespace, an empty one, or SOAP 1.2's ultimateReceiver).
fn for_ultimate(element: &c14n::Element, env: &str) -> bool {
    element
        .attrs
        .iter()
        .find(|a| a.uri == env && (a.local == "actor" || a.local == "role"))
        .is_none_or(|a| {
            let v = a.value.trim();
            v.is_empty() || v == ns::SOAP12_ULTIMATE_RECEIVER
        })
}

/// A new Security header's start and end tags. It declares its own prefix for
/// the envelope namespace, so it is right wherever it lands.
fn new_security(version: SoapVersion, must_understand: bool) -> (String, String) {
    let mut open = format!("<wsse:Security xmlns:wsse=\"{}\"", ns::WSSE);
    if must_understand {
        let p = match version {
            SoapVersion::Soap11 => "soapenv",
            SoapVersion::Soap12 => "env",
        };
        open.push_str(&format!(
            " xmlns:{p}=\"{}\" {p}:mustUnderstand=\"{}\"",
            version.namespace(),
            version.must_understand_true()
        ));
    }
    open.push('>');
    (open, "</wsse:Security>".to_string())
}
