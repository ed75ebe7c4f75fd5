//! The W3C exclusive canonicalization examples and the Merlin exc-c14n interop
//! vector (see `tests/data/c14n/SOURCES.md`), and the cost bound.

use super::*;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use openssl::bn::BigNum;
use openssl::dsa::Dsa;
use openssl::hash::{MessageDigest, hash};
use openssl::pkey::PKey;
use openssl::sign::Verifier;

fn doc(xml: &str) -> String {
    let mut out = Vec::new();
    canonicalize_document(xml, &C14nOptions::default(), &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

fn named(xml: &str, qname: (&str, &str), options: &C14nOptions) -> String {
    String::from_utf8(canonicalize_first_named(xml, qname.0, qname.1, options).unwrap()).unwrap()
}

/// Exclusive XML Canonicalization 1.0, section 2.2: the `n1:elem2` subtree
/// canonicalizes identically in both contexts (inclusive c14n would differ).
#[test]
fn w3c_section_2_2_examples() {
    let first = "<n0:local xmlns:n0=\"foo:bar\" xmlns:n3=\"ftp://example.org\">\n   <n1:elem2 xmlns:n1=\"http://example.net\" xml:lang=\"en\">\n       <n3:stuff xmlns:n3=\"ftp://example.org\"/>\n   </n1:elem2>\n</n0:local>";
    let second = "<n2:pdu xmlns:n1=\"http://example.com\" xmlns:n2=\"http://foo.example\" xml:lang=\"fr\" xml:space=\"retain\">\n   <n1:elem2 xmlns:n1=\"http://example.net\" xml:lang=\"en\">\n       <n3:stuff xmlns:n3=\"ftp://example.org\"/>\n   </n1:elem2>\n</n2:pdu>";
    let expected = "<n1:elem2 xmlns:n1=\"http://example.net\" xml:lang=\"en\">\n       <n3:stuff xmlns:n3=\"ftp://example.org\"></n3:stuff>\n   </n1:elem2>";
    let options = C14nOptions::default();
    assert_eq!(
        named(first, ("http://example.net", "elem2"), &options),
        expected
    );
    assert_eq!(
        named(second, ("http://example.net", "elem2"), &options),
        expected
    );
    // With n3 in the PrefixList, the first context renders it on the apex.
    let inclusive = C14nOptions::with_prefix_list("n3");
    assert_eq!(
        named(first, ("http://example.net", "elem2"), &inclusive),
        "<n1:elem2 xmlns:n1=\"http://example.net\" xmlns:n3=\"ftp://example.org\" xml:lang=\"en\">\n       <n3:stuff></n3:stuff>\n   </n1:elem2>"
    );
}

fn merlin() -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/c14n/merlin-exc-c14n-one/exc-signature.xml"
    );
    std::fs::read_to_string(path).unwrap()
}

fn sha1_b64(bytes: &[u8]) -> String {
    B64.encode(hash(MessageDigest::sha1(), bytes).unwrap())
}

/// The four references of the Merlin vector: the digests it carries are those
/// of our canonical form of `dsig:Object Id="to-be-signed"`.
#[test]
fn merlin_exc_c14n_one_reference_digests() {
    let xml = merlin();
    let cases = [
        (false, "", "7yOTjUu+9oEhShgyIIXDLjQ08aY="),
        (false, "bar #default", "09xMy0RTQM1Q91demYe/0F6AGXo="),
        (true, "", "ZQH+SkCN8c5y0feAr+aRTZDwyvY="),
        (true, "bar #default", "a1cTqBgbqpUt6bMJN4C6zFtnoyo="),
    ];
    for (with_comments, list, digest) in cases {
        let mut options = C14nOptions::with_prefix_list(list);
        options.with_comments = with_comments;
        let canonical = canonicalize_id(&xml, "to-be-signed", &options).unwrap();
        assert_eq!(
            sha1_b64(&canonical),
            digest,
            "comments {with_comments}, PrefixList {list:?}: {}",
            String::from_utf8_lossy(&canonical)
        );
    }
}

/// The Merlin vector's DSA-SHA1 SignatureValue verifies over our exclusive
/// canonical form of its SignedInfo (whose context binds a default namespace and
/// `xml:space`, neither of which may leak in).
#[test]
fn merlin_exc_c14n_one_signed_info_signature() {
    let xml = merlin();
    let signed_info =
        canonicalize_first_named(&xml, ns::DS, "SignedInfo", &C14nOptions::default()).unwrap();
    let text = |name: &str| -> Vec<u8> {
        let start = xml.find(&format!("<dsig:{name}>")).unwrap() + name.len() + 7;
        let end = start + xml[start..].find("</dsig:").unwrap();
        let b64: String = xml[start..end].split_whitespace().collect();
        B64.decode(b64).unwrap()
    };
    let bn = |name: &str| BigNum::from_slice(&text(name)).unwrap();
    let dsa = Dsa::from_public_components(bn("P"), bn("Q"), bn("G"), bn("Y")).unwrap();
    let key = PKey::from_dsa(dsa).unwrap();
    let raw = text("SignatureValue");
    assert_eq!(raw.len(), 40);
    let sig = openssl::dsa::DsaSig::from_private_components(
        BigNum::from_slice(&raw[..20]).unwrap(),
        BigNum::from_slice(&raw[20..]).unwrap(),
    )
    .unwrap();
    let mut verifier = Verifier::new(MessageDigest::sha1(), &key).unwrap();
    verifier.update(&signed_info).unwrap();
    assert!(
        verifier.verify(&sig.to_der().unwrap()).unwrap(),
        "{}",
        String::from_utf8_lossy(&signed_info)
    );
}

#[test]
fn canonical_form_rules() {
    // Declaration and DOCTYPE-free prolog dropped, PIs and comments around the
    // root on their own lines, empty elements expanded, attributes sorted by
    // namespace URI then local name, namespaces only where used.
    let xml = "<?xml version=\"1.0\"?>\n<?pi  data ?>\n<!-- c -->\n<r xmlns:b=\"urn:b\" xmlns:a=\"urn:z\" b:x=\"1\" a:y=\"2\" z=\"3\" xmlns:unused=\"u\"><e/></r>\n<?after?>";
    assert_eq!(
        doc(xml),
        "<?pi data ?>\n<r xmlns:a=\"urn:z\" xmlns:b=\"urn:b\" z=\"3\" b:x=\"1\" a:y=\"2\"><e></e></r>\n<?after?>"
    );
    // Text: references resolved, then &, <, > and CR escaped; line ends normalized.
    assert_eq!(
        doc("<r>a&amp;b &lt;&gt; &#13; &#x41;\r\nz<![CDATA[<&>]]></r>"),
        "<r>a&amp;b &lt;&gt; &#xD; A\nz&lt;&amp;&gt;</r>"
    );
    // Attribute values normalized, then escaped.
    assert_eq!(
        doc("<r a=\"x\ty&#9;&quot;&lt;'\"/>"),
        "<r a=\"x y&#x9;&quot;&lt;'\"></r>"
    );
    // xmlns="" only undoes a default an output ancestor rendered.
    assert_eq!(
        doc("<r xmlns=\"urn:d\"><c xmlns=\"\"><d/></c></r>"),
        "<r xmlns=\"urn:d\"><c xmlns=\"\"><d></d></c></r>"
    );
    assert_eq!(
        named(
            "<r xmlns=\"urn:d\"><c xmlns=\"\"><d/></c></r>",
            ("", "c"),
            &C14nOptions::default()
        ),
        "<c><d></d></c>"
    );
    // A redeclaration with the same URI is not repeated; a change is.
    assert_eq!(
        doc("<p:r xmlns:p=\"urn:1\"><p:c xmlns:p=\"urn:1\"><p:d xmlns:p=\"urn:2\"/></p:c></p:r>"),
        "<p:r xmlns:p=\"urn:1\"><p:c><p:d xmlns:p=\"urn:2\"></p:d></p:c></p:r>"
    );
    // xml:* attributes are not inherited by exclusive canonicalization.
    assert_eq!(
        named(
            "<r xml:lang=\"en\"><c/></r>",
            ("", "c"),
            &C14nOptions::default()
        ),
        "<c></c>"
    );
}

#[test]
fn refusals() {
    let options = C14nOptions::default();
    let mut out = Vec::new();
    assert!(matches!(
        canonicalize_document(
            "<!DOCTYPE r [<!ENTITY e \"x\">]><r>&e;</r>",
            &options,
            &mut out
        ),
        Err(C14nError::Doctype)
    ));
    assert!(matches!(
        canonicalize_document("<p:r/>", &options, &mut out),
        Err(C14nError::UndeclaredPrefix(_))
    ));
    assert!(matches!(
        canonicalize_id("<r><a Id=\"x\"/><b Id=\"x\"/></r>", "x", &options),
        Err(C14nError::DuplicateId(_))
    ));
    assert!(matches!(
        canonicalize_id("<r/>", "x", &options),
        Err(C14nError::IdNotFound(_))
    ));
    assert!(canonicalize_document("<r><a></r>", &options, &mut out).is_err());
}

#[test]
fn several_ids_in_one_pass_and_wsu_id() {
    let xml = format!(
        "<r xmlns:wsu=\"{}\"><a wsu:Id=\"one\">1</a><b Id=\"two\"><a wsu:Id=\"three\"/></b></r>",
        ns::WSU
    );
    let mut outs = [Vec::new(), Vec::new(), Vec::new()];
    canonicalize_ids(
        &xml,
        &["one", "two", "three"],
        &C14nOptions::default(),
        &mut outs,
    )
    .unwrap();
    let wsu = ns::WSU;
    assert_eq!(
        String::from_utf8_lossy(&outs[0]),
        format!("<a xmlns:wsu=\"{wsu}\" wsu:Id=\"one\">1</a>")
    );
    assert_eq!(
        String::from_utf8_lossy(&outs[1]),
        format!("<b Id=\"two\"><a xmlns:wsu=\"{wsu}\" wsu:Id=\"three\"></a></b>")
    );
    assert_eq!(
        String::from_utf8_lossy(&outs[2]),
        format!("<a xmlns:wsu=\"{wsu}\" wsu:Id=\"three\"></a>")
    );
}

/// Deep nesting with a new declaration at every level and many declarations in
/// scope: the work stays linear (a quadratic walk of the scope would take
/// minutes here).
#[test]
fn deep_nesting_and_many_namespaces_stay_linear() {
    let depth = 20_000;
    let mut xml = String::with_capacity(depth * 60);
    for i in 0..depth {
        xml.push_str(&format!(
            "<p{i}:e xmlns:p{i}=\"urn:n{i}\" xmlns:q=\"urn:q{i}\" q:a=\"v\">"
        ));
    }
    for i in (0..depth).rev() {
        xml.push_str(&format!("</p{i}:e>"));
    }
    let started = std::time::Instant::now();
    let mut out = Vec::new();
    canonicalize_document(&xml, &C14nOptions::with_prefix_list("p0 q"), &mut out).unwrap();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    // Each element renders its own two namespaces, nothing inherited twice.
    assert_eq!(
        out.windows(7).filter(|w| w == b" xmlns:").count(),
        2 * depth
    );
}
