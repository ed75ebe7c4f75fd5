//! Hostile input against the running daemon: every case gets its documented
//! status and fault code within a bounded time, nothing of a refused request
//! reaches the receiver, and memory stays bounded.
//!
//! The cases are the table below (generated where they are large: 100,000
//! levels of nesting, megabyte names and attributes). docs/RELIABILITY.md lists
//! what they cover.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::fault_code;
use common::net::{self, Daemon, Receiver};
use http_body_util::{BodyExt, Full};

const S11: &str = "http://schemas.xmlsoap.org/soap/envelope/";
const S12: &str = "http://www.w3.org/2003/05/soap-envelope";
/// No case may take longer than this (slow-drip bodies wait for the 1 s idle timeout).
const BOUND: Duration = Duration::from_secs(15);
/// One test at a time: the memory measured is the process's.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A hang guard for each case of the attack run: no timing claim, a bound that
/// only a quadratic path or an amplification would reach.
const ATTACK_BOUND: Duration = Duration::from_secs(1);

fn env(header: &str, body: &str) -> Vec<u8> {
    format!(
        r#"<soap:Envelope xmlns:soap="{S11}">{header}<soap:Body>{body}</soap:Body></soap:Envelope>"#
    )
    .into_bytes()
}

fn body(content: &str) -> Vec<u8> {
    env("", content)
}

fn bytes_in_body(raw: &[u8]) -> Vec<u8> {
    let mut out = format!(r#"<soap:Envelope xmlns:soap="{S11}"><soap:Body><a>"#).into_bytes();
    out.extend_from_slice(raw);
    out.extend_from_slice(b"</a></soap:Body></soap:Envelope>");
    out
}

struct Case {
    name: &'static str,
    /// The longest the answer may take.
    bound: Duration,
    method: &'static str,
    /// `/orders` (default limits), `/raised` (limits raised for the linearity
    /// and amplification cases) or `/elsewhere` (no route).
    path: &'static str,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    status: u16,
    /// The fault code, or "" for a success.
    code: &'static str,
}

fn post(name: &'static str, body: Vec<u8>, status: u16, code: &'static str) -> Case {
    Case {
        name,
        bound: BOUND,
        method: "POST",
        path: "/orders",
        content_type: Some("text/xml; charset=utf-8"),
        body,
        status,
        code,
    }
}

const MALFORMED: (u16, &str) = (400, "malformed-envelope");
const LIMIT: (u16, &str) = (400, "xml-limit-exceeded");

/// The same request on the route whose XML limits are raised far.
fn raised(case: Case) -> Case {
    Case {
        path: "/raised",
        ..case
    }
}

/// `n` namespace declarations ` xmlns:nK="urn:K"`.
fn declarations(n: usize, prefix: &str) -> String {
    (0..n)
        .map(|i| format!(" xmlns:{prefix}{i}=\"urn:{i}\""))
        .collect()
}

/// An Envelope with `head` on its start tag and `body` in its Body.
fn on_envelope(head: &str, body: &str) -> Vec<u8> {
    format!(
        r#"<soap:Envelope xmlns:soap="{S11}"{head}><soap:Body>{body}</soap:Body></soap:Envelope>"#
    )
    .into_bytes()
}

/// The cases of the attack run (issue 15): amplification, quadratic namespace
/// handling, XML threat limits, namespace well-formedness, SOAP structure.
fn attack_cases() -> Vec<Case> {
    let (m, mc) = MALFORMED;
    let (l, lc) = LIMIT;
    let long_uri = format!("urn:{}", "u".repeat(1000));
    // `levels` nested elements declaring 250 namespaces each.
    let nested_declarations = |levels: usize| -> String {
        (0..levels)
            .map(|level| format!("<d{}>", declarations(250, &format!("l{level}n"))))
            .collect::<String>()
            + "<a/>"
            + &"</d>".repeat(levels)
    };
    let distinct_prefixes: String = (0..40_000)
        .map(|i| format!("<p{i}:a xmlns:p{i}=\"urn:p\"/>"))
        .collect();
    let long_reference = format!("&#x{}41;", "0".repeat(100));
    let dup = |on: &str| format!(r#" xmlns:p="urn:x" xmlns:q="urn:x" p:a="1" q:a="2"{on}"#);
    let cases = vec![
        // 1. Amplification: 5,000 declarations x 5,000 elements (97 KB).
        raised(post("amplification: 5,000 declarations x 5,000 elements", on_envelope(&declarations(5_000, "n"), &"<a/>".repeat(5_000)), 200, "")),
        post("amplification with the default limits", on_envelope(&declarations(5_000, "n"), &"<a/>".repeat(5_000)), l, lc),
        post("amplification through a long namespace each element uses", on_envelope(&format!(r#" xmlns:p="{long_uri}""#), &"<p:a/>".repeat(5_000)), l, lc),
        post("amplification through the default namespace", on_envelope(&format!(r#" xmlns="{long_uri}""#), &"<a/>".repeat(5_000)), l, lc),
        // 2. Quadratic namespace handling.
        // (100,000 under raised limits: `namespace_handling_is_linear`, on the engine alone.)
        raised(post("20,000 declarations on the Envelope", on_envelope(&declarations(20_000, "n"), "<a/>"), 200, "")),
        post("100,000 declarations with the default limits", on_envelope(&declarations(100_000, "n"), "<a/>"), l, lc),
        raised(post("40,000 distinct prefixes in the Body", body(&distinct_prefixes), 200, "")),
        // 3. XML threat limits.
        post("50,000 attributes on one element", body(&format!("<a{}/>", (0..50_000).map(|i| format!(" a{i}=\"{i}\"")).collect::<String>())), l, lc),
        post("1 MiB element name (limit)", body(&format!("<{0}>x</{0}>", "n".repeat(1 << 20))), l, lc),
        post("50,000 namespace declarations", body(&format!("<a{}/>", declarations(50_000, "n"))), l, lc),
        post("1,250 declarations in scope over five levels", body(&nested_declarations(5)), l, lc),
        post("1,000 declarations in scope over four levels", body(&nested_declarations(4)), 200, ""),
        post("a 2,000-byte name in the Header", env(&format!("<soap:Header><{0}/></soap:Header>", "h".repeat(2_000)), "<a/>"), l, lc),
        post("300 attributes in the Header", env(&format!("<soap:Header><h{}/></soap:Header>", (0..300).map(|i| format!(" a{i}=\"{i}\"")).collect::<String>()), "<a/>"), l, lc),
        // 4. Namespace well-formedness (Namespaces in XML 1.0 §6.3, §3).
        post("one expanded attribute name twice on the Envelope", on_envelope(&dup(""), "<a/>"), m, mc),
        post("one expanded attribute name twice in the Header", env(&format!("<soap:Header><h{}/></soap:Header>", dup("")), "<a/>"), m, mc),
        post("one expanded attribute name twice on the Body tag", format!(r#"<soap:Envelope xmlns:soap="{S11}"><soap:Body{}><a/></soap:Body></soap:Envelope>"#, dup("")).into_bytes(), m, mc),
        post("one expanded attribute name twice in the Body", body(&format!("<a{}/>", dup(""))), m, mc),
        post("one expanded attribute name twice deep in the Body", body(&format!("<a><b><c{}/></b></a>", dup(""))), m, mc),
        post("element named xmlns:foo in the Body", body(r#"<xmlns:foo xmlns:foo="urn:x"/>"#), m, mc),
        post("element named xmlns:foo in the Header", env(r#"<soap:Header><xmlns:foo/></soap:Header>"#, "<a/>"), m, mc),
        post("element named xml:foo in the Body (fuzzer)", body("<a><xml:foo/></a>"), m, mc),
        post("element named xml:foo in the Header (fuzzer)", env("<soap:Header><xml:foo/></soap:Header>", "<a/>"), m, mc),
        post("&#x1; in an attribute value in the Header", env(r#"<soap:Header><h a="&#x1;"/></soap:Header>"#, "<a/>"), m, mc),
        post("&#xFFFF; in an attribute value on the Envelope", on_envelope(r#" a="&#xFFFF;""#, "<a/>"), m, mc),
        post("&#0; in an attribute value on the Body tag", format!(r#"<soap:Envelope xmlns:soap="{S11}"><soap:Body a="&#0;"><a/></soap:Body></soap:Envelope>"#).into_bytes(), m, mc),
        post("a 106-character character reference in the Body", body(&format!("<a>{long_reference}</a><b c=\"{long_reference}\"/>")), 200, ""),
        post("a 106-character character reference in the Header", env(&format!("<soap:Header><h c=\"{long_reference}\">{long_reference}</h></soap:Header>"), "<a/>"), 200, ""),
        // 5. SOAP structure.
        post("a soap:Body inside the Header", env("<soap:Header><soap:Body><decoy/></soap:Body></soap:Header>", "<a/>"), m, mc),
        post("a soap:Body deep inside the Header", env("<soap:Header><h><soap:Body><decoy/></soap:Body></h></soap:Header>", "<a/>"), m, mc),
        post("a SOAP 1.2 Body inside a SOAP 1.1 Header", env(&format!(r#"<soap:Header><e:Body xmlns:e="{S12}"/></soap:Header>"#), "<a/>"), m, mc),
        post("an Envelope inside the Header", env("<soap:Header><soap:Envelope/></soap:Header>", "<a/>"), m, mc),
        post("two ultimate-receiver Security headers", env(r#"<soap:Header><wsse:Security xmlns:wsse="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"/><wsse:Security xmlns:wsse="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"/></soap:Header>"#, "<a/>"), m, mc),
        post("a Security header for an actor beside the ultimate one", env(r#"<soap:Header><wsse:Security xmlns:wsse="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"/><wsse:Security xmlns:wsse="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd" soap:actor="urn:next"/></soap:Header>"#, "<a/>"), 200, ""),
        post("character data directly inside the Envelope", env("text", "<a/>"), m, mc),
        post("a reference directly inside the Envelope", env("&amp;", "<a/>"), m, mc),
        post("an element before the Header", env("<x/><soap:Header/>", "<a/>"), m, mc),
        post("an element before the Body", env("<x/>", "<a/>"), m, mc),
        post("UTF-8 byte-order mark declaring ISO-8859-1", [b"\xEF\xBB\xBF<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>".as_slice(), &body("<a/>")].concat(), m, mc),
        post("UTF-8 byte-order mark declaring UTF-8", [b"\xEF\xBB\xBF<?xml version=\"1.0\" encoding=\"UTF-8\"?>".as_slice(), &body("<a/>")].concat(), 200, ""),
    ];
    cases
        .into_iter()
        .map(|case| Case {
            bound: ATTACK_BOUND,
            ..case
        })
        .collect()
}

fn cases() -> Vec<Case> {
    let (m, mc) = MALFORMED;
    let (l, lc) = LIMIT;
    let laughs = format!(
        r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;"><!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">]>{}"#,
        String::from_utf8(body("<a>&lol2;</a>")).unwrap()
    );
    let deep = |n: usize| "<a>".repeat(n) + &"</a>".repeat(n);
    let many_attributes: String = (0..5_000).map(|i| format!(" a{i}=\"{i}\"")).collect();
    let duplicate_among_many: String = (0..200).map(|i| format!(" a{}=\"{i}\"", i % 199)).collect();
    let long_name = "n".repeat(1 << 20);
    let mut v = vec![
        // Entities and DOCTYPE, in every position.
        post("billion laughs", laughs.into_bytes(), m, mc),
        post("external entity", format!(r#"<!DOCTYPE e [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>{}"#, String::from_utf8(body("<a>&xxe;</a>")).unwrap()).into_bytes(), m, mc),
        post("external parameter entity", format!(r#"<!DOCTYPE e [<!ENTITY % p SYSTEM "http://127.0.0.1:1/x.dtd"> %p;]>{}"#, String::from_utf8(body("<a/>")).unwrap()).into_bytes(), m, mc),
        post("DOCTYPE first", [b"<!DOCTYPE soap:Envelope>".as_slice(), &body("<a/>")].concat(), m, mc),
        post("DOCTYPE after declaration", [b"<?xml version=\"1.0\"?><!DOCTYPE x SYSTEM \"x.dtd\">".as_slice(), &body("<a/>")].concat(), m, mc),
        post("DOCTYPE in the Header", env("<soap:Header><!DOCTYPE x></soap:Header>", "<a/>"), m, mc),
        post("DOCTYPE in the Body", body("<!DOCTYPE x><a/>"), m, mc),
        post("DOCTYPE deep in the Body", body("<a><b><!DOCTYPE x></b></a>"), m, mc),
        post("DOCTYPE after the root", [body("<a/>").as_slice(), b"<!DOCTYPE x>"].concat(), m, mc),
        post("undefined entity in the Body", body("<a>&xxe;</a>"), m, mc),
        post("undefined entity in an attribute", body(r#"<a b="&xxe;"/>"#), m, mc),
        post("undefined entity in the Header", env("<soap:Header><h>&xxe;</h></soap:Header>", "<a/>"), m, mc),
        post("character reference to NUL", body("<a>&#0;</a>"), m, mc),
        post("character reference to a surrogate", body("<a>&#xD800;</a>"), m, mc),
        post("character reference beyond Unicode", body("<a>&#x110000;</a>"), m, mc),
        post("unterminated reference", body(&format!("<a>&amp{}</a>", "x".repeat(1000))), m, mc),
        // Depth.
        post("100,000 levels in the Body", body(&deep(100_000)), l, lc),
        post("100,000 levels in the Header", env(&format!("<soap:Header>{}</soap:Header>", deep(100_000)), "<a/>"), l, lc),
        post("one level over the limit", body(&deep(255)), l, lc),
        post("at the depth limit", body(&deep(254)), 200, ""),
        // Huge names and attributes: over the XML limits, but for a long value.
        post("1 MiB attribute value", body(&format!("<a v=\"{}\"/>", "v".repeat(1 << 20))), 200, ""),
        post("1 MiB element name", body(&format!("<{long_name}>x</{long_name}>")), l, lc),
        post("5,000 attributes", body(&format!("<a{many_attributes}/>")), l, lc),
        post("256 attributes", body(&format!("<a{}/>", (0..256).map(|i| format!(" a{i}=\"{i}\"")).collect::<String>())), 200, ""),
        post("a duplicate among 200 attributes", body(&format!("<a{duplicate_among_many}/>")), m, mc),
        post("1 MiB attribute name", body(&format!("<a {long_name}=\"1\"/>")), l, lc),
        post("unquoted attribute", body("<a b=1/>"), m, mc),
        post("'<' in an attribute value", body(r#"<a b="<"/>"#), m, mc),
        post("attributes not separated", body(r#"<a b="1"c="2"/>"#), m, mc),
        // Encodings and bytes.
        post("invalid UTF-8 byte", bytes_in_body(b"\xFF"), m, mc),
        post("overlong UTF-8", bytes_in_body(b"\xC0\xAF"), m, mc),
        post("UTF-8 encoded surrogate", bytes_in_body(b"\xED\xA0\x80"), m, mc),
        post("truncated UTF-8 sequence", bytes_in_body(b"\xE2\x82"), m, mc),
        post("NUL in text", bytes_in_body(b"a\0b"), m, mc),
        post("NUL in a name", body("<a\0b/>"), m, mc),
        post("NUL in the Header", env("<soap:Header><h>\0</h></soap:Header>", "<a/>"), m, mc),
        post("control character", bytes_in_body(b"\x07"), m, mc),
        post("U+FFFF", bytes_in_body("\u{FFFF}".as_bytes()), m, mc),
        post("unsupported declared encoding", [b"<?xml version=\"1.0\" encoding=\"EBCDIC-US\"?>".as_slice(), &body("<a/>")].concat(), m, mc),
        post("UTF-16 byte order mark, UTF-8 bytes", [b"\xFF\xFE".as_slice(), &body("<a/>")].concat(), m, mc),
        // Structure.
        post("empty request", Vec::new(), m, mc),
        post("whitespace only", b"   \n  ".to_vec(), m, mc),
        post("truncated in the Body", body("<a>text</a>")[..90].to_vec(), m, mc),
        post("truncated inside a tag", body("<abcdef g=\"1\"/>")[..85].to_vec(), m, mc),
        post("truncated in the Header", env("<soap:Header><h>x</h></soap:Header>", "<a/>")[..70].to_vec(), m, mc),
        post("two Envelopes", [body("<a/>"), body("<b/>")].concat(), m, mc),
        post("two Bodies", format!(r#"<s:Envelope xmlns:s="{S11}"><s:Body><a/></s:Body><s:Body><b/></s:Body></s:Envelope>"#).into_bytes(), m, mc),
        post("Body as the root", format!(r#"<s:Body xmlns:s="{S11}"><a/></s:Body>"#).into_bytes(), m, mc),
        post("Body after the Envelope", format!(r#"<s:Envelope xmlns:s="{S11}"/><s:Body xmlns:s="{S11}"><a/></s:Body>"#).into_bytes(), m, mc),
        post("soap:Body bound to another namespace", format!(r#"<soap:Envelope xmlns:soap="{S11}"><soap:Body xmlns:soap="urn:other"><a/></soap:Body></soap:Envelope>"#).into_bytes(), m, mc),
        post("Envelope in an unknown namespace", br#"<s:Envelope xmlns:s="urn:x"><s:Body><a/></s:Body></s:Envelope>"#.to_vec(), m, mc),
        post("Envelope in no namespace", b"<Envelope><Body><a/></Body></Envelope>".to_vec(), m, mc),
        post("Header after the Body", format!(r#"<s:Envelope xmlns:s="{S11}"><s:Body><a/></s:Body><s:Header/></s:Envelope>"#).into_bytes(), m, mc),
        post("SOAP 1.2 element after the Body", format!(r#"<s:Envelope xmlns:s="{S12}"><s:Body><a/></s:Body><x/></s:Envelope>"#).into_bytes(), m, mc),
        post("empty Body", body(""), 400, "empty-body"),
        post("Body with comments only", body("<!-- x --><!-- y -->"), 400, "empty-body"),
        post("Body with text only", body("just text"), 400, "empty-body"),
        post("Body already encrypted", body(r#"<xenc:EncryptedData xmlns:xenc="http://www.w3.org/2001/04/xmlenc#"/>"#), 400, "already-encrypted"),
        post("mismatched end tags", body("<a><b></a></b>"), m, mc),
        post("end tag closing the Body early", body("<a/></a>"), m, mc),
        post("undeclared prefix", body("<p:a/>"), m, mc),
        post("prefix undeclared by xmlns:p=\"\"", body(r#"<a xmlns:p=""/>"#), m, mc),
        post("xmlns prefix declared", body(r#"<a xmlns:xmlns="urn:x"/>"#), m, mc),
        post("']]>' in text", body("<a>]]></a>"), m, mc),
        post("'--' in a comment", body("<a><!-- -- --></a>"), m, mc),
        post("xml declaration in the Body", body("<a><?xml version=\"1.0\"?></a>"), m, mc),
        post("unterminated CDATA", body("<a><![CDATA[ x </a>"), m, mc),
        post("text after the root", [body("<a/>").as_slice(), b"trailing"].concat(), m, mc),
        post("JSON as text/xml", br#"{"Envelope": {"Body": 1}}"#.to_vec(), m, mc),
        // Content types, methods, paths.
        Case { name: "text/plain", content_type: Some("text/plain"), ..post("", body("<a/>"), 415, "unsupported-media-type") },
        Case { name: "no content type", content_type: None, ..post("", body("<a/>"), 415, "unsupported-media-type") },
        Case { name: "application/json", content_type: Some("application/json"), ..post("", body("<a/>"), 415, "unsupported-media-type") },
        Case { name: "SOAP 1.1 as application/soap+xml", content_type: Some("application/soap+xml"), ..post("", body("<a/>"), 200, "") },
        Case { name: "GET without ?wsdl", method: "GET", ..post("", Vec::new(), 405, "method-not-allowed") },
        Case { name: "PUT", method: "PUT", ..post("", body("<a/>"), 405, "method-not-allowed") },
        Case { name: "DELETE", method: "DELETE", ..post("", Vec::new(), 405, "method-not-allowed") },
        post("over max_body (16 MiB)", body(&format!("<a>{}</a>", "x".repeat(17 << 20))), 413, "payload-too-large"),
    ];
    v.push(Case {
        name: "unknown path",
        path: "/elsewhere",
        ..post("", body("<a/>"), 404, "no-route")
    });
    v.extend(attack_cases());
    v
}

/// What the process holds now (the high-water mark stays high).
fn rss_mb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap()
        / 1024
}

fn peak_rss_mb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap()
        / 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hostile_input_gets_its_status_and_code_in_bounded_time() {
    let _serial = SERIAL.lock().await;
    let rx = common::receiver();
    let receiver = Receiver::start(rx.key_ring()).await.unwrap();
    let upstream = format!("http://{}/service", receiver.addr);
    // Only counted (the `/raised` route's): the receiver's own decryption is not
    // what the attack run measures.
    let (counting, counted) = net::recording_upstream().await;
    // A second route with the XML limits raised far: namespace handling must
    // stay linear and the output bounded when the limits do not stop it.
    let raised_route = format!(
        r#"
[[route]]
name = "raised"
path = "/raised"
upstream = "http://{counting}/service"
alias = "orders-receiver"
xml_limits = {{ max_attributes_per_element = 200000, max_namespace_declarations = 200000 }}
"#
    );
    let daemon = Daemon::start(
        &(net::config(
            &upstream,
            "",
            "body_idle_timeout = \"1s\"\nmax_body = \"16MiB\"",
        ) + &raised_route),
        &[("orders-receiver", rx.cert_pem())],
    )
    .await;
    let client = net::client();
    let cases = cases();
    assert!(cases.len() >= 100, "{} cases", cases.len());
    let rss_at_start = rss_mb();
    let mut accepted = 0;
    let mut slowest = (Duration::ZERO, "");
    for case in &cases {
        let path = case.path;
        let mut request = http::Request::builder()
            .method(case.method)
            .uri(daemon.url(path))
            .header("soapaction", "\"urn:x\"");
        if let Some(ct) = case.content_type {
            request = request.header("content-type", ct);
        }
        let request = request
            .body(Full::new(Bytes::from(case.body.clone())))
            .unwrap();
        let started = Instant::now();
        let (status, answer) = tokio::time::timeout(case.bound, async {
            let response = client.request(request).await.expect("the daemon answers");
            let status = response.status().as_u16();
            let answer = response.into_body().collect().await.unwrap().to_bytes();
            (status, String::from_utf8_lossy(&answer).into_owned())
        })
        .await
        .unwrap_or_else(|_| panic!("{}: no answer within {:?}", case.name, case.bound));
        let took = started.elapsed();
        println!("{:>8.3} s  {}", took.as_secs_f64(), case.name);
        if took > slowest.0 {
            slowest = (took, case.name);
        }
        assert_eq!(
            (status, fault_code(&answer)),
            (case.status, case.code),
            "{}: {}",
            case.name,
            &answer[..answer.len().min(400)]
        );
        if status == 200 {
            accepted += 1;
            // No amplification: what went upstream is at most twice what came.
            let sent = if case.path == "/raised" {
                counted.lock().unwrap().last().copied().unwrap_or(0)
            } else {
                receiver
                    .received()
                    .iter()
                    .rfind(|r| r.complete)
                    .map_or(0, |r| r.raw.len())
            };
            assert!(
                sent <= 2 * case.body.len() + 16 * 1024,
                "{}: {} bytes in, {sent} bytes upstream",
                case.name,
                case.body.len()
            );
        }
        assert_eq!(
            receiver.received().iter().filter(|r| r.complete).count()
                + counted.lock().unwrap().len(),
            accepted,
            "{}: only accepted requests reach the receiver",
            case.name
        );
    }
    println!(
        "{} cases, {accepted} accepted, slowest {:?} ({}), peak RSS {} MB",
        cases.len(),
        slowest.0,
        slowest.1,
        peak_rss_mb()
    );
    // The test process holds the daemon, the receiver and every case's body.
    assert!(peak_rss_mb() < 512, "peak RSS {} MB", peak_rss_mb());
    // And gives back what the cases took.
    let rss_at_end = rss_mb();
    println!("RSS {rss_at_start} MB at the start, {rss_at_end} MB at the end");
    assert!(
        rss_at_end <= rss_at_start + 64,
        "RSS grew from {rss_at_start} MB to {rss_at_end} MB"
    );
}

/// Requests broken at the connection level: a body shorter than its
/// Content-Length, a chunked body that stops, a slow drip, a gigantic header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_requests_are_answered_or_dropped_and_nothing_reaches_the_receiver() {
    let _serial = SERIAL.lock().await;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rx = common::receiver();
    let receiver = Receiver::start(rx.key_ring()).await.unwrap();
    let daemon = Daemon::start(
        &net::config(
            &format!("http://{}/service", receiver.addr),
            "",
            "body_idle_timeout = \"1s\"\nstream_threshold = \"4KiB\"",
        ),
        &[("orders-receiver", rx.cert_pem())],
    )
    .await;
    let whole = body(&"<a>some order line</a>".repeat(1000));
    let head = |extra: &str| {
        format!("POST /orders HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\n{extra}\r\n")
    };
    // Write `parts` with `pause` between them, then close the writing side
    // (or not), and read what comes back within the bound.
    async fn exchange(
        addr: std::net::SocketAddr,
        parts: Vec<Vec<u8>>,
        pause: Duration,
        close: bool,
    ) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        for part in parts {
            if stream.write_all(&part).await.is_err() {
                break;
            }
            tokio::time::sleep(pause).await;
        }
        if close {
            let _ = stream.shutdown().await;
        }
        let mut out = Vec::new();
        let _ = tokio::time::timeout(BOUND, stream.read_to_end(&mut out)).await;
        String::from_utf8_lossy(&out).into_owned()
    }
    // One chunk announced whole, its last 10 bytes never sent.
    let stopped_chunk = [
        head("Transfer-Encoding: chunked\r\n").as_bytes(),
        format!("{:x}\r\n", whole.len()).as_bytes(),
        &whole[..whole.len() - 10],
    ]
    .concat();
    /// Name, what is written (in parts), pause between parts, close the writing
    /// side afterwards, how the answer starts.
    type Broken = (&'static str, Vec<Vec<u8>>, Duration, bool, &'static str);
    let cases: Vec<Broken> = vec![
        (
            "Content-Length larger than the body, then close",
            vec![
                [
                    head(&format!("Content-Length: {}\r\n", whole.len() + 100)).as_bytes(),
                    &whole,
                ]
                .concat(),
            ],
            Duration::ZERO,
            true,
            "",
        ),
        (
            "buffered body stopping mid-way, connection left open",
            vec![
                [
                    head(&format!("Content-Length: {}\r\n", whole.len())).as_bytes(),
                    &whole[..whole.len() / 2],
                ]
                .concat(),
            ],
            Duration::ZERO,
            false,
            "HTTP/1.1 408",
        ),
        (
            "chunked body stopping mid-way, then close",
            vec![stopped_chunk.clone()],
            Duration::ZERO,
            true,
            "",
        ),
        (
            "streamed (chunked) body stopping mid-way, connection left open",
            vec![stopped_chunk.clone()],
            Duration::ZERO,
            false,
            "HTTP/1.1",
        ),
        (
            "slow drip: one byte every 1.5 s",
            {
                let mut parts =
                    vec![head(&format!("Content-Length: {}\r\n", whole.len())).into_bytes()];
                parts.extend(whole[..4].iter().map(|b| vec![*b]));
                parts
            },
            Duration::from_millis(1500),
            false,
            "HTTP/1.1 408",
        ),
        (
            "1 MiB header",
            vec![
                [
                    head(&format!(
                        "X-Big: {}\r\nContent-Length: {}\r\n",
                        "b".repeat(1 << 20),
                        whole.len()
                    ))
                    .as_bytes(),
                    &whole,
                ]
                .concat(),
            ],
            Duration::ZERO,
            true,
            "HTTP/1.1 431",
        ),
    ];
    for (name, parts, pause, close, want) in cases {
        let started = Instant::now();
        let answer = exchange(daemon.addr, parts, pause, close).await;
        assert!(
            started.elapsed() < BOUND + Duration::from_secs(8),
            "{name}: took {:?}",
            started.elapsed()
        );
        assert!(answer.starts_with(want), "{name}: {answer:.300}");
        println!(
            "{:>8.3} s  {name}: {}",
            started.elapsed().as_secs_f64(),
            answer.lines().next().unwrap_or("(closed)")
        );
    }
    // Give the daemon time to give up on what it was still reading.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // A streamed request may have started towards the receiver; it must have
    // been aborted there, never completed with half a body.
    let received = receiver.received();
    assert!(
        received.iter().all(|r| !r.complete),
        "a broken request reached the receiver complete: {:?}",
        received
            .iter()
            .map(|r| (r.complete, r.raw.len()))
            .collect::<Vec<_>>()
    );
    // And the daemon still serves.
    let (status, _, _) = net::post(
        &net::client(),
        &daemon.url("/orders"),
        "text/xml",
        &body("<a/>"),
    )
    .await;
    assert_eq!(status, 200);
}

// ---- the engine alone: linear namespace work, bounded output ------------------

/// Limits raised far, so that only the cost of namespace handling is measured.
fn raised_limits() -> wssgate::wss::EncryptOptions {
    wssgate::wss::EncryptOptions {
        limits: wssgate::wss::Limits {
            max_attributes_per_element: 1_000_000,
            max_namespace_declarations: 1_000_000,
            ..wssgate::wss::Limits::default()
        },
        ..wssgate::wss::EncryptOptions::default()
    }
}

/// Encrypt with raised limits; the namespace work it took and the output.
fn namespace_work_of(input: &[u8]) -> (u64, Vec<u8>, Duration) {
    let recipient = common::receiver().recipient();
    let before = wssgate::wss::namespace_work();
    let started = Instant::now();
    let (out, _) = wssgate::wss::encrypt_to_vec(input, &recipient, &raised_limits())
        .unwrap_or_else(|e| panic!("refused: {e}"));
    (
        wssgate::wss::namespace_work() - before,
        out,
        started.elapsed(),
    )
}

/// Ten times the declarations (or prefixes) cost at most about ten times the
/// namespace work: counted, not timed. Quadratic handling made this 100 times.
#[test]
fn namespace_handling_is_linear() {
    let _serial = SERIAL.blocking_lock();
    /// A named input made for a number of declarations or prefixes.
    type Shape = (&'static str, fn(usize) -> Vec<u8>);
    let shapes: [Shape; 4] = [
        ("declarations on the Envelope", |n| {
            on_envelope(&declarations(n, "n"), "<a/>")
        }),
        ("distinct prefixes in the Body", |n| {
            body(
                &(0..n)
                    .map(|i| format!("<p{i}:a xmlns:p{i}=\"urn:p\"/>"))
                    .collect::<String>(),
            )
        }),
        (
            "declarations on the Envelope, every tenth used in the Body",
            |n| {
                on_envelope(
                    &declarations(n, "n"),
                    &(0..n)
                        .step_by(10)
                        .map(|i| format!("<n{i}:b/>"))
                        .collect::<String>(),
                )
            },
        ),
        ("elements after the Body", |n| {
            let mut v = on_envelope(&declarations(n, "n"), "<a/>");
            let at = v.len() - "</soap:Envelope>".len();
            v.splice(at..at, "<t/>".repeat(n).into_bytes());
            v
        }),
    ];
    for (what, make) in shapes {
        let (small, _, small_time) = namespace_work_of(&make(10_000));
        let (large, out, large_time) = namespace_work_of(&make(100_000));
        println!(
            "{what}: 10,000 -> {small} units ({small_time:?}), 100,000 -> {large} units ({large_time:?}), {} bytes out",
            out.len()
        );
        assert!(
            large <= 12 * small,
            "{what}: 10x the input cost {:.1}x the namespace work",
            large as f64 / small as f64
        );
    }
}

/// The encrypted output of every accepted input is at most twice the input
/// plus 16 KiB, whatever namespaces are in scope and however they are used.
#[test]
fn encrypted_output_is_at_most_twice_the_input() {
    let _serial = SERIAL.blocking_lock();
    let recipient = common::receiver().recipient();
    let long = format!("urn:{}", "u".repeat(1000));
    let mut inputs: Vec<(String, Vec<u8>)> = common::corpus_files()
        .into_iter()
        .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
        .collect();
    let generated: Vec<(&str, Vec<u8>)> = vec![
        (
            "5,000 declarations x 5,000 elements",
            on_envelope(&declarations(5_000, "n"), &"<a/>".repeat(5_000)),
        ),
        (
            "one used namespace, 5,000 small elements",
            on_envelope(&format!(r#" xmlns:p="{long}""#), &"<p:a/>".repeat(5_000)),
        ),
        (
            "a long default namespace, 5,000 small elements",
            on_envelope(&format!(r#" xmlns="{long}""#), &"<a/>".repeat(5_000)),
        ),
        (
            "xsi:type QNames in 2,000 elements",
            on_envelope(
                &format!(
                    r#" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:t="{long}""#
                ),
                &r#"<v xsi:type="t:T"/>"#.repeat(2_000),
            ),
        ),
        (
            "a large element with 1,000 declarations in scope",
            on_envelope(
                &declarations(1_000, "n"),
                &format!("<big>{}</big>", "<n1:x>text</n1:x>".repeat(10_000)),
            ),
        ),
        (
            "5,000 large elements",
            on_envelope(
                &declarations(200, "n"),
                &format!("<r>{}</r>", "x".repeat(300)).repeat(5_000),
            ),
        ),
        (
            "namespaces used in text",
            on_envelope(
                &declarations(200, "n"),
                &(0..200)
                    .map(|i| format!("<q>n{i}:value</q>"))
                    .collect::<String>(),
            ),
        ),
    ];
    inputs.extend(generated.into_iter().map(|(n, b)| (n.to_string(), b)));
    for (name, input) in &inputs {
        let Ok((out, _)) = wssgate::wss::encrypt_to_vec(input, &recipient, &raised_limits()) else {
            continue;
        };
        println!("{name}: {} bytes in, {} out", input.len(), out.len());
        assert!(
            out.len() <= 2 * input.len() + 16 * 1024,
            "{name}: {} bytes in, {} out",
            input.len(),
            out.len()
        );
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Generated bodies of many small top-level elements that use some of many
    /// namespaces (by name, attribute or QName value): the output bound holds,
    /// or the input is refused as over a limit, never amplified.
    #[test]
    fn no_namespace_arrangement_amplifies(
        declared in 1usize..400,
        uri_length in 1usize..600,
        elements in proptest::collection::vec((0usize..400, 0u8..4), 1..400),
    ) {
        let _serial = SERIAL.blocking_lock();
        let uri = "u".repeat(uri_length);
        let head: String = (0..declared).map(|i| format!(r#" xmlns:n{i}="urn:{i}:{uri}""#)).collect();
        let content: String = elements
            .iter()
            .map(|&(k, how)| {
                let k = k % declared;
                match how {
                    0 => format!("<n{k}:e/>"),
                    1 => format!(r#"<e n{k}:a="1"/>"#),
                    2 => format!(r#"<e t="n{k}:T"/>"#),
                    _ => "<e/>".to_string(),
                }
            })
            .collect();
        let input = on_envelope(&head, &content);
        match wssgate::wss::encrypt_to_vec(&input, &common::receiver().recipient(), &raised_limits()) {
            Ok((out, _)) => proptest::prop_assert!(
                out.len() <= 2 * input.len() + 16 * 1024,
                "{} bytes in, {} out", input.len(), out.len()
            ),
            Err(e) => proptest::prop_assert_eq!(
                wssgate::proxy::fault::Fault::from_encrypt(&e).code(), "xml-limit-exceeded", "{}", e),
        }
    }
}

// ---- files ----------------------------------------------------------------------

/// Writes never go through a symbolic link: not one planted at the keystore's
/// temporary names, not an archive directory that is a link, not an audit log
/// that is one. What the links point to stays as it was.
#[test]
fn keystore_writes_never_follow_a_symbolic_link() {
    use std::os::unix::fs::symlink;
    use std::time::SystemTime;
    use wssgate::config::KeystoreConfig;
    use wssgate::keystore::Keystore;
    use wssgate::wss::certificate::CertificatePolicy;

    let _serial = SERIAL.blocking_lock();
    let cert = |serial| {
        common::TestReceiver::with_key(
            common::receiver().key.clone(),
            &common::CertSpec {
                serial,
                ..common::CertSpec::default()
            },
        )
        .cert_pem()
    };
    let (old, new) = (cert(300), cert(301));
    let store_in = |root: &std::path::Path| {
        Keystore::new(KeystoreConfig {
            dir: root.join("keystore"),
            private_dir: root.join("private"),
            state_dir: root.join("var"),
            retention_days: 90,
            min_rsa_bits: 2048,
            expiry_warning_days: 30,
            min_days_left: None,
            watch: false,
        })
    };
    let policy = CertificatePolicy::default();
    let import = |store: &Keystore| {
        store.import(
            "orders",
            "old.pem",
            &old,
            None,
            None,
            "test",
            &policy,
            SystemTime::now(),
        )
    };
    let exchange =
        |store: &Keystore| store.exchange("orders", &new, "test", &policy, SystemTime::now());
    let victim_in = |root: &std::path::Path| {
        let victim = root.join("victim");
        std::fs::write(&victim, "keep").unwrap();
        victim
    };

    // A link at every temporary name this process could use next.
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path());
    import(&store).unwrap();
    let victim = victim_in(dir.path());
    for n in 0..256 {
        let tmp = format!(".orders.pem.tmp-{}-{n}", std::process::id());
        symlink(&victim, dir.path().join("keystore").join(tmp)).unwrap();
    }
    exchange(&store).unwrap();
    assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
    assert_eq!(
        std::fs::read(dir.path().join("keystore/orders.pem")).unwrap(),
        new
    );

    // The archive directory is a link to elsewhere.
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path());
    import(&store).unwrap();
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    symlink(&elsewhere, dir.path().join("var/archive")).unwrap();
    assert!(exchange(&store).is_err());
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);

    // The audit log is a link to another file.
    let dir = tempfile::tempdir().unwrap();
    let victim = victim_in(dir.path());
    std::fs::create_dir_all(dir.path().join("var")).unwrap();
    symlink(&victim, dir.path().join("var/audit.log")).unwrap();
    assert!(import(&store_in(dir.path())).is_err());
    assert_eq!(std::fs::read(&victim).unwrap(), b"keep");

    // So is the keystore's lock file.
    let dir = tempfile::tempdir().unwrap();
    let victim = victim_in(dir.path());
    std::fs::create_dir_all(dir.path().join("var")).unwrap();
    symlink(&victim, dir.path().join("var/keystore.lock")).unwrap();
    assert!(import(&store_in(dir.path())).is_err());
    assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
}
