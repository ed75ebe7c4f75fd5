//! The headers of a forwarded request and answer: hop-by-hop headers removed
//! (RFC 9110 §7.6.1), Host for the upstream, X-Forwarded-For/-Proto, the request
//! id, and the content type of the SOAP version actually sent.

use std::io::Write as _;
use std::net::SocketAddr;

use http::Uri;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::wss::SoapVersion;

/// Headers that describe one hop, not the message (RFC 9110 §7.6.1).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

pub(super) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let hops: Vec<HeaderName> = headers
        .keys()
        .filter(|name| is_hop_by_hop(headers, name))
        .cloned()
        .collect();
    for name in hops {
        headers.remove(name);
    }
}

/// Whether `name` describes one hop: one of [`HOP_BY_HOP`] or named by the
/// Connection header of `headers`.
fn is_hop_by_hop(headers: &HeaderMap, name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(&name.as_str())
        || headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|listed| listed.trim().eq_ignore_ascii_case(name.as_str()))
}

/// The headers sent upstream: the client's, less hop-by-hop ones, with Host for
/// the upstream, X-Forwarded-For/-Proto, X-Request-Id, and the content type of
/// the actual SOAP version. Built in one map sized for them (no copy of the
/// client's map to remove from, no growth).
pub(super) fn forward_headers(
    incoming: &HeaderMap,
    target: &Uri,
    peer: SocketAddr,
    request_id: &str,
    version: Option<SoapVersion>,
) -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(incoming.len() + 5);
    let replaced = |name: &HeaderName| {
        name == header::CONTENT_LENGTH
            || name == header::HOST
            || name == "x-forwarded-for"
            || name == "x-forwarded-proto"
            || name == "x-request-id"
            || (version.is_some() && name == header::CONTENT_TYPE)
    };
    for (name, value) in incoming {
        if !replaced(name) && !is_hop_by_hop(incoming, name) {
            headers.append(name.clone(), value.clone());
        }
    }
    if let Some(authority) = target.authority()
        && let Ok(v) = HeaderValue::from_str(authority.as_str())
    {
        headers.insert(header::HOST, v);
    }
    // "prior, ip" or "ip", written without a String.
    let mut forwarded_for = Vec::with_capacity(64);
    if let Some(prior) = incoming
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
    {
        forwarded_for.extend_from_slice(prior.as_bytes());
        forwarded_for.extend_from_slice(b", ");
    }
    let _ = write!(forwarded_for, "{}", peer.ip());
    if let Ok(v) = HeaderValue::from_maybe_shared(bytes::Bytes::from(forwarded_for)) {
        headers.insert("x-forwarded-for", v);
    }
    headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        headers.insert("x-request-id", v);
    }
    if let Some(version) = version {
        headers.insert(header::CONTENT_TYPE, content_type_for(incoming, version));
    }
    headers
}

/// Content type of the SOAP version actually sent. SOAP 1.2 carries the action
/// as a parameter: taken from the client's content type or its SOAPAction, and
/// written as one quoted string whatever it holds (RFC 9110 §5.6.4), so nothing in
/// it can add parameters of its own.
fn content_type_for(incoming: &HeaderMap, version: SoapVersion) -> HeaderValue {
    match version {
        SoapVersion::Soap11 => HeaderValue::from_static("text/xml; charset=utf-8"),
        SoapVersion::Soap12 => {
            let from_type = incoming
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .and_then(|ct| media_parameter(ct, "action"));
            let from_header = incoming
                .get("soapaction")
                .and_then(|v| v.to_str().ok())
                .map(unquote);
            match from_type.or(from_header).filter(|a| !a.is_empty()) {
                Some(action) => HeaderValue::from_str(&format!(
                    "application/soap+xml; charset=utf-8; action={}",
                    quoted_string(&action)
                ))
                .unwrap_or(HeaderValue::from_static(SOAP12_TYPE)),
                None => HeaderValue::from_static(SOAP12_TYPE),
            }
        }
    }
}

const SOAP12_TYPE: &str = "application/soap+xml; charset=utf-8";

/// A quoted string with `"` and `\` escaped; characters a header cannot carry
/// (controls other than tab) are dropped.
fn quoted_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() && c != '\t' => {}
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A header value as sent: a quoted string unquoted (escapes resolved), or the
/// bare value trimmed.
fn unquote(value: &str) -> String {
    let value = value.trim();
    let Some(inner) = value.strip_prefix('"') else {
        return value.to_string();
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    out.push(next);
                }
            }
            '"' => break,
            c => out.push(c),
        }
    }
    out
}

/// The value of parameter `name` of a media type (`type/sub; a=1; name="v"`),
/// with quoted strings read as one value (a `;` inside quotes ends nothing).
fn media_parameter(media_type: &str, name: &str) -> Option<String> {
    let mut rest = media_type.split_once(';')?.1;
    loop {
        let (key, after) = rest.split_once('=')?;
        let after = after.trim_start();
        // The value, and what follows the `;` after it (None: it was the last).
        let (value, next) = if after.starts_with('"') {
            // Find the closing quote, skipping escaped characters.
            let bytes = after.as_bytes();
            let mut i = 1;
            while i < bytes.len() && bytes[i] != b'"' {
                i += if bytes[i] == b'\\' { 2 } else { 1 };
            }
            let end = (i + 1).min(after.len());
            (
                unquote(&after[..end]),
                after[end..].split_once(';').map(|(_, n)| n),
            )
        } else {
            match after.split_once(';') {
                Some((v, n)) => (v.trim().to_string(), Some(n)),
                None => (after.trim().to_string(), None),
            }
        };
        if key.trim().eq_ignore_ascii_case(name) {
            return Some(value);
        }
        rest = next?;
    }
}

pub(super) fn version_from_content_type(headers: &HeaderMap) -> Option<SoapVersion> {
    let ct = headers.get(header::CONTENT_TYPE)?.to_str().ok()?.as_bytes();
    let starts = |prefix: &str| {
        ct.get(..prefix.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(prefix.as_bytes()))
    };
    if starts("application/soap+xml") {
        Some(SoapVersion::Soap12)
    } else if starts("text/xml") {
        Some(SoapVersion::Soap11)
    } else {
        None
    }
}

/// The client's X-Request-Id when it is a sane token, else a new one.
pub(super) fn request_id(headers: &HeaderMap) -> String {
    if let Some(id) = headers.get("x-request-id").and_then(|v| v.to_str().ok())
        && !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
    {
        return id.to_string();
    }
    generated_request_id()
}

/// An id for a request that brought none: 32 hex digits, a random half drawn
/// once per process and a counter passed through a keyed permutation (so two
/// ids do not tell a client how many requests came between them). Unique
/// within the process (a permutation of distinct counts), and across restarts
/// and replicas by the random half, without asking the random generator (a
/// locked DRBG) on every request. Ids correlate lines; they are not secrets.
fn generated_request_id() -> String {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static KEYS: OnceLock<[u64; 3]> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let [process, k1, k2] = *KEYS.get_or_init(|| {
        let mut raw = [0u8; 24];
        let _ = openssl::rand::rand_bytes(&mut raw);
        let word =
            |i: usize| u64::from_be_bytes(raw[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
        [word(0), word(1), word(2)]
    });
    let count = permute(NEXT.fetch_add(1, Ordering::Relaxed), k1, k2);
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut id = String::with_capacity(32);
    for half in [process, count] {
        for shift in (0..16).rev() {
            id.push(DIGITS[(half >> (shift * 4)) as usize & 0xf] as char);
        }
    }
    id
}

/// A bijection on 64-bit numbers, keyed: xor, the splitmix64 finalizer (each
/// step invertible: xor-shifts and odd multipliers), xor. Without the keys,
/// neighbouring inputs give unrelated outputs.
fn permute(n: u64, k1: u64, k2: u64) -> u64 {
    let mut z = n ^ k1;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)) ^ k2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soap12_content_type_carries_the_action() {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/xml"));
        h.insert("soapaction", HeaderValue::from_static("\"urn:order\""));
        assert_eq!(
            content_type_for(&h, SoapVersion::Soap12),
            "application/soap+xml; charset=utf-8; action=\"urn:order\""
        );
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/soap+xml; action=\"urn:x\""),
        );
        assert_eq!(
            content_type_for(&h, SoapVersion::Soap12),
            "application/soap+xml; charset=utf-8; action=\"urn:x\""
        );
        assert_eq!(
            content_type_for(&h, SoapVersion::Soap11),
            "text/xml; charset=utf-8"
        );
    }

    #[test]
    fn an_action_cannot_add_parameters() {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/xml"));
        h.insert(
            "soapaction",
            HeaderValue::from_static("x\"; charset=iso-8859-1"),
        );
        assert_eq!(
            content_type_for(&h, SoapVersion::Soap12),
            r#"application/soap+xml; charset=utf-8; action="x\"; charset=iso-8859-1""#
        );
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(r#"application/soap+xml; action="urn:a;b\"c"; charset=utf-8"#),
        );
        assert_eq!(
            content_type_for(&h, SoapVersion::Soap12),
            r#"application/soap+xml; charset=utf-8; action="urn:a;b\"c""#
        );
        assert_eq!(media_parameter("text/xml", "action"), None);
        assert_eq!(
            media_parameter("a/b; charset=utf-8; ACTION=urn:x", "action").as_deref(),
            Some("urn:x")
        );
    }

    #[test]
    fn hop_by_hop_headers_go_including_those_connection_names() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret-hop"),
        );
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("soapaction", HeaderValue::from_static("urn:a"));
        strip_hop_by_hop(&mut h);
        assert!(
            h.get("x-secret-hop").is_none()
                && h.get("keep-alive").is_none()
                && h.get(header::CONNECTION).is_none()
        );
        assert!(h.get("soapaction").is_some());
    }

    #[test]
    fn forwarded_headers_keep_the_message_and_replace_the_hop() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, X-Secret-Hop"),
        );
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("10"));
        h.insert(header::HOST, HeaderValue::from_static("gateway:8080"));
        h.insert("x-request-id", HeaderValue::from_static("theirs"));
        h.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/xml"));
        h.append("soapaction", HeaderValue::from_static("\"urn:a\""));
        h.append("x-multi", HeaderValue::from_static("1"));
        h.append("x-multi", HeaderValue::from_static("2"));
        let target: Uri = "http://receiver:9000/orders".parse().unwrap();
        let peer: SocketAddr = "192.0.2.7:5000".parse().unwrap();
        let out = forward_headers(&h, &target, peer, "id-1", Some(SoapVersion::Soap11));
        for gone in [
            "connection",
            "x-secret-hop",
            "keep-alive",
            "transfer-encoding",
            "content-length",
        ] {
            assert!(out.get(gone).is_none(), "{gone} forwarded");
        }
        let one = |name: &str| {
            let all: Vec<_> = out
                .get_all(name)
                .iter()
                .map(|v| v.to_str().unwrap())
                .collect();
            assert_eq!(all.len(), 1, "{name}: {all:?}");
            all[0].to_string()
        };
        assert_eq!(one("host"), "receiver:9000");
        assert_eq!(one("x-request-id"), "id-1");
        assert_eq!(one("x-forwarded-for"), "10.0.0.1, 192.0.2.7");
        assert_eq!(one("x-forwarded-proto"), "http");
        assert_eq!(one("content-type"), "text/xml; charset=utf-8");
        assert_eq!(one("soapaction"), "\"urn:a\"");
        let multi: Vec<_> = out.get_all("x-multi").iter().collect();
        assert_eq!(multi, ["1", "2"]);
        // Without a version (a WSDL GET) the client's content type stays.
        let get = forward_headers(&h, &target, peer, "id-2", None);
        assert_eq!(get.get(header::CONTENT_TYPE).unwrap(), "text/xml");
        h.remove("x-forwarded-for");
        let first = forward_headers(&h, &target, peer, "id-3", None);
        assert_eq!(first.get("x-forwarded-for").unwrap(), "192.0.2.7");
    }

    #[test]
    fn request_ids_are_kept_when_sane() {
        let mut h = HeaderMap::new();
        h.insert("x-request-id", HeaderValue::from_static("abc-123"));
        assert_eq!(request_id(&h), "abc-123");
        h.insert("x-request-id", HeaderValue::from_static("bad id <script>"));
        assert_eq!(request_id(&h).len(), 32);
    }

    #[test]
    fn generated_request_ids_differ_and_share_the_process_half() {
        let (a, b) = (request_id(&HeaderMap::new()), request_id(&HeaderMap::new()));
        assert_ne!(a, b);
        assert_eq!(a[..16], b[..16]);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()) && a.len() == 32);
    }
}
