//! The demo receiver's signature check: small, and honest about what it
//! checks. Given a message as the receiver sees it after decryption, it finds
//! the `ds:Signature` of the `wsse:Security` header and the signer's
//! certificate, then checks
//!
//! - the SignatureValue over the exclusive-C14N SignedInfo, with the public
//!   key of that certificate;
//! - the digest of every Reference (same-document `#Id` references only);
//! - that the Envelope's Body (its one child Body, not one elsewhere) is one
//!   of the signed parts, that each referenced Id is carried by exactly one
//!   element, and that the SignedInfo checked is the signature's own (against
//!   signature wrapping);
//! - that the certificate is one the receiver trusts (by SHA-256 of the DER).
//!
//! It uses the project's own canonicalizer, so it proves what the receiver
//! records, not interoperability: that is the libxmlsec1 and WSS4J tests'.
//! It does not check the Timestamp's freshness, certificate chains,
//! transforms other than exc-c14n, or the key identifiers other than a
//! BinarySecurityToken (without one, each trusted certificate is tried).
//! The receiver checks the message after decryption, which is where a
//! sign-then-encrypt signature (the default order) verifies; an
//! encrypt-then-sign message would show as invalid there.

use base64::Engine;
use openssl::x509::X509;
use roxmltree::{Document, Node};

use crate::wss::algorithms::ns;
use crate::wss::c14n::{self, C14nOptions};
use crate::wss::{DigestAlgorithm, SignatureAlgorithm};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
const EXC_C14N: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";

/// Who signed a message, as far as the check got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureCheck {
    /// No `ds:Signature` in the message.
    Unsigned,
    /// A valid signature by a trusted certificate.
    Verified(Signer),
    /// A valid signature, by a certificate the receiver does not trust.
    Untrusted(Signer),
    /// Not a valid signature: why.
    Invalid(String),
}

/// The certificate that signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signer {
    /// Decimal.
    pub serial: String,
    /// SHA-256 of the DER, hex.
    pub sha256: String,
}

impl SignatureCheck {
    /// The certificate of a valid signature, trusted or not.
    pub fn signer(&self) -> Option<&Signer> {
        match self {
            SignatureCheck::Verified(s) | SignatureCheck::Untrusted(s) => Some(s),
            _ => None,
        }
    }

    pub fn is_verified(&self) -> bool {
        matches!(self, SignatureCheck::Verified(_))
    }
}

fn signer_of(cert: &X509) -> Result<Signer, String> {
    let info = crate::wss::CertificateInfo::of(cert).map_err(|e| e.to_string())?;
    Ok(Signer {
        serial: info.serial,
        sha256: info.sha256,
    })
}

/// Check the signature of `doc` against the `trusted` certificates.
pub fn check(doc: &str, trusted: &[X509]) -> SignatureCheck {
    match check_inner(doc, trusted) {
        Ok(check) => check,
        Err(why) => SignatureCheck::Invalid(why),
    }
}

fn ds_child<'a, 'i>(n: Node<'a, 'i>, local: &str) -> Result<Node<'a, 'i>, String> {
    n.children()
        .find(|c| c.has_tag_name((ns::DS, local)))
        .ok_or_else(|| format!("no ds:{local}"))
}

fn check_inner(doc: &str, trusted: &[X509]) -> Result<SignatureCheck, String> {
    let tree = Document::parse(doc).map_err(|e| format!("not XML: {e}"))?;
    // Where a receiver looks, and nowhere else: the Envelope's own Header and
    // Body. A Security header or Body moved elsewhere (signature wrapping) is
    // not the one checked.
    let envelope = tree.root_element();
    let soap = envelope.tag_name().namespace();
    if envelope.tag_name().name() != "Envelope" || !is_soap(soap) {
        return Err("not a SOAP Envelope".into());
    }
    let body = match soap_children(envelope, "Body")[..] {
        [body] => body,
        _ => return Err("the Envelope has no single Body".into()),
    };
    let Some(security) = soap_children(envelope, "Header").first().and_then(|h| {
        h.children()
            .find(|n| n.has_tag_name((ns::WSSE, "Security")))
    }) else {
        return Ok(SignatureCheck::Unsigned);
    };
    let Some(signature) = security
        .children()
        .find(|n| n.has_tag_name((ns::DS, "Signature")))
    else {
        return Ok(SignatureCheck::Unsigned);
    };
    let signed_info = ds_child(signature, "SignedInfo")?;
    // The canonicalizer takes the document's first SignedInfo: it must be this
    // signature's.
    if tree
        .descendants()
        .find(|n| n.has_tag_name((ns::DS, "SignedInfo")))
        .map(|n| n.id())
        != Some(signed_info.id())
    {
        return Err("a SignedInfo before the signature's own".into());
    }
    let c14n_method = ds_child(signed_info, "CanonicalizationMethod")?;
    if c14n_method.attribute("Algorithm") != Some(EXC_C14N) {
        return Err("SignedInfo is not canonicalized with exc-c14n".into());
    }
    let method = ds_child(signed_info, "SignatureMethod")?
        .attribute("Algorithm")
        .and_then(SignatureAlgorithm::from_uri)
        .ok_or("unknown SignatureMethod")?;
    let value = B64
        .decode(
            ds_child(signature, "SignatureValue")?
                .text()
                .unwrap_or_default()
                .split_ascii_whitespace()
                .collect::<String>(),
        )
        .map_err(|e| format!("SignatureValue: {e}"))?;
    let canonical =
        c14n::canonicalize_first_named(doc, ns::DS, "SignedInfo", &prefix_list(c14n_method))
            .map_err(|e| format!("SignedInfo: {e}"))?;

    // The certificate: the BinarySecurityToken the KeyInfo points to, or else
    // each trusted one.
    let candidates = match token_certificate(&tree, signature)? {
        Some(cert) => vec![cert],
        None => trusted.to_vec(),
    };
    let signer = candidates
        .into_iter()
        .find(|cert| verifies(cert, method, &canonical, &value))
        .ok_or("the SignatureValue does not verify")?;

    let body_id = body
        .attribute((ns::WSU, "Id"))
        .ok_or("the Body has no wsu:Id (it is not signed)")?;
    let mut body_signed = false;
    for reference in signed_info
        .children()
        .filter(|c| c.has_tag_name((ns::DS, "Reference")))
    {
        let id = reference
            .attribute("URI")
            .and_then(|u| u.strip_prefix('#'))
            .ok_or("a Reference that is not a same-document #Id")?;
        // One element per Id: a copy carrying the same Id is a wrapping attempt.
        let carriers = tree
            .descendants()
            .filter(|n| n.attributes().any(|a| a.name() == "Id" && a.value() == id))
            .count();
        if carriers != 1 {
            return Err(format!(
                "Reference #{id}: {carriers} elements carry that Id"
            ));
        }
        let md = ds_child(reference, "DigestMethod")?
            .attribute("Algorithm")
            .and_then(DigestAlgorithm::from_uri)
            .ok_or("unknown DigestMethod")?
            .md();
        let transform = ds_child(reference, "Transforms")
            .and_then(|t| ds_child(t, "Transform"))
            .ok()
            .filter(|t| t.attribute("Algorithm") == Some(EXC_C14N))
            .ok_or_else(|| format!("Reference #{id}: no exc-c14n Transform"))?;
        let canonical = c14n::canonicalize_id(doc, id, &prefix_list(transform))
            .map_err(|e| format!("Reference #{id}: {e}"))?;
        let digest = openssl::hash::hash(md, &canonical).map_err(|e| e.to_string())?;
        let expected = ds_child(reference, "DigestValue")?
            .text()
            .unwrap_or_default()
            .trim();
        if B64.encode(digest) != expected {
            return Err(format!("the digest of #{id} does not match"));
        }
        body_signed |= id == body_id;
    }
    if !body_signed {
        return Err("the Body is not among the signed parts".into());
    }
    let who = signer_of(&signer)?;
    let is_trusted = trusted
        .iter()
        .any(|t| signer_of(t).is_ok_and(|t| t.sha256 == who.sha256));
    Ok(if is_trusted {
        SignatureCheck::Verified(who)
    } else {
        SignatureCheck::Untrusted(who)
    })
}

/// The children of `n` named `local` in `n`'s own (SOAP) namespace.
fn soap_children<'a, 'i>(n: Node<'a, 'i>, local: &str) -> Vec<Node<'a, 'i>> {
    let soap = n.tag_name().namespace();
    n.children()
        .filter(|c| {
            c.is_element() && c.tag_name().name() == local && c.tag_name().namespace() == soap
        })
        .collect()
}

fn is_soap(namespace: Option<&str>) -> bool {
    namespace == Some(ns::SOAP11) || namespace == Some(ns::SOAP12)
}

/// The InclusiveNamespaces PrefixList of a canonicalization method, if any.
fn prefix_list(method: Node<'_, '_>) -> C14nOptions {
    method
        .children()
        .find(|c| c.tag_name().name() == "InclusiveNamespaces")
        .and_then(|c| c.attribute("PrefixList"))
        .map_or_else(C14nOptions::default, C14nOptions::with_prefix_list)
}

/// The certificate of the BinarySecurityToken the signature's KeyInfo refers
/// to (`None` when it refers to something else).
fn token_certificate(tree: &Document<'_>, signature: Node<'_, '_>) -> Result<Option<X509>, String> {
    let Some(uri) = ds_child(signature, "KeyInfo")
        .ok()
        .and_then(|k| {
            k.descendants()
                .find(|n| n.has_tag_name((ns::WSSE, "Reference")))
        })
        .and_then(|r| r.attribute("URI"))
        .and_then(|u| u.strip_prefix('#'))
    else {
        return Ok(None);
    };
    let Some(token) = tree.descendants().find(|n| {
        n.has_tag_name((ns::WSSE, "BinarySecurityToken"))
            && n.attribute((ns::WSU, "Id")) == Some(uri)
    }) else {
        return Ok(None);
    };
    let der = B64
        .decode(
            token
                .text()
                .unwrap_or_default()
                .split_ascii_whitespace()
                .collect::<String>(),
        )
        .map_err(|e| format!("BinarySecurityToken: {e}"))?;
    X509::from_der(&der)
        .map(Some)
        .map_err(|e| format!("BinarySecurityToken: {e}"))
}

fn verifies(cert: &X509, method: SignatureAlgorithm, canonical: &[u8], value: &[u8]) -> bool {
    let Ok(public) = cert.public_key() else {
        return false;
    };
    openssl::sign::Verifier::new(method.md(), &public)
        .and_then(|mut v| {
            v.update(canonical)?;
            v.verify(value)
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use super::*;
    use crate::receiver::{CertSpec, KeyPair};
    use crate::wss::{EncryptOptions, SignPlan, SigningKey, sign_to_vec};

    const SOAP: &str = r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><m:order xmlns:m="urn:m">42</m:order></soap:Body></soap:Envelope>"#;

    fn pair(serial: u32) -> &'static KeyPair {
        static A: OnceLock<KeyPair> = OnceLock::new();
        static B: OnceLock<KeyPair> = OnceLock::new();
        let cell = if serial == 1 { &A } else { &B };
        cell.get_or_init(|| {
            KeyPair::generate(&CertSpec {
                serial,
                ..CertSpec::default()
            })
            .unwrap()
        })
    }

    fn signed_by(p: &KeyPair) -> String {
        let key = SigningKey::new(p.key.clone(), p.cert.clone()).unwrap();
        let signed = sign_to_vec(
            SOAP.as_bytes(),
            &key,
            &SignPlan::default(),
            None,
            &EncryptOptions::default(),
        )
        .unwrap();
        String::from_utf8(signed.bytes).unwrap()
    }

    #[test]
    fn a_trusted_signature_verifies_and_names_its_certificate() {
        let doc = signed_by(pair(1));
        let check = check(&doc, &[pair(2).cert.clone(), pair(1).cert.clone()]);
        assert!(check.is_verified(), "{check:?}");
        assert_eq!(check.signer().unwrap().serial, "1");
    }

    #[test]
    fn a_valid_signature_by_a_certificate_not_trusted_is_untrusted() {
        let doc = signed_by(pair(1));
        let check = check(&doc, &[pair(2).cert.clone()]);
        assert!(
            matches!(&check, SignatureCheck::Untrusted(s) if s.serial == "1"),
            "{check:?}"
        );
    }

    #[test]
    fn a_changed_body_or_signature_is_invalid() {
        let doc = signed_by(pair(1));
        let trusted = [pair(1).cert.clone()];
        let body = doc.replace(">42<", ">43<");
        assert!(matches!(check(&body, &trusted), SignatureCheck::Invalid(_)));
        let tree = Document::parse(&doc).unwrap();
        let value = tree
            .descendants()
            .find(|n| n.has_tag_name((ns::DS, "SignatureValue")))
            .and_then(|n| n.text())
            .unwrap()
            .to_string();
        let mut bytes = B64.decode(value.trim()).unwrap();
        bytes[0] ^= 1;
        let forged = doc.replace(&value, &B64.encode(bytes));
        assert!(matches!(
            check(&forged, &trusted),
            SignatureCheck::Invalid(_)
        ));
    }

    #[test]
    fn a_message_without_a_signature_is_unsigned() {
        assert_eq!(check(SOAP, &[]), SignatureCheck::Unsigned);
    }

    /// Signature wrapping: the signed Body moved into the Header with a new
    /// Body in its place, a copy of the Body carrying its Id, and a copy of the
    /// SignedInfo put before the signature's: each one is refused.
    #[test]
    fn wrapped_messages_are_invalid() {
        let doc = signed_by(pair(1));
        let trusted = [pair(1).cert.clone()];
        assert!(check(&doc, &trusted).is_verified());
        let body_start = doc.find("<soap:Body").unwrap();
        let body_end = doc.find("</soap:Body>").unwrap() + "</soap:Body>".len();
        let signed_body = &doc[body_start..body_end];
        let forged = "<soap:Body><m:order xmlns:m=\"urn:m\">1000</m:order></soap:Body>";
        // The signed Body kept in a header; the Envelope's Body is another.
        let moved = doc.replacen(signed_body, forged, 1).replacen(
            "<soap:Header>",
            &format!("<soap:Header><w:Wrapper xmlns:w=\"urn:w\">{signed_body}</w:Wrapper>"),
            1,
        );
        assert!(moved.contains("1000") && moved.contains(">42<"));
        let got = check(&moved, &trusted);
        assert!(
            matches!(&got, SignatureCheck::Invalid(_)),
            "moved Body: {got:?}"
        );
        // A second element with the Body's Id.
        let twice = doc.replacen(
            "<soap:Header>",
            &format!("<soap:Header><w:Wrapper xmlns:w=\"urn:w\">{signed_body}</w:Wrapper>"),
            1,
        );
        let got = check(&twice, &trusted);
        assert!(
            matches!(&got, SignatureCheck::Invalid(_)),
            "Id twice: {got:?}"
        );
        // A SignedInfo ahead of the signature's own.
        let si_start = doc.find("<ds:SignedInfo").unwrap();
        let si_end = doc.find("</ds:SignedInfo>").unwrap() + "</ds:SignedInfo>".len();
        let early = doc.replacen(
            "<soap:Header>",
            &format!(
                "<soap:Header><w:Wrapper xmlns:w=\"urn:w\" xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\">{}</w:Wrapper>",
                &doc[si_start..si_end]
            ),
            1,
        );
        let got = check(&early, &trusted);
        assert!(
            matches!(&got, SignatureCheck::Invalid(_)),
            "early SignedInfo: {got:?}"
        );
    }
}
