//! The encryption engine on hand-made envelopes: every refusal with its error,
//! the shape of what is written, and what must pass through unchanged.

mod common;

use common::{CertSpec, TestReceiver};
use wssgate::wss::decrypt::decrypt_document;
use wssgate::wss::{
    self, Algorithms, CertificateError, CertificatePolicy, EncryptError, EncryptOptions,
    KeyIdentifier, Limits, Profile,
};

const S11: &str = "http://schemas.xmlsoap.org/soap/envelope/";
const S12: &str = "http://www.w3.org/2003/05/soap-envelope";

fn encrypt(input: &str) -> Result<String, EncryptError> {
    encrypt_with(input, &EncryptOptions::default())
}

fn encrypt_with(input: &str, options: &EncryptOptions) -> Result<String, EncryptError> {
    let (out, _) = wss::encrypt_to_vec(input.as_bytes(), &common::receiver().recipient(), options)?;
    Ok(String::from_utf8(out).unwrap())
}

fn decrypt(output: &str) -> String {
    let (plain, _) = decrypt_document(output.as_bytes(), &common::receiver().key_ring()).unwrap();
    String::from_utf8(plain).unwrap()
}

fn soap11(header: &str, body: &str) -> String {
    format!(
        r#"<soap:Envelope xmlns:soap="{S11}">{header}<soap:Body>{body}</soap:Body></soap:Envelope>"#
    )
}

/// The fault code a caller would get for an engine error.
fn code_of(e: &EncryptError) -> &'static str {
    wssgate::proxy::fault::Fault::from_encrypt(e).code()
}

fn code(input: &str) -> &'static str {
    match encrypt(input) {
        Ok(_) => "ok",
        Err(e) => code_of(&e),
    }
}

#[test]
fn refusals_have_their_codes() {
    let cases: Vec<(&str, String, &str)> = vec![
        ("doctype", format!(r#"<!DOCTYPE x [<!ENTITY a "b">]>{}"#, soap11("", "<a>&a;</a>")), "malformed-envelope"),
        ("undefined entity", soap11("", "<a>&a;</a>"), "malformed-envelope"),
        ("external entity ref", soap11("", "<a>&xxe;</a>"), "malformed-envelope"),
        ("bad char ref", soap11("", "<a>&#0;</a>"), "malformed-envelope"),
        ("not xml", "hello".to_string(), "malformed-envelope"),
        ("mismatched tags", soap11("", "<a><b></a></b>"), "malformed-envelope"),
        ("truncated", soap11("", "<a>x</a>")[..60].to_string(), "malformed-envelope"),
        ("no envelope", "<foo/>".to_string(), "malformed-envelope"),
        ("unknown envelope namespace", r#"<s:Envelope xmlns:s="urn:x"><s:Body><a/></s:Body></s:Envelope>"#.to_string(), "malformed-envelope"),
        ("no body", format!(r#"<s:Envelope xmlns:s="{S11}"><s:Header/></s:Envelope>"#), "malformed-envelope"),
        ("two bodies", format!(r#"<s:Envelope xmlns:s="{S11}"><s:Body><a/></s:Body><s:Body><b/></s:Body></s:Envelope>"#), "malformed-envelope"),
        ("empty body", soap11("", ""), "empty-body"),
        ("self-closing body", format!(r#"<s:Envelope xmlns:s="{S11}"><s:Body/></s:Envelope>"#), "empty-body"),
        ("comment-only body", soap11("", " <!-- nothing --> "), "empty-body"),
        ("already encrypted", soap11("", r#"<xenc:EncryptedData xmlns:xenc="http://www.w3.org/2001/04/xmlenc#"/>"#), "already-encrypted"),
        ("misleading prefix", r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body xmlns:soap="urn:not-soap"><a/></soap:Body></soap:Envelope>"#.to_string(), "malformed-envelope"),
        ("undeclared prefix", "<soap:Envelope><soap:Body><a/></soap:Body></soap:Envelope>".to_string(), "malformed-envelope"),
        ("text after root", format!("{} trailing", soap11("", "<a/>")), "malformed-envelope"),
        ("two roots", format!("{}{}", soap11("", "<a/>"), soap11("", "<a/>")), "malformed-envelope"),
        ("duplicate attribute", soap11("", r#"<a x="1" x="2"/>"#), "malformed-envelope"),
        ("unsupported encoding", format!(r#"<?xml version="1.0" encoding="Shift_JIS"?>{}"#, soap11("", "<a/>")), "malformed-envelope"),
        ("header after body", format!(r#"<s:Envelope xmlns:s="{S11}"><s:Body><a/></s:Body><s:Header/></s:Envelope>"#), "malformed-envelope"),
    ];
    for (name, input, want) in cases {
        assert_eq!(code(&input), want, "{name}: {input}");
    }
}

#[test]
fn invalid_utf8_is_refused() {
    let mut input = soap11("", "<a>X</a>").into_bytes();
    let at = input.iter().position(|&b| b == b'X').unwrap();
    input[at] = 0xC3; // a lone lead byte
    let err = wss::encrypt_to_vec(
        &input,
        &common::receiver().recipient(),
        &EncryptOptions::default(),
    )
    .unwrap_err();
    assert_eq!(code_of(&err), "malformed-envelope", "{err}");
}

#[test]
fn depth_limit_counts_the_envelope_as_one() {
    let nest = |n: usize| "<d>".repeat(n) + &"</d>".repeat(n);
    // Envelope (1) + Body (2) + 254 levels = 256.
    assert_eq!(code(&soap11("", &nest(254))), "ok");
    assert!(matches!(
        encrypt(&soap11("", &nest(255))),
        Err(EncryptError::TooDeep { limit: 256 })
    ));
    let opts = EncryptOptions {
        limits: Limits {
            max_depth: 4,
            max_bytes: None,
            ..Limits::default()
        },
        ..EncryptOptions::default()
    };
    assert!(encrypt_with(&soap11("", &nest(2)), &opts).is_ok());
    assert!(encrypt_with(&soap11("", &nest(3)), &opts).is_err());
    // 100,000 levels: refused quickly, no stack overflow.
    assert!(matches!(
        encrypt(&soap11("", &nest(100_000))),
        Err(EncryptError::TooDeep { .. })
    ));
}

#[test]
fn size_limit() {
    let input = soap11("", &format!("<a>{}</a>", "x".repeat(10_000)));
    let opts = EncryptOptions {
        limits: Limits {
            max_depth: 256,
            max_bytes: Some(5_000),
            ..Limits::default()
        },
        ..EncryptOptions::default()
    };
    let err = encrypt_with(&input, &opts).unwrap_err();
    assert_eq!(code_of(&err), "payload-too-large", "{err}");
    let opts = EncryptOptions {
        limits: Limits {
            max_depth: 256,
            max_bytes: Some(input.len() as u64),
            ..Limits::default()
        },
        ..EncryptOptions::default()
    };
    assert!(encrypt_with(&input, &opts).is_ok());
}

#[test]
fn certificate_refusals() {
    let policy = CertificatePolicy::default();
    let expired = TestReceiver::new(&CertSpec {
        not_before_days: -30,
        not_after_days: -1,
        ..CertSpec::default()
    });
    assert!(matches!(
        expired.recipient().check(&policy),
        Err(CertificateError::Expired { .. })
    ));
    let future = TestReceiver::new(&CertSpec {
        not_before_days: 2,
        not_after_days: 30,
        ..CertSpec::default()
    });
    assert!(matches!(
        future.recipient().check(&policy),
        Err(CertificateError::NotYetValid { .. })
    ));
    let staging = CertificatePolicy {
        allow_not_yet_valid: true,
        ..policy
    };
    assert!(future.recipient().check(&staging).is_ok());
    let small = TestReceiver::new(&CertSpec {
        bits: 1024,
        ..CertSpec::default()
    });
    assert!(matches!(
        small.recipient().check(&policy),
        Err(CertificateError::KeyTooSmall {
            bits: 1024,
            min: 2048
        })
    ));
    let signing = TestReceiver::new(&CertSpec {
        key_encipherment: Some(false),
        ..CertSpec::default()
    });
    assert_eq!(
        signing.recipient().check(&policy),
        Err(CertificateError::NoKeyEncipherment)
    );
    let no_ku = TestReceiver::new(&CertSpec {
        key_encipherment: None,
        ..CertSpec::default()
    });
    assert!(
        no_ku.recipient().check(&policy).is_ok(),
        "no KeyUsage means unrestricted"
    );
    let no_ski = TestReceiver::new(&CertSpec {
        ski: false,
        ..CertSpec::default()
    });
    let ski_policy = CertificatePolicy {
        require_ski: true,
        ..policy
    };
    assert_eq!(
        no_ski.recipient().check(&ski_policy),
        Err(CertificateError::NoSubjectKeyIdentifier)
    );
    let opts = EncryptOptions {
        algorithms: Algorithms {
            key_identifier: KeyIdentifier::Ski,
            ..Profile::Default.algorithms()
        },
        ..EncryptOptions::default()
    };
    let err =
        wss::encrypt_to_vec(soap11("", "<a/>").as_bytes(), &no_ski.recipient(), &opts).unwrap_err();
    assert_eq!(code_of(&err), "encryption-failed");

    let ec = openssl::ec::EcKey::generate(
        &openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1).unwrap(),
    )
    .unwrap();
    let ec = TestReceiver::with_key(
        openssl::pkey::PKey::from_ec_key(ec).unwrap(),
        &CertSpec::default(),
    );
    assert!(matches!(
        wss::Recipient::new(ec.cert.clone()),
        Err(CertificateError::NotRsa(_))
    ));
}

#[test]
fn security_header_is_created_with_the_envelope_prefix() {
    let out = encrypt(&soap11("", "<m:op xmlns:m=\"urn:m\">x</m:op>")).unwrap();
    assert!(
        out.starts_with(&format!(
            r#"<soap:Envelope xmlns:soap="{S11}"><soap:Header><wsse:Security "#
        )),
        "{out}"
    );
    assert!(out.contains(r#" soap:mustUnderstand="1">"#), "{out}");
    assert_eq!(out.matches("<wsse:Security ").count(), 1);
    // EncryptedKey children in order.
    let ek = &out[out.find("<xenc:EncryptedKey").unwrap()..];
    let order = [
        "<xenc:EncryptionMethod",
        "<ds:KeyInfo",
        "<xenc:CipherData",
        "<xenc:ReferenceList",
    ];
    let positions: Vec<usize> = order.iter().map(|t| ek.find(t).unwrap()).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{ek}");
    assert!(out.contains(r#"<soap:Body><xenc:EncryptedData "#), "{out}");
    assert!(
        out.ends_with("</xenc:EncryptedData></soap:Body></soap:Envelope>"),
        "{out}"
    );
    assert!(!out.contains("urn:m\">x<"), "the content is gone");
}

#[test]
fn soap12_and_default_namespace_envelopes() {
    let input =
        format!(r#"<env:Envelope xmlns:env="{S12}"><env:Body><a/></env:Body></env:Envelope>"#);
    let out = encrypt(&input).unwrap();
    assert!(out.contains(r#"env:mustUnderstand="true""#), "{out}");
    let input =
        format!(r#"<Envelope xmlns="{S11}"><Header/><Body><a xmlns=""/></Body></Envelope>"#);
    let out = encrypt(&input).unwrap();
    assert!(
        out.contains(&format!(
            r#"xmlns:soapenv="{S11}" soapenv:mustUnderstand="1""#
        )),
        "{out}"
    );
    assert!(
        decrypt(&out).contains(r#"<a xmlns="">"#) || decrypt(&out).contains(r#"<a xmlns=""/>"#)
    );
    let opts = EncryptOptions {
        must_understand: false,
        ..EncryptOptions::default()
    };
    let out = encrypt_with(&soap11("", "<a/>"), &opts).unwrap();
    assert!(!out.contains("mustUnderstand"), "{out}");
}

#[test]
fn existing_security_header_is_reused_and_keeps_its_timestamp() {
    let header = r#"<soap:Header><wsa:To xmlns:wsa="http://www.w3.org/2005/08/addressing">urn:x</wsa:To><wsse:Security xmlns:wsse="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd" soap:mustUnderstand="1"><wsu:Timestamp xmlns:wsu="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd" wsu:Id="TS-1"><wsu:Created>2026-01-01T00:00:00Z</wsu:Created></wsu:Timestamp></wsse:Security></soap:Header>"#;
    let input = soap11(header, "<a/>");
    let opts = EncryptOptions {
        algorithms: Algorithms {
            key_identifier: KeyIdentifier::Bst,
            ..Profile::Default.algorithms()
        },
        ..EncryptOptions::default()
    };
    let (out, summary) =
        wss::encrypt_to_vec(input.as_bytes(), &common::receiver().recipient(), &opts).unwrap();
    let out = String::from_utf8(out).unwrap();
    assert!(summary.reused_security_header);
    assert_eq!(out.matches(":Security ").count(), 1, "{out}");
    let sec = out.find("soap:mustUnderstand=\"1\">").unwrap();
    let bst = out.find("<wsse:BinarySecurityToken").unwrap();
    let ek = out.find("<xenc:EncryptedKey").unwrap();
    let ts = out.find("<wsu:Timestamp").unwrap();
    assert!(
        sec < bst && bst < ek && ek < ts,
        "token, then key, then the existing Timestamp: {out}"
    );
    assert!(
        out.contains("<wsa:To xmlns:wsa=\"http://www.w3.org/2005/08/addressing\">urn:x</wsa:To>")
    );
    // The decryptor removes the token and key but keeps the Timestamp.
    let plain = decrypt(&out);
    assert!(
        plain.contains("<wsu:Timestamp") && !plain.contains("BinarySecurityToken"),
        "{plain}"
    );
}

#[test]
fn a_security_header_for_another_actor_is_left_alone() {
    let header = r#"<soap:Header><wsse:Security xmlns:wsse="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd" soap:actor="urn:intermediary"><x/></wsse:Security></soap:Header>"#;
    let out = encrypt(&soap11(header, "<a/>")).unwrap();
    assert_eq!(out.matches("<wsse:Security ").count(), 2, "{out}");
    let foreign = out.find("soap:actor=").unwrap();
    let ek = out.find("<xenc:EncryptedKey").unwrap();
    assert!(foreign < ek, "the new header is appended: {out}");
    assert!(out.contains(r#"soap:actor="urn:intermediary"><x/></wsse:Security>"#));
}

#[test]
fn everything_outside_the_body_passes_through_byte_for_byte() {
    let prolog = "<?xml version='1.0' encoding='utf-8'?>\n<!-- licence -->\n<?pi data?>\n";
    let head = format!(
        "<S:Envelope  xmlns:S='{S11}' b=\"2\" a='1'>\n  <S:Header >\n    <h:x xmlns:h=\"urn:h\"  q='&amp;'/>\n  "
    );
    let body = "<S:Body wsu:Id='b' xmlns:wsu='urn:u'><p:op xmlns:p=\"urn:p\"/></S:Body>";
    let tail = "\n  <!-- after -->\n</S:Envelope>\n<!-- epilog -->\n";
    let input = format!("{prolog}{head}</S:Header>\n  {body}{tail}");
    let out = encrypt(&input).unwrap();
    assert!(
        out.starts_with(&format!("{prolog}{head}<wsse:Security ")),
        "{out}"
    );
    assert!(out.contains(
        "</wsse:Security></S:Header>\n  <S:Body wsu:Id='b' xmlns:wsu='urn:u'><xenc:EncryptedData"
    ));
    assert!(
        out.ends_with(&format!("</xenc:EncryptedData></S:Body>{tail}")),
        "{out}"
    );
}

#[test]
fn body_content_of_every_kind_round_trips() {
    let body = "\n  <!-- c1 --><m:op xmlns:m=\"urn:m\" a=\"&lt;&quot;\"><![CDATA[<not> & markup]]><?pi x?>\
        caf\u{e9} \u{1F600} &#233;&#x1F600; &amp;&lt;&gt;<x xsi:type=\"t:T\"/>\n</m:op>\n  <m:second xmlns:m=\"urn:m\"/>\n";
    let input = format!(
        r#"<soap:Envelope xmlns:soap="{S11}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:t="urn:types"><soap:Body>{body}</soap:Body></soap:Envelope>"#
    );
    let out = encrypt(&input).unwrap();
    let plain = decrypt(&out);
    for piece in [
        "<!-- c1 -->",
        "<![CDATA[<not> & markup]]>",
        "<?pi x?>",
        "caf\u{e9} \u{1F600} &#233;&#x1F600; &amp;&lt;&gt;",
        "<x xsi:type=\"t:T\"/>",
        " a=\"&lt;&quot;\"",
    ] {
        assert!(plain.contains(piece), "{piece} missing from {plain}");
    }
    // The top-level children carry the namespaces in scope at the Body that
    // they use, so xsi:type's QName still resolves once the content stands
    // alone; the envelope's own namespace, unused, is not repeated.
    let first = &plain[plain.find("<m:op").unwrap()..];
    let first_tag = &first[..first.find('>').unwrap()];
    for decl in ["xmlns:xsi=", "xmlns:t=\"urn:types\""] {
        assert!(first_tag.contains(decl), "{decl} not on {first_tag}");
    }
    assert!(!first_tag.contains("xmlns:soap="), "{first_tag}");
    assert_eq!(
        first_tag.matches("xmlns:m=").count(),
        1,
        "own declaration not repeated: {first_tag}"
    );
}

#[test]
fn a_top_level_element_is_held_back_up_to_four_kib() {
    // Held to its end, an element carries only the namespaces in scope at the
    // Body that it uses; larger than the hold, it streams (and is encrypted
    // while it is scanned) and carries every one of them. Either way its
    // QNames resolve once the content stands alone.
    let envelope = |records: usize| {
        let record = r#"<m:line xsi:type="t:Line"><m:sku>SKU-1</m:sku></m:line>"#;
        format!(
            r#"<soap:Envelope xmlns:soap="{S11}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:t="urn:types"><soap:Body><m:op xmlns:m="urn:m">{}</m:op></soap:Body></soap:Envelope>"#,
            record.repeat(records)
        )
    };
    // 55 bytes a record: 70 of them fit in the 4 KiB hold, 80 do not.
    for (records, streamed) in [(70, false), (80, true), (2000, true)] {
        for step in [usize::MAX, 1000, 7] {
            let input = envelope(records);
            let plain = decrypt(&encrypt_trickled(&input, step).unwrap());
            let op = &plain[plain.find("<m:op").unwrap()..];
            let tag = &op[..op.find('>').unwrap()];
            for decl in ["xmlns:xsi=", "xmlns:t=\"urn:types\"", "xmlns:m=\"urn:m\""] {
                assert_eq!(tag.matches(decl).count(), 1, "{records}: {decl} on {tag}");
            }
            assert_eq!(tag.contains("xmlns:soap="), streamed, "{records}: {tag}");
            assert_eq!(plain.matches("<m:sku>SKU-1</m:sku>").count(), records);
        }
    }
}

#[test]
fn each_message_gets_a_fresh_key_and_iv() {
    let input = soap11("", "<a>same</a>");
    let a = encrypt(&input).unwrap();
    let b = encrypt(&input).unwrap();
    let values = |s: &str| -> Vec<String> {
        s.split("<xenc:CipherValue>")
            .skip(1)
            .map(|p| p[..p.find('<').unwrap()].to_string())
            .collect()
    };
    let (va, vb) = (values(&a), values(&b));
    assert_eq!(va.len(), 2);
    assert_ne!(va[0], vb[0], "wrapped keys differ");
    assert_ne!(va[1], vb[1], "ciphertexts differ");
}

#[test]
fn latin1_and_utf16_are_transcoded_to_utf8() {
    let latin1_body = "<a>caf\u{e9}</a>";
    let mut input = br#"<?xml version="1.0" encoding="ISO-8859-1"?>"#.to_vec();
    input.extend(soap11("", latin1_body).chars().map(|c| c as u32 as u8));
    let (out, _) = wss::encrypt_to_vec(
        &input,
        &common::receiver().recipient(),
        &EncryptOptions::default(),
    )
    .unwrap();
    let out = String::from_utf8(out).unwrap();
    assert!(
        out.starts_with(r#"<?xml version="1.0" encoding="UTF-8"?>"#),
        "{out}"
    );
    assert!(decrypt(&out).contains("caf\u{e9}"));

    let text = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-16\"?>{}",
        soap11("", "<a>\u{1F600}</a>")
    );
    let mut utf16 = vec![0xFF, 0xFE];
    for unit in text.encode_utf16() {
        utf16.extend_from_slice(&unit.to_le_bytes());
    }
    let (out, _) = wss::encrypt_to_vec(
        &utf16,
        &common::receiver().recipient(),
        &EncryptOptions::default(),
    )
    .unwrap();
    let out = String::from_utf8(out).unwrap();
    assert!(
        out.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>"),
        "{out}"
    );
    assert!(decrypt(&out).contains("\u{1F600}"));
}

#[test]
fn utf8_bom_is_kept() {
    let mut input = vec![0xEF, 0xBB, 0xBF];
    input.extend_from_slice(soap11("", "<a/>").as_bytes());
    let (out, _) = wss::encrypt_to_vec(
        &input,
        &common::receiver().recipient(),
        &EncryptOptions::default(),
    )
    .unwrap();
    assert!(out.starts_with(&[0xEF, 0xBB, 0xBF, b'<']));
}

#[test]
fn every_key_identifier_decrypts_with_the_right_key_only() {
    let other = TestReceiver::new(&CertSpec {
        serial: 99,
        ..CertSpec::default()
    });
    for key_identifier in KeyIdentifier::ALL {
        let opts = EncryptOptions {
            algorithms: Algorithms {
                key_identifier: *key_identifier,
                ..Profile::Default.algorithms()
            },
            ..EncryptOptions::default()
        };
        let out = encrypt_with(&soap11("", "<a>secret</a>"), &opts).unwrap();
        assert!(decrypt(&out).contains("<a>secret</a>"), "{key_identifier}");
        let err = decrypt_document(out.as_bytes(), &other.key_ring()).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("no key held matches"),
            "{key_identifier}: {msg}"
        );
    }
}

#[test]
fn decryptor_picks_the_key_the_message_names_among_several() {
    let old = common::receiver();
    let new = TestReceiver::new(&CertSpec {
        serial: 2,
        common_name: "receiver-2027".into(),
        ..CertSpec::default()
    });
    let mut ring = old.key_ring();
    ring.push(wss::keys::from_pem(&new.key_and_cert_pem(), "new").unwrap());
    let (out, _) = wss::encrypt_to_vec(
        soap11("", "<a/>").as_bytes(),
        &new.recipient(),
        &EncryptOptions::default(),
    )
    .unwrap();
    let (_, summary) = decrypt_document(&out, &ring).unwrap();
    assert_eq!(summary.key_sources, vec!["new".to_string()]);
    assert_eq!(
        summary.certificates,
        vec![new.recipient().info().sha256.clone()]
    );
}

#[test]
fn xml_declarations_are_checked() {
    let body = soap11("", "<a/>");
    for good in [
        r#"<?xml version="1.0"?>"#,
        "<?xml version='1.1' encoding='UTF-8' standalone='yes'?>",
        "<?xml version=\"1.0\"   standalone=\"no\" ?>",
    ] {
        assert_eq!(code(&format!("{good}{body}")), "ok", "{good}");
    }
    for bad in [
        r#"<?xml evrsio=n"1.0"?>"#,
        "<?xml?>",
        r#"<?xml encoding="UTF-8" version="1.0"?>"#,
        r#"<?xml version="2.0"?>"#,
        r#"<?xml version="1.0"standalone="yes"?>"#,
        r#"<?XML version="1.0"?>"#,
    ] {
        assert_eq!(code(&format!("{bad}{body}")), "malformed-envelope", "{bad}");
    }
}

#[test]
fn a_created_header_uses_only_prefixes_in_scope_where_it_stands() {
    // The envelope prefix is also bound on the Body, but the new Header stands
    // before the Body, where only the Envelope's declarations apply.
    let input = format!(
        r#"<soap:Envelope xmlns:soap="{S11}"><soap:Body xmlns:alt="{S11}"><a/></soap:Body></soap:Envelope>"#
    );
    let out = encrypt(&input).unwrap();
    assert!(
        out.contains(r#"soap:mustUnderstand="1""#) && !out.contains("alt:mustUnderstand"),
        "{out}"
    );
    let input = format!(
        r#"<Envelope xmlns="{S11}"><Body xmlns:alt="{S11}"><a xmlns=""/></Body></Envelope>"#
    );
    let out = encrypt(&input).unwrap();
    assert!(
        out.contains(&format!(
            r#"xmlns:soapenv="{S11}" soapenv:mustUnderstand="1""#
        )),
        "{out}"
    );
}

fn encrypt_trickled(input: &str, step: usize) -> Result<String, EncryptError> {
    let mut out = Vec::new();
    let reader = common::Trickle {
        data: input.as_bytes(),
        step,
    };
    wss::encrypt_envelope(
        reader,
        &mut out,
        &common::receiver().recipient(),
        &EncryptOptions::default(),
    )?;
    Ok(String::from_utf8(out).unwrap())
}

#[test]
fn the_body_is_read_the_same_however_the_input_is_split() {
    let long_text = "ü€𝄞 text ] ]] > ".repeat(5000);
    let bodies = [
        r#"<a>x</a>"#.to_string(),
        r#"<p:a xmlns:p="urn:p" p:x="1 &gt; 0" y='"&amp;'><p:b/>caf&#233; &#x1D11E;<![CDATA[<not a tag> ]] ]]><!-- c - c --><?pi data?></p:a>"#.to_string(),
        format!("<a attr=\"{}\">{long_text}</a><b/>", "v>".repeat(40_000)),
        format!("<a>]]</a><b>]</b><c>{long_text}]]</c>"),
        format!("<{0}:deep xmlns:{0}=\"urn:d\">{1}</{0}:deep>", "d".repeat(300), "<x>".repeat(100) + &"</x>".repeat(100)),
    ];
    for body in &bodies {
        let input = soap11("", body);
        let whole = decrypt(&encrypt(&input).unwrap());
        for step in [1, 2, 3, 5, 7, 4093, 65_537] {
            let got = decrypt(&encrypt_trickled(&input, step).unwrap());
            assert_eq!(
                got,
                whole,
                "step {step}, body {}",
                &body[..body.len().min(80)]
            );
        }
    }
}

#[test]
fn malformed_body_content_is_refused_however_the_input_is_split() {
    let cases = [
        ("']]>' in text", "<a>x]]>y</a>".to_string()),
        ("'<' in attribute", r#"<a b="<"/>"#.to_string()),
        ("unquoted attribute", "<a b=1/>".to_string()),
        ("attributes not separated", r#"<a b="1"c="2"/>"#.to_string()),
        ("'--' in comment", "<a><!-- a -- b --></a>".to_string()),
        ("comment ending in '-'", "<a><!-- a ---></a>".to_string()),
        ("xml PI in body", "<a><?xml version='1.0'?></a>".to_string()),
        ("surrogate reference", "<a>&#xD800;</a>".to_string()),
        ("undefined entity", "<a>&nbsp;</a>".to_string()),
        (
            "unterminated reference",
            format!("<a>&amp{}</a>", "x".repeat(100)),
        ),
        ("undeclared prefix", "<p:a/>".to_string()),
        ("undeclared attribute prefix", r#"<a p:x="1"/>"#.to_string()),
        ("prefix undeclared", r#"<a xmlns:p=""/>"#.to_string()),
        (
            "xml prefix rebound",
            r#"<a xmlns:xml="urn:x"/>"#.to_string(),
        ),
        ("bad element name", "<1a/>".to_string()),
        ("two colons", "<a:b:c/>".to_string()),
        ("mismatched end tag", "<a></b>".to_string()),
        ("unclosed element", "<a><b></a>".to_string()),
        ("end tag closing the Body early", "<a/></a>".to_string()),
        ("DOCTYPE in body", "<!DOCTYPE a><a/>".to_string()),
        ("unknown markup", "<![INCLUDE[<a/>]]>".to_string()),
        ("control character", "<a>\u{1}</a>".to_string()),
        ("U+FFFE", "<a>\u{FFFE}</a>".to_string()),
        (
            "duplicate attribute",
            r#"<a x="1" y="2" x="3"/>"#.to_string(),
        ),
        ("'/' without '>'", "<a / >".to_string()),
    ];
    for (name, body) in &cases {
        let input = soap11("", body);
        for step in [1, 2, 3, 7, 4096] {
            match encrypt_trickled(&input, step) {
                Err(e) => assert_eq!(
                    code_of(&e),
                    "malformed-envelope",
                    "{name}, step {step}: {e}"
                ),
                Ok(_) => panic!("{name}, step {step}: accepted {body}"),
            }
        }
    }
    // A document that ends inside the Body, and invalid UTF-8 split by reads.
    let truncated = &soap11("", "<a>text</a>")[..70];
    let mut invalid = soap11("", "<a>é</a>").into_bytes();
    let e_acute = invalid.iter().position(|&b| b == 0xC3).unwrap();
    invalid[e_acute + 1] = b'x';
    for step in [1, 2, 3, 7, 4096] {
        assert!(
            encrypt_trickled(truncated, step).is_err(),
            "truncated, step {step}"
        );
        let mut out = Vec::new();
        let reader = common::Trickle {
            data: &invalid,
            step,
        };
        let result = wss::encrypt_envelope(
            reader,
            &mut out,
            &common::receiver().recipient(),
            &EncryptOptions::default(),
        );
        assert_eq!(
            code_of(&result.unwrap_err()),
            "malformed-envelope",
            "invalid UTF-8, step {step}"
        );
    }
}

/// Repeated start tags are recognised without being checked again (see
/// `SeenTags` in the Body scanner): what they mean must still depend on where
/// they stand.
#[test]
fn a_repeated_tag_is_judged_where_it_stands() {
    let record = r#"<p:record kind="a">1</p:record>"#;
    // The same bytes, first inside the scope of `p`, then outside it.
    let outside = format!(r#"<x xmlns:p="urn:p">{record}{record}</x><y>{record}</y>"#);
    // Declared again on a sibling: allowed, and it must round-trip.
    let redeclared =
        format!(r#"<x xmlns:p="urn:p">{record}</x><y xmlns:p="urn:q">{record}{record}</y>"#);
    // Nested to the depth limit: each level counts even when remembered.
    let nested = |n: usize| {
        format!(
            r#"<x xmlns:p="urn:p">{}{}</x>"#,
            r#"<p:record kind="a">"#.repeat(n),
            "</p:record>".repeat(n)
        )
    };
    for step in [1, 3, 7, 4096, 1 << 20] {
        let refused = encrypt_trickled(&soap11("", &outside), step).unwrap_err();
        assert!(
            refused.to_string().contains("prefix p is not declared"),
            "step {step}: {refused}"
        );
        let plain = decrypt(&encrypt_trickled(&soap11("", &redeclared), step).unwrap());
        assert_eq!(plain.matches(r#"<p:record kind="a">"#).count(), 3);
        // Envelope, Body and x are three levels: 253 records reach 256.
        assert!(encrypt_trickled(&soap11("", &nested(253)), step).is_ok());
        assert!(matches!(
            encrypt_trickled(&soap11("", &nested(254)), step),
            Err(EncryptError::TooDeep { limit: 256 })
        ));
    }
    // A remembered tag followed by broken ones of the same start: a second
    // attribute of the same name, a '<' or an undefined entity in the value,
    // no end of tag after the value.
    for bad in [
        r#"<p:record kind="a" kind="b">1</p:record>"#,
        r#"<p:record kind="a<b">1</p:record>"#,
        r#"<p:record kind="&bogus;">1</p:record>"#,
        r#"<p:record kind="b"x>1</p:record>"#,
        r#"<p:record kind="b" / >1</p:record>"#,
    ] {
        let broken = format!(r#"<x xmlns:p="urn:p">{record}{bad}</x>"#);
        assert_eq!(code(&soap11("", &broken)), "malformed-envelope", "{bad}");
    }
    // Other values, spaces and `/>` after a remembered start all round-trip.
    let varied = format!(
        r#"<x xmlns:p="urn:p">{record}<p:record kind="b &amp; c" >2</p:record><p:record kind="d"/><p:record kind='e'>3</p:record></x>"#
    );
    let plain = decrypt(&encrypt(&soap11("", &varied)).unwrap());
    assert!(plain.contains(r#"<p:record kind="b &amp; c" >2</p:record><p:record kind="d"/>"#));
}

/// Each XML limit holds at its value and refuses one over it, in the Header
/// (the event parser) and in the Body (the scanner), with the limit's name.
#[test]
fn each_xml_limit_is_enforced_in_the_header_and_the_body() {
    let limits = Limits {
        max_attributes_per_element: 4,
        max_name_length: 16,
        max_namespace_declarations: 6,
        max_text_length: Some(64),
        max_elements: Some(12),
        ..Limits::default()
    };
    let opts = EncryptOptions {
        limits,
        ..EncryptOptions::default()
    };
    let attributes = |n: usize| (0..n).map(|i| format!(" a{i}=\"1\"")).collect::<String>();
    let declarations = |n: usize| {
        (0..n)
            .map(|i| format!(" xmlns:p{i}=\"urn:{i}\""))
            .collect::<String>()
    };
    // (limit, what fits, what is one over), each put in the Header and in the Body.
    let cases: Vec<(&str, String, String)> = vec![
        (
            "max_attributes_per_element",
            format!("<e{}/>", attributes(4)),
            format!("<e{}/>", attributes(5)),
        ),
        (
            "max_name_length",
            format!("<{}/>", "n".repeat(16)),
            format!("<{}/>", "n".repeat(17)),
        ),
        (
            "max_name_length",
            format!("<e {}=\"1\"/>", "n".repeat(16)),
            format!("<e {}=\"1\"/>", "n".repeat(17)),
        ),
        (
            "max_name_length",
            format!("<e>&#x{}41;</e>", "0".repeat(12)),
            format!("<e>&#x{}41;</e>", "0".repeat(13)),
        ),
        (
            "max_name_length",
            format!("<e a=\"&#x{}41;\"/>", "0".repeat(12)),
            format!("<e a=\"&#x{}41;\"/>", "0".repeat(13)),
        ),
        (
            "max_namespace_declarations",
            format!("<e{}><f{}/></e>", declarations(2), declarations(3)),
            format!("<e{}><f{}/></e>", declarations(2), declarations(4)),
        ),
        (
            "max_text_length",
            format!("<e>{}</e>", "t".repeat(64)),
            format!("<e>{}</e>", "t".repeat(65)),
        ),
        (
            "max_text_length",
            format!("<e>{}&amp;{}</e>", "t".repeat(30), "t".repeat(29)),
            format!("<e>{}&amp;{}</e>", "t".repeat(30), "t".repeat(30)),
        ),
        (
            "max_text_length",
            format!("<e a=\"{}\"/>", "v".repeat(64)),
            format!("<e a=\"{}\"/>", "v".repeat(65)),
        ),
        (
            "max_text_length",
            format!("<e><![CDATA[{}]]></e>", "c".repeat(64)),
            format!("<e><![CDATA[{}]]></e>", "c".repeat(65)),
        ),
        ("max_elements", "<e/>".repeat(7), "<e/>".repeat(8)),
    ];
    for (limit, fits, over) in cases {
        // Envelope, Header, Body, one Body element and the Header's `h` make 5
        // elements; the Body element `b` holds what the Body case puts in.
        let in_header = |x: &str| soap11(&format!("<soap:Header><h>{x}</h></soap:Header>"), "<b/>");
        let in_body = |x: &str| soap11("<soap:Header><h/></soap:Header>", &format!("<b>{x}</b>"));
        for (place, wrap) in [
            ("Header", &in_header as &dyn Fn(&str) -> String),
            ("Body", &in_body),
        ] {
            let fitting = wrap(&fits);
            if let Err(e) = encrypt_with(&fitting, &opts) {
                panic!("{limit} in the {place}: {fits} refused: {e}");
            }
            let err = encrypt_with(&wrap(&over), &opts).unwrap_err();
            assert_eq!(
                code_of(&err),
                "xml-limit-exceeded",
                "{limit} in the {place}: {err}"
            );
            assert_eq!(
                err.xml_limit().map(|l| l.name()),
                Some(limit),
                "{limit} in the {place}: {err}"
            );
        }
    }
}
