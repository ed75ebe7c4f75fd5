//! Signing at the engine level: layout of the header, Ids, orders, refusals,
//! and a check of every digest and the signature value with our own
//! canonicalizer (the independent verifiers are in `tests/`).

use std::sync::OnceLock;
use std::time::{Duration, UNIX_EPOCH};

use super::*;
use crate::receiver::{CertSpec, KeyPair};
use crate::wss::algorithms::ns;
use crate::wss::keys::KeyRing;

fn signer() -> &'static KeyPair {
    static K: OnceLock<KeyPair> = OnceLock::new();
    K.get_or_init(|| {
        KeyPair::generate(&CertSpec {
            common_name: "tenant".into(),
            serial: 19,
            ..CertSpec::default()
        })
        .unwrap()
    })
}

fn receiver() -> &'static KeyPair {
    static K: OnceLock<KeyPair> = OnceLock::new();
    K.get_or_init(|| KeyPair::generate(&CertSpec::default()).unwrap())
}

fn key() -> SigningKey {
    SigningKey::new(signer().key.clone(), signer().cert.clone()).unwrap()
}

fn recipient() -> Recipient {
    Recipient::new(receiver().cert.clone()).unwrap()
}

const SOAP11: &str = r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:wsa="http://www.w3.org/2005/08/addressing" xmlns:m="urn:m"><soapenv:Header><wsa:To>http://example.org/rx</wsa:To><wsa:Action>urn:act</wsa:Action></soapenv:Header><soapenv:Body><m:op xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="m:T">a &amp; b</m:op></soapenv:Body></soapenv:Envelope>"#;

fn at() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

/// Sign in memory, and check that reading from a stream gives the same message
/// (but for its fresh Ids and signature).
fn sign(input: &str, plan: &SignPlan, rx: Option<&Recipient>) -> SignedMessage {
    let opts = EncryptOptions::default();
    let streamed = sign_envelope_at(input.as_bytes(), &key(), plan, rx, &opts, at()).unwrap();
    let signed = sign_to_vec_at(input.as_bytes(), &key(), plan, rx, &opts, at()).unwrap();
    assert_eq!(streamed.bytes.len(), signed.bytes.len());
    signed
}

/// Check SignatureValue and every Reference digest with our canonicalizer.
pub(crate) fn verify(doc: &str, cert: &X509) -> Vec<String> {
    let tree = roxmltree::Document::parse(doc).unwrap();
    let sig = tree
        .descendants()
        .find(|n| n.has_tag_name((ns::DS, "Signature")))
        .expect("a Signature");
    fn child<'a, 'i>(n: roxmltree::Node<'a, 'i>, local: &str) -> roxmltree::Node<'a, 'i> {
        n.children()
            .find(|c| c.has_tag_name((ns::DS, local)))
            .unwrap()
    }
    let signed_info = child(sig, "SignedInfo");
    let method = child(signed_info, "SignatureMethod")
        .attribute("Algorithm")
        .unwrap();
    let algorithm = SignatureAlgorithm::from_uri(method).unwrap();
    let canonical =
        c14n::canonicalize_first_named(doc, ns::DS, "SignedInfo", &C14nOptions::default()).unwrap();
    let value = B64
        .decode(child(sig, "SignatureValue").text().unwrap().trim())
        .unwrap();
    let public = cert.public_key().unwrap();
    let mut verifier = openssl::sign::Verifier::new(algorithm.md(), &public).unwrap();
    verifier.update(&canonical).unwrap();
    assert!(verifier.verify(&value).unwrap(), "SignatureValue");
    let mut ids = Vec::new();
    for reference in signed_info
        .children()
        .filter(|c| c.has_tag_name((ns::DS, "Reference")))
    {
        let id = reference.attribute("URI").unwrap().trim_start_matches('#');
        let dm = child(reference, "DigestMethod")
            .attribute("Algorithm")
            .unwrap();
        let md = DigestAlgorithm::from_uri(dm).unwrap().md();
        let canonical = c14n::canonicalize_id(doc, id, &C14nOptions::default()).unwrap();
        let digest = B64.encode(openssl::hash::hash(md, &canonical).unwrap());
        assert_eq!(
            child(reference, "DigestValue").text().unwrap(),
            digest,
            "digest of {id}"
        );
        ids.push(id.to_string());
    }
    ids
}

/// Local names of the Security header's children, in order.
fn security_layout(doc: &str) -> Vec<String> {
    let tree = roxmltree::Document::parse(doc).unwrap();
    let security = tree
        .descendants()
        .find(|n| n.has_tag_name((ns::WSSE, "Security")))
        .unwrap();
    security
        .children()
        .filter(|c| c.is_element())
        .map(|c| c.tag_name().name().to_string())
        .collect()
}

fn decrypt(bytes: &[u8]) -> String {
    let mut ring = KeyRing::default();
    ring.push(receiver().entry("rx").unwrap());
    let (plain, _) = crate::wss::decrypt::decrypt_document(bytes, &ring).unwrap();
    String::from_utf8(plain).unwrap()
}

#[test]
fn signs_body_and_timestamp_with_a_bst_by_default() {
    let signed = sign(SOAP11, &SignPlan::default(), None);
    let doc = String::from_utf8(signed.bytes).unwrap();
    assert_eq!(
        security_layout(&doc),
        ["Timestamp", "BinarySecurityToken", "Signature"]
    );
    let ids = verify(&doc, &signer().cert);
    assert_eq!(ids, signed.summary.signed_ids);
    assert_eq!(ids.len(), 2);
    assert!(doc.contains("<wsu:Created>2027-01-15T08:00:00.000Z</wsu:Created>"));
    assert!(doc.contains("<wsu:Expires>2027-01-15T08:05:00.000Z</wsu:Expires>"));
    assert!(doc.contains(r#"soapenv:mustUnderstand="1""#));
    // The Body carries the Id; its content is untouched.
    assert!(doc.contains(&format!(
        r#"<soapenv:Body xmlns:wsu="{}" wsu:Id="{}">"#,
        ns::WSU,
        ids[0]
    )));
    assert!(doc.contains(r#"xsi:type="m:T">a &amp; b</m:op>"#));
}

#[test]
fn every_algorithm_and_key_identifier_verifies() {
    for sa in SignatureAlgorithm::ALL {
        for da in DigestAlgorithm::ALL {
            for ki in KeyIdentifier::ALL {
                let plan = SignPlan {
                    signature_algorithm: *sa,
                    digest_algorithm: *da,
                    key_identifier: *ki,
                    ..SignPlan::default()
                };
                let signed = sign(SOAP11, &plan, None);
                let doc = String::from_utf8(signed.bytes).unwrap();
                verify(&doc, &signer().cert);
                assert!(doc.contains(sa.uri()) && doc.contains(da.uri()));
                assert_eq!(
                    doc.contains("BinarySecurityToken"),
                    *ki == KeyIdentifier::Bst
                );
            }
        }
    }
}

#[test]
fn addressing_headers_are_signed_by_local_name() {
    let plan = SignPlan {
        parts: vec![
            SignPart::Body,
            SignPart::Timestamp,
            SignPart::Addressing("To".into()),
            SignPart::Addressing("Action".into()),
            SignPart::Addressing("MessageID".into()),
        ],
        ..SignPlan::default()
    };
    let signed = sign(SOAP11, &plan, None);
    let doc = String::from_utf8(signed.bytes).unwrap();
    // MessageID is not in the message: nothing to sign for it.
    assert_eq!(verify(&doc, &signer().cert).len(), 4);
    assert!(doc.contains("<wsa:To wsu:Id=") || doc.contains("<wsa:To xmlns:wsu="));
}

#[test]
fn sign_then_encrypt_puts_the_key_before_the_signature() {
    let rx = recipient();
    let signed = sign(SOAP11, &SignPlan::default(), Some(&rx));
    let doc = String::from_utf8(signed.bytes.clone()).unwrap();
    assert_eq!(
        security_layout(&doc),
        [
            "Timestamp",
            "EncryptedKey",
            "BinarySecurityToken",
            "Signature"
        ]
    );
    assert!(!doc.contains("a &amp; b"));
    let plain = decrypt(&signed.bytes);
    assert_eq!(verify(&plain, &signer().cert).len(), 2);
    assert!(signed.summary.encryption.is_some());
}

#[test]
fn encrypt_then_sign_signs_the_encrypted_body() {
    let rx = recipient();
    let plan = SignPlan {
        order: SignOrder::EncryptThenSign,
        key_identifier: KeyIdentifier::IssuerSerial,
        ..SignPlan::default()
    };
    let signed = sign(SOAP11, &plan, Some(&rx));
    let doc = String::from_utf8(signed.bytes.clone()).unwrap();
    assert_eq!(
        security_layout(&doc),
        ["Timestamp", "Signature", "EncryptedKey"]
    );
    // Verified as sent, before decryption.
    assert_eq!(verify(&doc, &signer().cert).len(), 2);
    assert!(decrypt(&signed.bytes).contains("a &amp; b"));
}

#[test]
fn the_signature_can_be_encrypted_too() {
    let rx = recipient();
    let plan = SignPlan {
        encrypt_signature: true,
        ..SignPlan::default()
    };
    let signed = sign(SOAP11, &plan, Some(&rx));
    let doc = String::from_utf8(signed.bytes.clone()).unwrap();
    assert_eq!(
        security_layout(&doc),
        [
            "Timestamp",
            "EncryptedKey",
            "BinarySecurityToken",
            "EncryptedData"
        ]
    );
    assert_eq!(doc.matches("<xenc:DataReference").count(), 2);
    let plain = decrypt(&signed.bytes);
    assert_eq!(verify(&plain, &signer().cert).len(), 2);
}

#[test]
fn header_shapes_and_prefixes() {
    let wsu = ns::WSU;
    let cases = [
        // No Header at all, a default-namespace envelope.
        r#"<Envelope xmlns="http://www.w3.org/2003/05/soap-envelope"><Body><x xmlns="urn:x"/></Body></Envelope>"#.to_string(),
        // An empty Header, an empty Security header.
        r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Header/><s:Body><x/></s:Body></s:Envelope>"#.to_string(),
        r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Header><wsse:Security xmlns:wsse="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"/></s:Header><s:Body><x/></s:Body></s:Envelope>"#.to_string(),
        // A Security header with content; wsu bound to something else in the Body.
        (r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" xmlns:wsu="urn:other"><s:Header><wsse:Security xmlns:wsse="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"><wsse:UsernameToken/></wsse:Security></s:Header><s:Body><wsu:x/></s:Body></s:Envelope>"#).to_string(),
        // The Body already has a wsu:Id (kept).
        format!(r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" xmlns:u="{wsu}"><s:Body u:Id="mine"><x/></s:Body></s:Envelope>"#),
    ];
    for (i, input) in cases.iter().enumerate() {
        let signed = sign(input, &SignPlan::default(), None);
        let doc = String::from_utf8(signed.bytes).unwrap();
        let ids = verify(&doc, &signer().cert);
        assert_eq!(ids.len(), 2, "case {i}: {doc}");
        let layout = security_layout(&doc);
        assert_eq!(
            layout[..3],
            ["Timestamp", "BinarySecurityToken", "Signature"],
            "case {i}"
        );
        if i == 3 {
            assert_eq!(layout[3], "UsernameToken");
            assert!(
                doc.contains(&format!(r#"xmlns:wsu1="{wsu}" wsu1:Id="#)),
                "{doc}"
            );
        }
        if i == 4 {
            assert_eq!(ids[0], "mine");
        }
        // Still encryptable by the streaming encryptor.
        crate::wss::encrypt_to_vec(doc.as_bytes(), &recipient(), &EncryptOptions::default())
            .unwrap();
    }
}

#[test]
fn refusals() {
    let k = key();
    let opts = EncryptOptions::default();
    let run = |input: &str, plan: &SignPlan| {
        sign_envelope_at(input.as_bytes(), &k, plan, None, &opts, at()).unwrap_err()
    };
    let plan = SignPlan::default();
    assert!(matches!(run("<!DOCTYPE x><x/>", &plan), SignError::Doctype));
    assert!(matches!(run("<x/>", &plan), SignError::NotSoap { .. }));
    assert!(matches!(
        run(
            r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"/>"#,
            &plan
        ),
        SignError::NoBody
    ));
    let with_ts = format!(
        r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Header><wsse:Security xmlns:wsse="{}"><wsu:Timestamp xmlns:wsu="{}"/></wsse:Security></s:Header><s:Body/></s:Envelope>"#,
        ns::WSSE,
        ns::WSU
    );
    let err = run(&with_ts, &plan);
    assert!(matches!(err, SignError::TimestampPresent) && err.is_input_error());
    let small = SignPlan {
        max_body: Some(100),
        ..SignPlan::default()
    };
    assert!(matches!(run(SOAP11, &small), SignError::TooLarge(_)));
    assert!(matches!(
        sign_to_vec_at(SOAP11.as_bytes(), &k, &small, None, &opts, at()),
        Err(SignError::TooLarge(_))
    ));
    // Not UTF-8 while claiming to be: refused, not read in place.
    assert!(matches!(
        sign_to_vec_at(b"<a>\xff</a>", &k, &plan, None, &opts, at()),
        Err(SignError::Malformed { .. })
    ));
    let no_ts = SignPlan {
        timestamp_ttl: None,
        ..SignPlan::default()
    };
    assert!(matches!(
        run(SOAP11, &no_ts),
        SignError::Plan(PlanError::TimestampNotAdded)
    ));
    let deep = format!(
        r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>{}{}</s:Body></s:Envelope>"#,
        "<a>".repeat(300),
        "</a>".repeat(300)
    );
    assert!(matches!(
        run(&deep, &plan),
        SignError::TooDeep { limit: 256 }
    ));
    let long = SignPlan {
        timestamp_ttl: Some(Duration::from_secs(86_401)),
        ..SignPlan::default()
    };
    assert!(matches!(
        run(SOAP11, &long),
        SignError::Plan(PlanError::TimestampTtlTooLong)
    ));
    let enc_sig = SignPlan {
        encrypt_signature: true,
        ..SignPlan::default()
    };
    assert!(matches!(
        run(SOAP11, &enc_sig),
        SignError::Plan(PlanError::EncryptSignatureWithoutEncryption)
    ));
    // A Body Id that names two elements is refused (no signature wrapping).
    let twice = format!(
        r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" xmlns:u="{}"><s:Header><x u:Id="b"/></s:Header><s:Body u:Id="b"><y/></s:Body></s:Envelope>"#,
        ns::WSU
    );
    assert!(matches!(
        run(&twice, &plan),
        SignError::Canonicalization(C14nError::DuplicateId(_))
    ));
    let other = KeyPair::generate(&CertSpec::default()).unwrap();
    assert!(matches!(
        SigningKey::new(other.key.clone(), signer().cert.clone()),
        Err(SignError::KeyMismatch)
    ));
    assert!("Bogus".parse::<SignPart>().is_err());
    assert_eq!(
        "MessageID".parse(),
        Ok(SignPart::Addressing("MessageID".into()))
    );
}

#[test]
fn profiles_make_plans() {
    let p = SignPlan::for_profile(Profile::Basic256Sha256);
    assert_eq!(p.key_identifier, KeyIdentifier::Bst);
    assert_eq!(p.parts, [SignPart::Body, SignPart::Timestamp]);
    assert_eq!(p.timestamp_ttl, Some(DEFAULT_TIMESTAMP_TTL));
    let w = SignPlan::for_profile(Profile::WcfBasic256Sign);
    assert_eq!(w.signature_algorithm, SignatureAlgorithm::RsaSha1);
    assert_eq!(w.key_identifier, KeyIdentifier::Thumbprint);
    assert_eq!(SignPlan::for_profile(Profile::Default), SignPlan::default());
}
