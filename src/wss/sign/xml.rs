//! The XML of a signature: the Timestamp, SignedInfo and the Signature with
//! its KeyInfo. Each element declares the namespaces it uses, so it reads the
//! same wherever it is put; SignedInfo is written in its canonical form.

use std::fmt::Write as _;

use super::super::algorithms::ns;
use super::super::c14n::EXC_C14N;
use super::super::cipher;
use super::super::header::{ID_BYTES, random_id, token_reference_content};
use super::{CipherError, SignPlan, SigningKey, TimestampTimes};

/// Identifiers of one signature's elements, fresh per message.
#[derive(Debug, Clone)]
pub(super) struct Ids {
    pub(super) timestamp: String,
    pub(super) signature: String,
    pub(super) key_info: String,
    pub(super) token_reference: String,
    /// The signing certificate's BinarySecurityToken (`bst`).
    pub(super) token: String,
}

impl Ids {
    /// Five identifiers from one draw of the generator (a call costs more than
    /// the bytes it makes).
    pub(super) fn fresh() -> Result<Ids, CipherError> {
        let r = cipher::random_bytes(5 * ID_BYTES)?;
        let id = |prefix: &str, i: usize| random_id(prefix, &r[i * ID_BYTES..][..ID_BYTES]);
        Ok(Ids {
            timestamp: id("TS", 0),
            signature: id("SIG", 1),
            key_info: id("KI", 2),
            token_reference: id("STR", 3),
            token: id("X509", 4),
        })
    }
}

/// `wsu:Timestamp` with Created and Expires, in UTC with milliseconds.
pub(super) fn timestamp(id: &str, times: TimestampTimes) -> String {
    format!(
        r#"<wsu:Timestamp xmlns:wsu="{wsu}" wsu:Id="{id}"><wsu:Created>{created}</wsu:Created><wsu:Expires>{expires}</wsu:Expires></wsu:Timestamp>"#,
        wsu = ns::WSU,
        created = humantime::format_rfc3339_millis(times.created),
        expires = humantime::format_rfc3339_millis(times.expires),
    )
}

/// `ds:SignedInfo` in canonical form (exclusive C14N of it is itself): one
/// Reference per signed Id, each with the exc-c14n transform.
pub(super) fn signed_info(plan: &SignPlan, ids: &[&str], digests: &[String]) -> String {
    let mut out = String::with_capacity(512 + 320 * ids.len());
    let _ = write!(
        out,
        r#"<ds:SignedInfo xmlns:ds="{ds}"><ds:CanonicalizationMethod Algorithm="{c14n}"></ds:CanonicalizationMethod><ds:SignatureMethod Algorithm="{sig}"></ds:SignatureMethod>"#,
        ds = ns::DS,
        c14n = EXC_C14N,
        sig = plan.signature_algorithm.uri(),
    );
    for (id, digest) in ids.iter().zip(digests) {
        let _ = write!(
            out,
            r##"<ds:Reference URI="#{id}"><ds:Transforms><ds:Transform Algorithm="{c14n}"></ds:Transform></ds:Transforms><ds:DigestMethod Algorithm="{dm}"></ds:DigestMethod><ds:DigestValue>{digest}</ds:DigestValue></ds:Reference>"##,
            c14n = EXC_C14N,
            dm = plan.digest_algorithm.uri(),
        );
    }
    out.push_str("</ds:SignedInfo>");
    out
}

/// The whole `ds:Signature`: SignedInfo, its value, and a KeyInfo whose
/// SecurityTokenReference names the signing certificate as the plan says.
pub(super) fn signature(
    ids: &Ids,
    signed_info: &str,
    value: &str,
    key: &SigningKey,
    plan: &SignPlan,
) -> String {
    let mut out = String::with_capacity(signed_info.len() + value.len() + 1024);
    let _ = write!(
        out,
        r#"<ds:Signature xmlns:ds="{ds}" Id="{sig}">{signed_info}<ds:SignatureValue>{value}</ds:SignatureValue><ds:KeyInfo Id="{ki}"><wsse:SecurityTokenReference xmlns:wsse="{wsse}" xmlns:wsu="{wsu}" wsu:Id="{str}">"#,
        ds = ns::DS,
        sig = ids.signature,
        ki = ids.key_info,
        wsse = ns::WSSE,
        wsu = ns::WSU,
        str = ids.token_reference,
    );
    token_reference_content(
        &key.certificate,
        plan.key_identifier,
        plan.issuer_name_format,
        &ids.token,
        &mut out,
    );
    out.push_str("</wsse:SecurityTokenReference></ds:KeyInfo></ds:Signature>");
    out
}
