//! A route's signing keys (`sign = true` and the keys beside it), checked into a
//! [`SignConfig`]: the ring that signs and a validated [`SignPlan`]. A profile's
//! signing half gives the defaults; each explicit key overrides it.

use super::parse::{Ctx, parse_duration, parse_size};
use super::raw::RawRoute;
use super::*;
use crate::wss::sign::{PlanError, SignOrder, SignPart, SignPlan, SignatureAlgorithm};

/// Keys that mean something only with `sign = true`, with their spans.
fn signing_keys(r: &RawRoute) -> [(&'static str, Option<std::ops::Range<usize>>); 10] {
    fn span<T>(v: &Option<Spanned<T>>) -> Option<std::ops::Range<usize>> {
        v.as_ref().map(|v| v.span())
    }
    [
        ("signing_ring", span(&r.signing_ring)),
        ("signature_algorithm", span(&r.signature_algorithm)),
        ("digest_algorithm", span(&r.digest_algorithm)),
        (
            "signature_key_identifier",
            span(&r.signature_key_identifier),
        ),
        ("sign_parts", span(&r.sign_parts)),
        ("timestamp", span(&r.timestamp)),
        ("timestamp_ttl", span(&r.timestamp_ttl)),
        ("order", span(&r.order)),
        ("encrypt_signature", span(&r.encrypt_signature)),
        ("sign_max_body", span(&r.sign_max_body)),
    ]
}

/// The signing of route `r` (`key` names its keys), or `None` when it does not
/// sign. `max_body` is the proxy's, the default and the ceiling of `sign_max_body`.
pub(super) fn signing(
    ctx: &Ctx<'_>,
    r: &RawRoute,
    key: &dyn Fn(&str) -> String,
    (profile, mode, allow_legacy, max_body): (Profile, RouteMode, bool, u64),
) -> Result<Option<SignConfig>, ConfigError> {
    let sign = r.sign.as_ref().is_some_and(|v| *v.get_ref());
    if !sign {
        if let Some((k, span)) = signing_keys(r).into_iter().find(|(_, s)| s.is_some()) {
            return ctx.err(span, &key(k), format!("{k} is for sign = true"));
        }
        return Ok(None);
    }
    let sign_span = r.sign.as_ref().map(|v| v.span());
    if mode != RouteMode::Encrypt {
        return ctx.err(
            sign_span,
            &key("sign"),
            format!(
                "a {} route does not sign: sign = true is for mode = \"encrypt\"",
                mode.name()
            ),
        );
    }
    if let Some(v) = r
        .already_encrypted
        .as_ref()
        .filter(|v| v.get_ref() == "pass")
    {
        return ctx.err(
            Some(v.span()),
            &key("already_encrypted"),
            "a signing route signs what it encrypts: already_encrypted = \"pass\" is refused with sign = true",
        );
    }
    let ring = match &r.signing_ring {
        None => {
            return ctx.err(
                sign_span,
                &key("signing_ring"),
                "sign = true needs signing_ring = \"RING\" (the key ring whose active key signs)",
            );
        }
        Some(v) if is_valid_alias(v.get_ref()) => v.get_ref().clone(),
        Some(v) => {
            return ctx.err(
                Some(v.span()),
                &key("signing_ring"),
                format!(
                    "{:?} is not a valid alias (letters, digits, . _ -; at most 128)",
                    v.get_ref()
                ),
            );
        }
    };
    let mut plan = SignPlan::for_profile(profile);
    if let Some(a) = ctx.named(&r.signature_algorithm, &key("signature_algorithm"))? {
        plan.signature_algorithm = a;
    }
    if plan.signature_algorithm == SignatureAlgorithm::RsaSha1 && !allow_legacy {
        let (k, span) = match &r.signature_algorithm {
            Some(v) => ("signature_algorithm", Some(v.span())),
            None => ("profile", r.profile.as_ref().map(|v| v.span())),
        };
        return ctx.err(
            span,
            &key(k),
            "rsa-sha1 is legacy: set allow_legacy = true to sign with it",
        );
    }
    if let Some(d) = ctx.named(&r.digest_algorithm, &key("digest_algorithm"))? {
        plan.digest_algorithm = d;
    }
    if let Some(k) = ctx.named(
        &r.signature_key_identifier,
        &key("signature_key_identifier"),
    )? {
        plan.key_identifier = k;
    }
    if let Some(f) = ctx.named(&r.issuer_name_format, &key("issuer_name_format"))? {
        plan.issuer_name_format = f;
    }
    let timestamp = match &r.timestamp {
        Some(v) => *v.get_ref(),
        None => plan.timestamp_ttl.is_some(),
    };
    plan.timestamp_ttl = match (timestamp, &r.timestamp_ttl) {
        (false, Some(v)) => {
            return ctx.err(
                Some(v.span()),
                &key("timestamp_ttl"),
                "timestamp_ttl is for timestamp = true",
            );
        }
        (false, None) => None,
        (true, ttl) => Some(ctx.parsed(ttl, &key("timestamp_ttl"), "300s", parse_duration)?),
    };
    plan.parts = match &r.sign_parts {
        Some(parts) => {
            let mut typed = Vec::with_capacity(parts.get_ref().len());
            for p in parts.get_ref() {
                let part = p.parse::<SignPart>().map_err(|e| e.to_string());
                let part = part.or_else(|m| ctx.err(Some(parts.span()), &key("sign_parts"), m))?;
                typed.push(part);
            }
            typed
        }
        None if timestamp => vec![SignPart::Body, SignPart::Timestamp],
        None => vec![SignPart::Body],
    };
    if let Some(o) = ctx.named::<SignOrder>(&r.order, &key("order"))? {
        plan.order = o;
    }
    if let Some(v) = &r.encrypt_signature {
        plan.encrypt_signature = *v.get_ref();
    }
    let sign_max_body = ctx.parsed(
        &r.sign_max_body,
        &key("sign_max_body"),
        &max_body.to_string(),
        parse_size,
    )?;
    if sign_max_body == 0 || sign_max_body > max_body {
        return ctx.err(
            r.sign_max_body.as_ref().map(|v| v.span()),
            &key("sign_max_body"),
            format!("must be more than 0 and at most proxy.max_body ({max_body})"),
        );
    }
    plan.max_body = Some(sign_max_body);
    if let Err(e) = plan.validate() {
        let (k, span) = match e {
            PlanError::ZeroTimestampTtl | PlanError::TimestampTtlTooLong => {
                ("timestamp_ttl", r.timestamp_ttl.as_ref().map(|v| v.span()))
            }
            PlanError::EncryptSignatureOrder | PlanError::EncryptSignatureWithoutEncryption => (
                "encrypt_signature",
                r.encrypt_signature.as_ref().map(|v| v.span()),
            ),
            PlanError::NoParts | PlanError::DuplicatePart(_) | PlanError::TimestampNotAdded => {
                ("sign_parts", r.sign_parts.as_ref().map(|v| v.span()))
            }
        };
        return ctx.err(span, &key(k), e.to_string());
    }
    Ok(Some(SignConfig { ring, plan }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wss::sign::DigestAlgorithm;
    use crate::wss::{IssuerNameFormat, KeyIdentifier};

    fn parse(extra: &str) -> Result<Config, ConfigError> {
        let text = format!(
            r#"
[[route]]
name = "orders"
path = "/orders"
upstream = "http://127.0.0.1:9000/orders"
alias = "orders-receiver"
{extra}
"#
        );
        Config::parse(&text, Path::new("/etc/wssgate/wssgate.toml"))
    }

    fn sign(extra: &str) -> SignConfig {
        let c = parse(&format!("sign = true\nsigning_ring = \"tenant\"\n{extra}")).unwrap();
        c.routes[0].sign.clone().unwrap()
    }

    /// The key a refusal names, and that it names a line.
    fn refused(extra: &str) -> String {
        let e = parse(extra).unwrap_err();
        assert!(e.line.is_some(), "{e}");
        e.key
    }

    fn refused_signing(extra: &str) -> String {
        refused(&format!("sign = true\nsigning_ring = \"tenant\"\n{extra}"))
    }

    #[test]
    fn a_route_signs_only_when_asked() {
        let c = parse("").unwrap();
        assert_eq!(c.routes[0].sign, None);
        assert!(!c.rings().contains("tenant"));
        let c = parse("sign = false").unwrap();
        assert_eq!(c.routes[0].sign, None);
    }

    #[test]
    fn defaults_follow_the_design() {
        let s = sign("");
        assert_eq!(s.ring, "tenant");
        let p = &s.plan;
        assert_eq!(p.signature_algorithm, SignatureAlgorithm::RsaSha256);
        assert_eq!(p.digest_algorithm, DigestAlgorithm::Sha256);
        assert_eq!(p.key_identifier, KeyIdentifier::Bst);
        assert_eq!(p.parts, vec![SignPart::Body, SignPart::Timestamp]);
        assert_eq!(p.timestamp_ttl, Some(Duration::from_secs(300)));
        assert_eq!(p.order, SignOrder::SignThenEncrypt);
        assert!(!p.encrypt_signature);
        assert_eq!(
            p.max_body,
            Some(16 << 20),
            "sign_max_body defaults to max_body"
        );
        let c = parse("sign = true\nsigning_ring = \"tenant\"").unwrap();
        assert!(c.rings().contains("tenant"), "the signing ring is loaded");
    }

    #[test]
    fn explicit_keys_override() {
        let s = sign(
            r#"signature_algorithm = "rsa-sha512"
digest_algorithm = "sha512"
signature_key_identifier = "thumbprint"
sign_parts = ["Body", "Timestamp", "To", "Action", "MessageID"]
timestamp_ttl = "2m"
order = "sign-then-encrypt"
encrypt_signature = true
sign_max_body = "1MiB""#,
        );
        let p = &s.plan;
        assert_eq!(p.signature_algorithm, SignatureAlgorithm::RsaSha512);
        assert_eq!(p.digest_algorithm, DigestAlgorithm::Sha512);
        assert_eq!(p.key_identifier, KeyIdentifier::Thumbprint);
        assert_eq!(p.parts.len(), 5);
        assert_eq!(p.parts[3], SignPart::Addressing("Action".into()));
        assert_eq!(p.timestamp_ttl, Some(Duration::from_secs(120)));
        assert!(p.encrypt_signature);
        assert_eq!(p.max_body, Some(1 << 20));
        let p = sign("order = \"encrypt-then-sign\"\ndigest_algorithm = \"sha1\"").plan;
        assert_eq!(p.order, SignOrder::EncryptThenSign);
        assert_eq!(p.digest_algorithm, DigestAlgorithm::Sha1);
    }

    #[test]
    fn without_a_timestamp_the_body_is_signed() {
        let p = sign("timestamp = false").plan;
        assert_eq!(p.timestamp_ttl, None);
        assert_eq!(p.parts, vec![SignPart::Body]);
    }

    #[test]
    fn profiles_set_signing_defaults_that_keys_override() {
        let p = sign("profile = \"basic256sha256\"").plan;
        assert_eq!(p.key_identifier, KeyIdentifier::Bst);
        assert_eq!(p.signature_algorithm, SignatureAlgorithm::RsaSha256);
        assert_eq!(p.timestamp_ttl, Some(Duration::from_secs(300)));
        let p = sign("profile = \"basic256sha256\"\nsignature_key_identifier = \"ski\"").plan;
        assert_eq!(p.key_identifier, KeyIdentifier::Ski);
        let p = sign("profile = \"wcf-basic256-sign\"\nallow_legacy = true").plan;
        assert_eq!(p.signature_algorithm, SignatureAlgorithm::RsaSha1);
        assert_eq!(p.digest_algorithm, DigestAlgorithm::Sha1);
        assert_eq!(p.key_identifier, KeyIdentifier::Thumbprint);
        assert_eq!(p.issuer_name_format, IssuerNameFormat::Wcf);
        let p = sign("profile = \"wcf-basic256-sign\"\nsignature_algorithm = \"rsa-sha256\"").plan;
        assert_eq!(p.signature_algorithm, SignatureAlgorithm::RsaSha256);
        assert_eq!(p.digest_algorithm, DigestAlgorithm::Sha1);
    }

    #[test]
    fn rsa_sha1_needs_allow_legacy() {
        let key = refused_signing("signature_algorithm = \"rsa-sha1\"");
        assert_eq!(key, "route.orders.signature_algorithm");
        let key = refused_signing("profile = \"wcf-basic256-sign\"");
        assert_eq!(key, "route.orders.profile");
        let p = sign("signature_algorithm = \"rsa-sha1\"\nallow_legacy = true").plan;
        assert_eq!(p.signature_algorithm, SignatureAlgorithm::RsaSha1);
    }

    #[test]
    fn each_refusal_names_its_key() {
        let k = |k: &str| format!("route.orders.{k}");
        assert_eq!(refused("sign = true"), k("signing_ring"));
        assert_eq!(
            refused("sign = true\nsigning_ring = \"../x\""),
            k("signing_ring")
        );
        for (extra, key) in [
            ("signature_algorithm = \"dsa\"", "signature_algorithm"),
            ("digest_algorithm = \"md5\"", "digest_algorithm"),
            (
                "signature_key_identifier = \"name\"",
                "signature_key_identifier",
            ),
            ("sign_parts = [\"Body\", \"Header\"]", "sign_parts"),
            ("sign_parts = []", "sign_parts"),
            ("sign_parts = [\"Body\", \"Body\"]", "sign_parts"),
            (
                "timestamp = false\nsign_parts = [\"Body\", \"Timestamp\"]",
                "sign_parts",
            ),
            (
                "timestamp = false\ntimestamp_ttl = \"60s\"",
                "timestamp_ttl",
            ),
            ("timestamp_ttl = \"0s\"", "timestamp_ttl"),
            ("timestamp_ttl = \"2days\"", "timestamp_ttl"),
            ("timestamp_ttl = \"soon\"", "timestamp_ttl"),
            ("order = \"sign-and-encrypt\"", "order"),
            (
                "order = \"encrypt-then-sign\"\nencrypt_signature = true",
                "encrypt_signature",
            ),
            ("sign_max_body = \"0\"", "sign_max_body"),
            ("sign_max_body = \"17MiB\"", "sign_max_body"),
            ("sign_max_body = \"lots\"", "sign_max_body"),
            ("already_encrypted = \"pass\"", "already_encrypted"),
        ] {
            assert_eq!(refused_signing(extra), k(key), "{extra}");
        }
    }

    #[test]
    fn signing_keys_without_sign_are_refused() {
        for key in [
            "signing_ring = \"tenant\"",
            "signature_algorithm = \"rsa-sha256\"",
            "digest_algorithm = \"sha256\"",
            "signature_key_identifier = \"bst\"",
            "sign_parts = [\"Body\"]",
            "timestamp = true",
            "timestamp_ttl = \"60s\"",
            "order = \"sign-then-encrypt\"",
            "encrypt_signature = false",
            "sign_max_body = \"1MiB\"",
        ] {
            let name = key.split(' ').next().unwrap_or_default();
            assert_eq!(refused(key), format!("route.orders.{name}"), "{key}");
            let with_false = format!("sign = false\n{key}");
            assert_eq!(refused(&with_false), format!("route.orders.{name}"));
        }
    }

    #[test]
    fn only_encrypt_routes_sign() {
        let e =
            parse("mode = \"pass-through\"\nsign = true\nsigning_ring = \"tenant\"").unwrap_err();
        assert_eq!(e.key, "route.orders.sign");
        assert!(e.message.contains("pass-through"), "{e}");
        let text = r#"
[[route]]
name = "inbound"
path = "/in"
upstream = "http://127.0.0.1:9000/in"
mode = "decrypt"
ring = "receiver"
sign = true
signing_ring = "tenant"
"#;
        let e = Config::parse(text, Path::new("/etc/wssgate/wssgate.toml")).unwrap_err();
        assert_eq!(e.key, "route.inbound.sign");
    }
}
