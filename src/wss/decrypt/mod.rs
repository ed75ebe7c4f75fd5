//! The receiver side: find the EncryptedKey meant for one of the keys held, unwrap
//! the content key, decrypt every EncryptedData it lists, and put the plaintext back
//! where the EncryptedData stood.
//!
//! The document is parsed once (roxmltree, DTDs refused) and edited by byte ranges,
//! so everything that was not encrypted comes out exactly as it went in. Consumed
//! EncryptedKeys and the tokens they referenced are removed; a Security header left
//! with no element is removed too.
//!
//! Key references understood: `ds:X509IssuerSerial`, a `wsse:Reference` to a
//! BinarySecurityToken, `wsse:KeyIdentifier` (SKI, ThumbprintSHA1, X509v3),
//! `ds:X509Certificate` and `ds:X509SKI`. An EncryptedKey without any of them is
//! tried with every key.
//!
//! [`decrypt_with`] is the gateway's entry: the XML limits of the route on the
//! input and on the plaintext, rsa-1_5 only when allowed, and no timing or
//! answer that tells the causes of a failure apart ([`oracle`]): an unknown key
//! costs a private-key operation as a known one does, and a failed rsa-1_5
//! unwrap continues with a random key (implicit rejection), so that it fails
//! where a wrong key would, in the data decryption.

mod limits;
pub mod oracle;

pub use limits::LimitExceeded;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use openssl::hash::MessageDigest;
use std::collections::HashMap;

use roxmltree::{Document, Node, NodeId, ParsingOptions};

use super::Limits;
use super::algorithms::{DataEncryption, KeyTransport, digest_from_uri, mgf_from_uri, ns, uri};
use super::certificate::{CertificateInfo, parse_certificate, same_distinguished_name};
use super::cipher::{self, CipherError, UnwrapParams};
use super::input;
use super::keys::{KeyRing, PrivateKeyEntry};

/// Most EncryptedKeys decrypted in one message: each costs private-key
/// operations, and a message is encrypted for one recipient.
pub const MAX_ENCRYPTED_KEYS: usize = 16;

/// How the gateway decrypts: bounds and policy.
#[derive(Debug, Clone, Copy)]
pub struct DecryptOptions {
    /// Accept rsa-1_5 key transport (`allow_legacy`).
    pub allow_rsa15: bool,
    /// The route's XML limits, applied to the input and to the result.
    pub limits: Limits,
}

/// Why a document could not be decrypted.
#[derive(Debug, thiserror::Error)]
pub enum DecryptError {
    #[error("not well-formed XML: {0}")]
    Parse(String),
    #[error("{0}")]
    Encoding(#[from] input::UnsupportedEncoding),
    #[error("reading the input failed: {0}")]
    Read(std::io::Error),
    #[error("the document holds no EncryptedKey")]
    NoEncryptedKey,
    #[error("no key held matches the message: it is encrypted for {0}")]
    NoMatchingKey(String),
    #[error("EncryptedKey {id} names {reference}, but unwrapping failed with every matching key")]
    UnwrapFailed { id: String, reference: String },
    #[error("unsupported {what} {uri:?}")]
    Unsupported { what: &'static str, uri: String },
    #[error("reference {0} points at no EncryptedData")]
    DanglingReference(String),
    #[error("malformed {0}")]
    Malformed(&'static str),
    #[error("{0}")]
    Cipher(#[from] CipherError),
    #[error("decrypted content is not well-formed XML in place: {0}")]
    BadPlaintext(String),
    #[error("{0}")]
    Limit(#[from] LimitExceeded),
    #[error("more than {MAX_ENCRYPTED_KEYS} EncryptedKeys")]
    TooManyEncryptedKeys,
    #[error("key transport rsa-1_5 is refused unless allow_legacy = true")]
    LegacyRefused,
}

/// What one decryption found.
#[derive(Debug, Clone, Default)]
pub struct DecryptSummary {
    /// EncryptedData elements decrypted.
    pub decrypted: usize,
    /// SHA-256 fingerprints of the certificates whose keys were used, when known.
    pub certificates: Vec<String>,
    /// Where the keys came from.
    pub key_sources: Vec<String>,
    /// Data encryption algorithms met.
    pub data_algorithms: Vec<DataEncryption>,
    /// Which of the keys given to [`decrypt_with`] were used, by index.
    pub keys_used: Vec<usize>,
}

/// A byte-range edit of the original text.
struct Edit {
    start: usize,
    end: usize,
    replacement: String,
}

/// How an EncryptedKey names the key it is for.
#[derive(Debug, Clone)]
enum KeyReference {
    IssuerSerial {
        issuer: String,
        serial: String,
    },
    /// A whole certificate; it matches a held key with the same public key.
    Certificate {
        info: Box<CertificateInfo>,
        public_key_der: Vec<u8>,
    },
    Ski(Vec<u8>),
    Thumbprint(Vec<u8>),
    Unnamed,
}

impl std::fmt::Display for KeyReference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyReference::IssuerSerial { issuer, serial } => {
                write!(f, "issuer {issuer:?} serial {serial}")
            }
            KeyReference::Certificate { info, .. } => write!(
                f,
                "certificate serial {} issuer {:?} (sha256 {})",
                info.serial, info.issuer, info.sha256
            ),
            KeyReference::Ski(ski) => write!(f, "subject key identifier {}", hex::encode(ski)),
            KeyReference::Thumbprint(t) => write!(f, "SHA-1 thumbprint {}", hex::encode(t)),
            KeyReference::Unnamed => write!(f, "an unnamed key"),
        }
    }
}

impl KeyReference {
    fn matches(&self, entry: &PrivateKeyEntry) -> bool {
        if let KeyReference::Certificate { public_key_der, .. } = self {
            return entry
                .key
                .public_key_to_der()
                .is_ok_and(|der| der == *public_key_der);
        }
        let Some(info) = entry.info.as_ref() else {
            return matches!(self, KeyReference::Unnamed);
        };
        match self {
            KeyReference::IssuerSerial { issuer, serial } => {
                serial.trim() == info.serial && same_distinguished_name(issuer, &info.issuer)
            }
            KeyReference::Certificate { .. } => false,
            KeyReference::Ski(s) => info.ski.as_deref() == Some(s.as_slice()),
            KeyReference::Thumbprint(t) => *t == info.sha1,
            KeyReference::Unnamed => true,
        }
    }
}

fn is(node: &Node<'_, '_>, namespace: &str, local: &str) -> bool {
    node.is_element()
        && node.tag_name().name() == local
        && node.tag_name().namespace() == Some(namespace)
}

fn child<'a, 'i>(node: Node<'a, 'i>, namespace: &str, local: &str) -> Option<Node<'a, 'i>> {
    node.children().find(|c| is(c, namespace, local))
}

fn text_of(node: Node<'_, '_>) -> String {
    node.descendants()
        .filter(|n| n.is_text())
        .filter_map(|n| n.text())
        .collect()
}

fn base64_of(node: Node<'_, '_>) -> Result<Vec<u8>, DecryptError> {
    let text: String = text_of(node)
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    B64.decode(text.as_bytes())
        .map_err(|_| DecryptError::Malformed("base64 content"))
}

/// The `Id` of an element: unqualified `Id`, `wsu:Id`, or `xml:id`.
fn id_of<'a>(node: &Node<'a, '_>) -> Option<&'a str> {
    node.attribute("Id")
        .or_else(|| node.attribute((ns::WSU, "Id")))
        .or_else(|| node.attribute((ns::XML, "id")))
        .or_else(|| node.attribute("ID"))
}

/// The elements of a document by Id, built once: a reference is found in
/// constant time, so many references cost no more than one each.
struct Ids<'a, 'i> {
    doc: &'a Document<'i>,
    by_id: HashMap<&'a str, NodeId>,
}

impl<'a, 'i> Ids<'a, 'i> {
    fn of(doc: &'a Document<'i>) -> Ids<'a, 'i> {
        let mut by_id = HashMap::new();
        for n in doc.descendants().filter(|n| n.is_element()) {
            if let Some(id) = id_of(&n) {
                // The first element with an Id wins, as a document-order search would.
                by_id.entry(id).or_insert(n.id());
            }
        }
        Ids { doc, by_id }
    }

    fn find(&self, reference: &str) -> Option<Node<'a, 'i>> {
        let id = reference.strip_prefix('#')?;
        self.by_id.get(id).and_then(|n| self.doc.get_node(*n))
    }
}

/// Work out which key an EncryptedKey names from its KeyInfo.
fn key_reference(ids: &Ids<'_, '_>, ek: Node<'_, '_>) -> Result<KeyReference, DecryptError> {
    let Some(key_info) = child(ek, ns::DS, "KeyInfo") else {
        return Ok(KeyReference::Unnamed);
    };
    for holder in key_info.children().filter(|c| c.is_element()) {
        // Either ds:X509Data directly, or inside a wsse:SecurityTokenReference.
        let candidates: Vec<Node<'_, '_>> = if is(&holder, ns::WSSE, "SecurityTokenReference") {
            holder.children().filter(|c| c.is_element()).collect()
        } else {
            vec![holder]
        };
        for node in candidates {
            if is(&node, ns::DS, "X509Data") {
                if let Some(r) = x509_data_reference(node)? {
                    return Ok(r);
                }
            } else if is(&node, ns::WSSE, "Reference") {
                let Some(target) = node.attribute("URI").and_then(|u| ids.find(u)) else {
                    continue;
                };
                if is(&target, ns::WSSE, "BinarySecurityToken") {
                    let der = base64_of(target)?;
                    return certificate_reference(&der);
                }
            } else if is(&node, ns::WSSE, "KeyIdentifier") {
                let value = base64_of(node)?;
                match node.attribute("ValueType").unwrap_or_default() {
                    uri::X509_SKI => return Ok(KeyReference::Ski(value)),
                    uri::THUMBPRINT_SHA1 => return Ok(KeyReference::Thumbprint(value)),
                    uri::X509V3 => return certificate_reference(&value),
                    other => {
                        return Err(DecryptError::Unsupported {
                            what: "KeyIdentifier ValueType",
                            uri: other.to_string(),
                        });
                    }
                }
            }
        }
    }
    Ok(KeyReference::Unnamed)
}

fn certificate_reference(der: &[u8]) -> Result<KeyReference, DecryptError> {
    let cert = parse_certificate(der).map_err(|_| DecryptError::Malformed("certificate"))?;
    let info = CertificateInfo::of(&cert).map_err(|_| DecryptError::Malformed("certificate"))?;
    let public_key_der = cert
        .public_key()
        .and_then(|k| k.public_key_to_der())
        .map_err(|_| DecryptError::Malformed("certificate public key"))?;
    Ok(KeyReference::Certificate {
        info: Box::new(info),
        public_key_der,
    })
}

fn x509_data_reference(data: Node<'_, '_>) -> Result<Option<KeyReference>, DecryptError> {
    if let Some(is_node) = child(data, ns::DS, "X509IssuerSerial") {
        let issuer = child(is_node, ns::DS, "X509IssuerName").map(text_of);
        let serial = child(is_node, ns::DS, "X509SerialNumber").map(text_of);
        if let (Some(issuer), Some(serial)) = (issuer, serial) {
            return Ok(Some(KeyReference::IssuerSerial { issuer, serial }));
        }
    }
    if let Some(ski) = child(data, ns::DS, "X509SKI") {
        return Ok(Some(KeyReference::Ski(base64_of(ski)?)));
    }
    if let Some(cert) = child(data, ns::DS, "X509Certificate") {
        return certificate_reference(&base64_of(cert)?).map(Some);
    }
    Ok(None)
}

/// Key transport parameters read from an EncryptedKey.
struct TransportParams {
    transport: KeyTransport,
    digest: MessageDigest,
    mgf1: MessageDigest,
    label: Option<Vec<u8>>,
}

fn unwrap_params(ek: Node<'_, '_>) -> Result<TransportParams, DecryptError> {
    let method = child(ek, ns::XENC, "EncryptionMethod").ok_or(DecryptError::Malformed(
        "EncryptedKey without EncryptionMethod",
    ))?;
    let alg = method.attribute("Algorithm").unwrap_or_default();
    let transport = KeyTransport::from_uri(alg).ok_or_else(|| DecryptError::Unsupported {
        what: "key transport",
        uri: alg.to_string(),
    })?;
    let digest = match child(method, ns::DS, "DigestMethod") {
        Some(d) => {
            let u = d.attribute("Algorithm").unwrap_or_default();
            digest_from_uri(u).ok_or_else(|| DecryptError::Unsupported {
                what: "OAEP digest",
                uri: u.to_string(),
            })?
        }
        None => MessageDigest::sha1(),
    };
    // MGF1 with SHA-1 unless an xmlenc11 MGF is named (libxmlsec1 honours one on
    // rsa-oaep-mgf1p too, and so do its test vectors).
    let mgf = match child(method, ns::XENC11, "MGF") {
        Some(m) => {
            let u = m.attribute("Algorithm").unwrap_or_default();
            mgf_from_uri(u).ok_or_else(|| DecryptError::Unsupported {
                what: "MGF",
                uri: u.to_string(),
            })?
        }
        None => MessageDigest::sha1(),
    };
    let label = match child(method, ns::XENC, "OAEPparams") {
        Some(p) => Some(base64_of(p)?),
        None => None,
    };
    Ok(TransportParams {
        transport,
        digest,
        mgf1: mgf,
        label,
    })
}

fn cipher_value(node: Node<'_, '_>) -> Result<Vec<u8>, DecryptError> {
    let data = child(node, ns::XENC, "CipherData")
        .ok_or(DecryptError::Malformed("element without CipherData"))?;
    if child(data, ns::XENC, "CipherReference").is_some() {
        return Err(DecryptError::Unsupported {
            what: "cipher data",
            uri: "CipherReference".to_string(),
        });
    }
    let value = child(data, ns::XENC, "CipherValue")
        .ok_or(DecryptError::Malformed("CipherData without CipherValue"))?;
    base64_of(value)
}

/// Decrypt a document with any of the keys held.
pub fn decrypt_document(
    document: &[u8],
    keys: &KeyRing,
) -> Result<(Vec<u8>, DecryptSummary), DecryptError> {
    let keys: Vec<&PrivateKeyEntry> = keys.entries.iter().collect();
    decode_and(document, |text| decrypt_text(text, &keys, None))
}

/// Decrypt a document as the gateway does: with `keys` (tried in order where
/// several match), within `options`' limits and policy. An error tells the
/// cause for the log; callers must answer every decryption failure alike
/// ([`oracle::Failure`]).
pub fn decrypt_with(
    document: &[u8],
    keys: &[&PrivateKeyEntry],
    options: &DecryptOptions,
) -> Result<(Vec<u8>, DecryptSummary), DecryptError> {
    decode_and(document, |text| decrypt_text(text, keys, Some(options)))
}

/// Whether a document holds an EncryptedKey (a decrypt route's
/// `require_encryption`), judged on the bytes before any parsing.
pub fn mentions_encrypted_key(document: &[u8]) -> bool {
    memchr_find(document, b"EncryptedKey")
}

fn memchr_find(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Decode a document to UTF-8 text, run `work` on it, and encode the result as
/// the input was (a UTF-8 byte order mark kept).
fn decode_and(
    document: &[u8],
    work: impl FnOnce(&str) -> Result<(String, DecryptSummary), DecryptError>,
) -> Result<(Vec<u8>, DecryptSummary), DecryptError> {
    let (mut reader, info) = input::utf8_reader(document).map_err(|e| match e {
        input::InputError::Io(io) => DecryptError::Read(io),
        input::InputError::Unsupported(u) => DecryptError::Encoding(u),
        contradictory @ input::InputError::Contradictory(_) => {
            DecryptError::Parse(contradictory.to_string())
        }
    })?;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut reader, &mut text)
        .map_err(|e| DecryptError::Parse(e.to_string()))?;
    if info.encoding.is_transcoded()
        && text.starts_with("<?xml")
        && let Some(end) = text.find("?>")
    {
        text = format!(
            "{}{}",
            input::declaration_as_utf8(&text[..end]),
            &text[end..]
        );
    }
    let (out, summary) = work(&text)?;
    let mut bytes = Vec::with_capacity(out.len() + 3);
    if info.utf8_bom {
        bytes.extend_from_slice(&[0xEF, 0xBB, 0xBF]);
    }
    bytes.extend_from_slice(out.as_bytes());
    Ok((bytes, summary))
}

fn parse<'i>(text: &'i str, limits: Option<&Limits>) -> Result<Document<'i>, DecryptError> {
    let options = ParsingOptions {
        allow_dtd: false,
        nodes_limit: limits.map_or(u32::MAX, limits::nodes_limit),
        ..ParsingOptions::default()
    };
    let doc = Document::parse_with_options(text, options).map_err(|e| match e {
        roxmltree::Error::NodesLimitReached => DecryptError::Limit(LimitExceeded::elements(limits)),
        e => DecryptError::Parse(e.to_string()),
    })?;
    if let Some(limits) = limits {
        limits::check(&doc, limits)?;
    }
    Ok(doc)
}

fn decrypt_text(
    text: &str,
    keys: &[&PrivateKeyEntry],
    options: Option<&DecryptOptions>,
) -> Result<(String, DecryptSummary), DecryptError> {
    let limits = options.map(|o| &o.limits);
    let doc = parse(text, limits)?;
    let ids = Ids::of(&doc);
    let encrypted_keys: Vec<Node<'_, '_>> = doc
        .descendants()
        .filter(|n| is(n, ns::XENC, "EncryptedKey"))
        .collect();
    if encrypted_keys.is_empty() {
        return Err(DecryptError::NoEncryptedKey);
    }
    if options.is_some() && encrypted_keys.len() > MAX_ENCRYPTED_KEYS {
        return Err(DecryptError::TooManyEncryptedKeys);
    }
    let mut summary = DecryptSummary::default();
    let mut edits: Vec<Edit> = Vec::new();
    let mut unmatched: Vec<String> = Vec::new();
    let mut removed: Vec<roxmltree::NodeId> = Vec::new();
    for ek in encrypted_keys {
        let reference = key_reference(&ids, ek)?;
        // Keys whose certificate matches first, then keys held without a
        // certificate (they can only be tried).
        let candidates: Vec<(usize, &PrivateKeyEntry)> = keys
            .iter()
            .enumerate()
            .filter(|(_, k)| reference.matches(k))
            .chain(
                keys.iter()
                    .enumerate()
                    .filter(|(_, k)| k.info.is_none() && !reference.matches(k)),
            )
            .map(|(i, k)| (i, *k))
            .collect();
        if candidates.is_empty() {
            if options.is_some() {
                // As much private-key work as a known key: an unknown key is
                // not told apart by the time it takes.
                oracle::equal_work(keys, ek);
            }
            unmatched.push(reference.to_string());
            continue;
        }
        let found = unwrap_params(ek)?;
        if let Some(o) = options
            && found.transport == KeyTransport::Rsa15
            && !o.allow_rsa15
        {
            oracle::equal_work(keys, ek);
            return Err(DecryptError::LegacyRefused);
        }
        let wrapped = cipher_value(ek)?;
        let params = UnwrapParams {
            transport: found.transport,
            digest: found.digest,
            mgf1: found.mgf1,
            label: found.label.as_deref(),
        };
        let targets = targets_of(&ids, ek)?;
        let mut unwrapped = None;
        for (index, entry) in &candidates {
            if let Ok(k) = cipher::unwrap_key(&entry.key, params, &wrapped) {
                unwrapped = Some((k, *index, *entry));
                break;
            }
        }
        // rsa-1_5 with implicit rejection: a failed unwrap, or a key of the
        // wrong length, goes on with a random key of the right length, so it
        // fails in the data decryption like any wrong key.
        let mut rejected = None;
        if options.is_some() && found.transport == KeyTransport::Rsa15 {
            let expected = oracle::expected_key_len(&targets);
            let usable = unwrapped
                .as_ref()
                .is_some_and(|(k, _, _)| Some(k.len()) == expected || expected.is_none());
            if !usable && let Some((index, entry)) = candidates.first() {
                let random = oracle::random_key(expected.unwrap_or(32))?;
                unwrapped = Some((random, *index, *entry));
                rejected = Some(DecryptError::UnwrapFailed {
                    id: id_of(&ek).unwrap_or("(no Id)").to_string(),
                    reference: reference.to_string(),
                });
            }
        }
        let Some((content_key, index, entry)) = unwrapped else {
            return Err(DecryptError::UnwrapFailed {
                id: id_of(&ek).unwrap_or("(no Id)").to_string(),
                reference: reference.to_string(),
            });
        };
        for ed in targets {
            match decrypt_one(ed, &content_key, &mut summary) {
                Ok(edit) => edits.push(edit),
                // The real cause, for the log.
                Err(e) => return Err(rejected.unwrap_or(e)),
            }
        }
        if let Some(cause) = rejected {
            // A random key that decrypted: the plaintext cannot be the sender's.
            return Err(cause);
        }
        if let Some(info) = &entry.info {
            summary.certificates.push(info.sha256.clone());
        }
        summary.key_sources.push(entry.source.clone());
        summary.keys_used.push(index);
        removed.push(ek.id());
        if let Some(token) = referenced_token(&ids, ek) {
            removed.push(token.id());
        }
    }
    if summary.decrypted == 0 {
        return Err(DecryptError::NoMatchingKey(unmatched.join("; ")));
    }
    // Removals: a Security header whose elements all go is removed whole.
    let removed_set: std::collections::HashSet<NodeId> = removed.iter().copied().collect();
    for id in &removed {
        let node = doc.get_node(*id).ok_or(DecryptError::Malformed("node"))?;
        if let Some(parent) = node.parent_element()
            && is(&parent, ns::WSSE, "Security")
            && parent
                .children()
                .filter(|c| c.is_element())
                .all(|c| removed_set.contains(&c.id()))
        {
            edits.push(Edit {
                start: parent.range().start,
                end: parent.range().end,
                replacement: String::new(),
            });
            continue;
        }
        edits.push(Edit {
            start: node.range().start,
            end: node.range().end,
            replacement: String::new(),
        });
    }
    // An EncryptedData of non-XML data that is the whole document decrypts to
    // that data, as libxmlsec1 does.
    let root = doc.root_element();
    if is(&root, ns::XENC, "EncryptedData") && !carries_xml(&root) {
        if options.is_some() {
            // The gateway forwards SOAP envelopes, never bare data.
            return Err(DecryptError::BadPlaintext(
                "the document is encrypted data, not an envelope".into(),
            ));
        }
        let data = edits
            .into_iter()
            .find(|e| e.start == root.range().start)
            .map(|e| e.replacement)
            .unwrap_or_default();
        return Ok((data, summary));
    }
    let out = apply(text, edits);
    // The plaintext came from the message: it must fit where it was put.
    parse(&out, limits).map_err(|e| DecryptError::BadPlaintext(e.to_string()))?;
    Ok((out, summary))
}

/// Whether an EncryptedData's Type says its plaintext is XML.
fn carries_xml(ed: &Node<'_, '_>) -> bool {
    matches!(
        ed.attribute("Type"),
        Some(uri::TYPE_CONTENT | uri::TYPE_ELEMENT)
    )
}

/// The BinarySecurityToken an EncryptedKey references, if any.
fn referenced_token<'a, 'i>(ids: &Ids<'a, 'i>, ek: Node<'a, 'i>) -> Option<Node<'a, 'i>> {
    let key_info = child(ek, ns::DS, "KeyInfo")?;
    let str_node = child(key_info, ns::WSSE, "SecurityTokenReference")?;
    let reference = child(str_node, ns::WSSE, "Reference")?;
    let target = ids.find(reference.attribute("URI")?)?;
    is(&target, ns::WSSE, "BinarySecurityToken").then_some(target)
}

/// The EncryptedData elements an EncryptedKey is for: its ReferenceList, or the
/// EncryptedData that carries it in its KeyInfo, or those referencing it by Id.
fn targets_of<'a, 'i>(
    ids: &Ids<'a, 'i>,
    ek: Node<'a, 'i>,
) -> Result<Vec<Node<'a, 'i>>, DecryptError> {
    let doc = ids.doc;
    let mut targets = Vec::new();
    if let Some(list) = child(ek, ns::XENC, "ReferenceList") {
        for r in list.children().filter(|c| is(c, ns::XENC, "DataReference")) {
            let u = r.attribute("URI").unwrap_or_default();
            let ed = ids
                .find(u)
                .filter(|n| is(n, ns::XENC, "EncryptedData"))
                .ok_or_else(|| DecryptError::DanglingReference(u.to_string()))?;
            targets.push(ed);
        }
        return Ok(targets);
    }
    if let Some(ed) = ek
        .parent_element()
        .filter(|p| is(p, ns::DS, "KeyInfo"))
        .and_then(|p| p.parent_element())
        .filter(|p| is(p, ns::XENC, "EncryptedData"))
    {
        targets.push(ed);
        return Ok(targets);
    }
    if let Some(id) = id_of(&ek) {
        let want = format!("#{id}");
        for ed in doc
            .descendants()
            .filter(|n| is(n, ns::XENC, "EncryptedData"))
        {
            let refers = ed.descendants().any(|d| {
                (is(&d, ns::WSSE, "Reference") || is(&d, ns::DS, "RetrievalMethod"))
                    && d.attribute("URI") == Some(want.as_str())
            });
            if refers {
                targets.push(ed);
            }
        }
    }
    Ok(targets)
}

fn decrypt_one(
    ed: Node<'_, '_>,
    key: &[u8],
    summary: &mut DecryptSummary,
) -> Result<Edit, DecryptError> {
    let method = child(ed, ns::XENC, "EncryptionMethod").ok_or(DecryptError::Malformed(
        "EncryptedData without EncryptionMethod",
    ))?;
    let alg = method.attribute("Algorithm").unwrap_or_default();
    let algorithm = DataEncryption::from_uri(alg).ok_or_else(|| DecryptError::Unsupported {
        what: "data encryption",
        uri: alg.to_string(),
    })?;
    let data = cipher_value(ed)?;
    let plain = cipher::decrypt_data(algorithm, key, &data)?;
    let plain = String::from_utf8(plain)
        .map_err(|_| DecryptError::BadPlaintext("decrypted data is not UTF-8".into()))?;
    summary.decrypted += 1;
    if !summary.data_algorithms.contains(&algorithm) {
        summary.data_algorithms.push(algorithm);
    }
    // An encrypted header is wrapped in wsse11:EncryptedHeader, which goes too.
    let whole = ed
        .parent_element()
        .filter(|p| is(p, ns::WSSE11, "EncryptedHeader"))
        .unwrap_or(ed);
    Ok(Edit {
        start: whole.range().start,
        end: whole.range().end,
        replacement: plain,
    })
}

/// Apply non-overlapping edits; an edit inside another one is dropped.
fn apply(text: &str, mut edits: Vec<Edit>) -> String {
    edits.sort_by_key(|e| (e.start, std::cmp::Reverse(e.end)));
    let mut out = String::with_capacity(text.len());
    let mut pos = 0;
    for e in edits {
        if e.start < pos {
            continue;
        }
        out.push_str(&text[pos..e.start]);
        out.push_str(&e.replacement);
        pos = e.end;
    }
    out.push_str(&text[pos..]);
    out
}
