//! Property tests: for generated envelopes, encrypt → decrypt gives back the Body
//! content, and the output is always a well-formed envelope with exactly one
//! Security header for the ultimate receiver. Arbitrary and damaged input never
//! panics, and whatever is accepted comes out well-formed. Signed envelopes
//! verify, and signing refuses what it cannot keep well-formed.

mod common;

use proptest::prelude::*;
use roxmltree::{Document, Node};
use wssgate::wss::{
    self, Algorithms, DataEncryption, EncryptOptions, IssuerNameFormat, KeyIdentifier,
    KeyTransport, OaepDigest,
};

const WSSE: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd";

#[derive(Debug, Clone)]
enum Content {
    Element {
        name: String,
        attrs: Vec<(String, String)>,
        children: Vec<Content>,
    },
    Text(String),
    CData(String),
    Comment(String),
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn write(c: &Content, out: &mut String) {
    match c {
        Content::Element {
            name,
            attrs,
            children,
        } => {
            out.push('<');
            out.push_str(name);
            for (k, v) in attrs {
                out.push_str(&format!(" {k}=\"{}\"", escape(v)));
            }
            if children.is_empty() {
                out.push_str("/>");
            } else {
                out.push('>');
                for ch in children {
                    write(ch, out);
                }
                out.push_str(&format!("</{name}>"));
            }
        }
        Content::Text(t) => out.push_str(&escape(t)),
        Content::CData(t) => out.push_str(&format!("<![CDATA[{t}]]>")),
        Content::Comment(t) => out.push_str(&format!("<!--{t}-->")),
    }
}

fn text() -> impl Strategy<Value = String> {
    // Any XML character, including multi-byte ones and markup characters.
    proptest::string::string_regex("[a-zA-Z0-9 <>&\"'\\n\\t\u{e9}\u{4e2d}\u{1F600}]{0,20}").unwrap()
}

fn element_name() -> impl Strategy<Value = String> {
    // `p:` and `t:` are bound on the Envelope, so they test the redeclaration rule.
    prop_oneof![
        Just("a".to_string()),
        Just("item".to_string()),
        Just("p:op".to_string()),
        Just("t:rec".to_string())
    ]
}

fn content() -> impl Strategy<Value = Content> {
    let leaf = prop_oneof![
        text().prop_map(Content::Text),
        "[a-z ]{0,10}".prop_map(Content::CData),
        "[a-z ]{0,10}".prop_map(|t| Content::Comment(format!(" {t} "))),
        (element_name(), proptest::collection::vec(attribute(), 0..3)).prop_map(|(name, attrs)| {
            Content::Element {
                name,
                attrs: dedup(attrs),
                children: vec![],
            }
        }),
    ];
    leaf.prop_recursive(4, 40, 5, |inner| {
        (
            element_name(),
            proptest::collection::vec(attribute(), 0..3),
            proptest::collection::vec(inner, 0..5),
        )
            .prop_map(|(name, attrs, children)| Content::Element {
                name,
                attrs: dedup(attrs),
                children,
            })
    })
}

fn attribute() -> impl Strategy<Value = (String, String)> {
    (
        prop_oneof![Just("id"), Just("x"), Just("xsi:type"), Just("p:flag")],
        text(),
    )
        .prop_map(|(k, v)| (k.to_string(), v))
}

fn dedup(mut attrs: Vec<(String, String)>) -> Vec<(String, String)> {
    attrs.sort_by(|a, b| a.0.cmp(&b.0));
    attrs.dedup_by(|a, b| a.0 == b.0);
    attrs
}

fn algorithms() -> impl Strategy<Value = Algorithms> {
    (
        proptest::sample::select(KeyIdentifier::ALL.to_vec()),
        proptest::sample::select(IssuerNameFormat::ALL.to_vec()),
        proptest::sample::select(DataEncryption::ALL.to_vec()),
        proptest::sample::select(vec![
            (KeyTransport::RsaOaepMgf1p, OaepDigest::Sha1),
            (KeyTransport::RsaOaepMgf1p, OaepDigest::Sha256),
            (KeyTransport::RsaOaep, OaepDigest::Sha256),
            (KeyTransport::RsaOaep, OaepDigest::Sha512),
            (KeyTransport::Rsa15, OaepDigest::Sha1),
        ]),
    )
        .prop_map(
            |(
                key_identifier,
                issuer_name_format,
                data_encryption,
                (key_transport, oaep_digest),
            )| Algorithms {
                key_identifier,
                issuer_name_format,
                data_encryption,
                key_transport,
                oaep_digest,
            },
        )
}

/// An envelope around `body`: SOAP version, envelope prefix and header shape vary.
fn envelope(soap12: bool, prefix: &str, header: u8, body: &str) -> String {
    let ns = if soap12 {
        "http://www.w3.org/2003/05/soap-envelope"
    } else {
        "http://schemas.xmlsoap.org/soap/envelope/"
    };
    let (decl, p) = if prefix.is_empty() {
        (format!("xmlns=\"{ns}\""), String::new())
    } else {
        (format!("xmlns:{prefix}=\"{ns}\""), format!("{prefix}:"))
    };
    let header = match header {
        0 => String::new(),
        1 => format!("<{p}Header/>"),
        2 => format!("<{p}Header><h:x xmlns:h=\"urn:h\">1</h:x></{p}Header>"),
        _ => format!(
            "<{p}Header><wsse:Security xmlns:wsse=\"{WSSE}\"><wsse:UsernameToken/></wsse:Security></{p}Header>"
        ),
    };
    format!(
        "<{p}Envelope {decl} xmlns:p=\"urn:p\" xmlns:t=\"urn:t\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\">{header}<{p}Body>{body}</{p}Body></{p}Envelope>"
    )
}

/// The Body's content as namespace-resolved structure, declarations ignored.
fn canonical(node: Node<'_, '_>, out: &mut String) {
    for c in node.children() {
        if c.is_element() {
            let mut attrs: Vec<String> = c
                .attributes()
                .map(|a| {
                    format!(
                        "{{{}}}{}={:?}",
                        a.namespace().unwrap_or(""),
                        a.name(),
                        a.value()
                    )
                })
                .collect();
            attrs.sort();
            out.push_str(&format!(
                "<{{{}}}{} {}>",
                c.tag_name().namespace().unwrap_or(""),
                c.tag_name().name(),
                attrs.join(" ")
            ));
            canonical(c, out);
            out.push_str("</>");
        } else if c.is_text() {
            out.push_str(&format!("T{:?}", c.text().unwrap_or("")));
        } else if c.is_comment() {
            out.push_str(&format!("C{:?}", c.text().unwrap_or("")));
        }
    }
}

fn body_of<'a, 'i>(doc: &'a Document<'i>) -> Node<'a, 'i> {
    doc.root_element()
        .children()
        .find(|n| n.tag_name().name() == "Body")
        .unwrap()
}

fn security_headers(doc: &Document<'_>) -> usize {
    doc.root_element()
        .children()
        .filter(|n| n.tag_name().name() == "Header")
        .flat_map(|h| h.children())
        .filter(|n| n.tag_name().name() == "Security" && n.tag_name().namespace() == Some(WSSE))
        .count()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn encrypt_then_decrypt_gives_back_the_body(
        first in (element_name(), proptest::collection::vec(content(), 0..4)),
        rest in proptest::collection::vec(content(), 0..4),
        soap12 in any::<bool>(),
        prefix in prop_oneof![Just(""), Just("soap"), Just("S")],
        header in 0u8..4,
        algorithms in algorithms(),
    ) {
        let mut body = String::new();
        write(&Content::Element { name: first.0, attrs: vec![], children: first.1 }, &mut body);
        for c in &rest {
            write(c, &mut body);
        }
        let input = envelope(soap12, prefix, header, &body);
        let options = EncryptOptions { algorithms, ..EncryptOptions::default() };
        let (out, _) = wss::encrypt_to_vec(input.as_bytes(), &common::receiver().recipient(), &options).unwrap();
        let out = String::from_utf8(out).unwrap();
        let doc = Document::parse(&out).expect("output is well-formed");
        prop_assert_eq!(security_headers(&doc), 1);
        let (plain, _) = wss::decrypt::decrypt_document(out.as_bytes(), &common::receiver().key_ring()).unwrap();
        let plain = String::from_utf8(plain).unwrap();
        let (want_doc, got_doc) = (Document::parse(&input).unwrap(), Document::parse(&plain).unwrap());
        let (mut want, mut got) = (String::new(), String::new());
        canonical(body_of(&want_doc), &mut want);
        canonical(body_of(&got_doc), &mut got);
        prop_assert_eq!(got, want);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = wss::encrypt_to_vec(&bytes, &common::receiver().recipient(), &EncryptOptions::default());
        let _ = wss::decrypt::decrypt_document(&bytes, &common::receiver().key_ring());
    }

}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn damaged_envelopes_are_refused_or_come_out_well_formed(
        cut in 0usize..400,
        insert in proptest::sample::select(vec!["", "<", ">", "&", "</x>", "<!DOCTYPE a>", "\u{0}", "]]>", "<?xml?>"]),
    ) {
        let input = envelope(false, "soap", 2, "<p:op><a x=\"1\">t</a><![CDATA[c]]></p:op>");
        let at = cut.min(input.len());
        let at = (0..=at).rev().find(|i| input.is_char_boundary(*i)).unwrap();
        let damaged = format!("{}{}{}", &input[..at], insert, &input[at..]);
        if let Ok((out, _)) = wss::encrypt_to_vec(damaged.as_bytes(), &common::receiver().recipient(), &EncryptOptions::default()) {
            let out = String::from_utf8(out).unwrap();
            let doc = Document::parse(&out);
            prop_assert!(doc.is_ok(), "accepted input produced malformed output: {:?}\n{}", damaged, out);
            prop_assert_eq!(security_headers(&doc.unwrap()), 1);
        }
    }
}

/// Check a signed message with the engine's canonicalizer and OpenSSL: the
/// SignatureValue over SignedInfo, and every Reference's digest.
fn signature_verifies(doc: &str) -> Result<usize, String> {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD as B64;
    use wssgate::wss::c14n::{self, C14nOptions};
    const DS: &str = "http://www.w3.org/2000/09/xmldsig#";
    let tree = Document::parse(doc).map_err(|e| e.to_string())?;
    let sig = tree
        .descendants()
        .find(|n| n.has_tag_name((DS, "Signature")))
        .ok_or("no Signature")?;
    fn find<'a, 'i>(n: Node<'a, 'i>, local: &str) -> Option<Node<'a, 'i>> {
        n.descendants().find(|c| c.has_tag_name((DS, local)))
    }
    let signed_info =
        c14n::canonicalize_first_named(doc, DS, "SignedInfo", &C14nOptions::default())
            .map_err(|e| e.to_string())?;
    let value = B64
        .decode(
            find(sig, "SignatureValue")
                .and_then(|n| n.text())
                .ok_or("no value")?,
        )
        .map_err(|e| e.to_string())?;
    let public = common::signer().cert.public_key().unwrap();
    let mut verifier =
        openssl::sign::Verifier::new(openssl::hash::MessageDigest::sha256(), &public).unwrap();
    verifier.update(&signed_info).unwrap();
    if !verifier.verify(&value).unwrap_or(false) {
        return Err("SignatureValue does not verify".into());
    }
    let mut n = 0;
    for reference in sig
        .descendants()
        .filter(|c| c.has_tag_name((DS, "Reference")))
    {
        let id = reference
            .attribute("URI")
            .unwrap_or_default()
            .trim_start_matches('#');
        let canonical =
            c14n::canonicalize_id(doc, id, &C14nOptions::default()).map_err(|e| e.to_string())?;
        let digest =
            openssl::hash::hash(openssl::hash::MessageDigest::sha256(), &canonical).unwrap();
        let written = find(reference, "DigestValue")
            .and_then(|n| n.text())
            .unwrap_or_default();
        if B64.encode(digest) != written {
            return Err(format!("digest of {id} differs"));
        }
        n += 1;
    }
    Ok(n)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Generated envelopes (both SOAP versions, every prefix and Header shape,
    /// comments, CDATA, character data that needs escaping) sign, and the
    /// signature verifies over both parts.
    #[test]
    fn signed_envelopes_verify(
        first in (element_name(), proptest::collection::vec(content(), 0..4)),
        rest in proptest::collection::vec(content(), 0..4),
        soap12 in any::<bool>(),
        prefix in prop_oneof![Just(""), Just("soap"), Just("S")],
        header in 0u8..4,
    ) {
        let mut body = String::new();
        write(&Content::Element { name: first.0, attrs: vec![], children: first.1 }, &mut body);
        for c in &rest {
            write(c, &mut body);
        }
        let input = envelope(soap12, prefix, header, &body);
        let signed = wss::sign_to_vec(
            input.as_bytes(),
            &common::signing_key(),
            &wss::SignPlan::default(),
            None,
            &EncryptOptions::default(),
        )
        .unwrap();
        let out = String::from_utf8(signed.bytes).unwrap();
        let doc = Document::parse(&out).expect("output is well-formed");
        prop_assert_eq!(security_headers(&doc), 1);
        prop_assert_eq!(signature_verifies(&out), Ok(2), "{}", out);
    }

    #[test]
    fn arbitrary_bytes_never_panic_signing(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let plan = wss::SignPlan::default();
        let _ = wss::sign_to_vec(&bytes, &common::signing_key(), &plan, None, &EncryptOptions::default());
        let _ = wss::sign_envelope(&bytes[..], &common::signing_key(), &plan, None, &EncryptOptions::default());
    }

    /// Damaged envelopes never make signing panic; what is signed is well-formed.
    #[test]
    fn damaged_envelopes_are_refused_or_signed_well_formed(
        cut in 0usize..400,
        insert in proptest::sample::select(vec!["", "<", ">", "&", "</x>", "<!DOCTYPE a>", "\u{0}", "]]>", "<?xml?>", " wsu:Id=\"x\""]),
    ) {
        let input = envelope(false, "soap", 2, "<p:op><a x=\"1\">t</a><![CDATA[c]]></p:op>");
        let at = cut.min(input.len());
        let at = (0..=at).rev().find(|i| input.is_char_boundary(*i)).unwrap();
        let damaged = format!("{}{}{}", &input[..at], insert, &input[at..]);
        let key = common::signing_key();
        let plan = wss::SignPlan::default();
        if let Ok(signed) = wss::sign_to_vec(damaged.as_bytes(), &key, &plan, None, &EncryptOptions::default()) {
            let out = String::from_utf8(signed.bytes).unwrap();
            prop_assert!(Document::parse(&out).is_ok(), "accepted input produced malformed output: {:?}\n{}", damaged, out);
        }
    }
}
