//! Apache CXF 4 services behind a WS-SecurityPolicy that wants the request signed
//! and encrypted — an AsymmetricBinding with `Basic256Sha256`, the client's X509
//! token as InitiatorToken, a signed Timestamp, OnlySignEntireHeadersAndBody, the
//! Body signed and encrypted (tests/interop/java, SignedServices.java) — called
//! through a real `wssgate serve` whose signing routes use `profile =
//! "basic256sha256"`. The services trust one signing certificate, the tenant's:
//! what its ring signs is accepted and answered, what another ring signs is refused
//! with CXF's SOAP Fault, for SOAP 1.1 and 1.2 and CXF's DOM and streaming
//! receivers, with layouts Lax, Strict and LaxTsFirst, the protection order the
//! policy names, and the key identifiers a policy without the token in the
//! message leaves to the sender. What wssgate sends, recorded and changed by one
//! byte in the Timestamp, a signed WS-Addressing header or the Body, is refused
//! by the same services, and accepted untouched.
//!
//! One JVM serves every endpoint and one daemon holds every route; without `mvn`
//! on the PATH the test says so and passes (see tests/interop_java.rs).

mod common;

use common::gateway::{Gateway, post};
use common::java::{CxfServices, PAYLOAD, ServiceKey, envelope, fault_text, harness, received};
use common::net::Receiver;
use common::{CertSpec, TestReceiver};

/// Why CXF refuses a request by design, as its DOM and streaming receivers word it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// Signed with a certificate in the message that the service does not trust.
    Untrusted,
    /// Signed with a certificate the KeyInfo names and the service does not have.
    UnknownSigner,
    /// Signed and encrypted in the order the policy does not name.
    Order,
    /// The Signature left in the clear where the policy wants it encrypted.
    SignatureNotEncrypted,
    /// The signing certificate named, not included, where the policy wants it
    /// in the message.
    TokenNotIncluded,
    /// Encrypted only.
    Unsigned,
    /// Signed with an algorithm other than the one the policy's suite names.
    SignatureAlgorithm,
    /// A byte of what the signature covers changed after signing.
    Tampered,
    /// A byte of the Body's ciphertext changed after encrypt-then-sign. The
    /// streaming receiver decrypts the Body while it digests it, so the changed
    /// plaintext is refused as unreadable XML before the digest is compared.
    TamperedCiphertext,
}

impl Refusal {
    /// Words the fault must contain; any one of them will do. The DOM receiver's
    /// reasons for a signature are partly in WSS4J's log, which the harness
    /// appends to the fault.
    fn reasons(self, stax: bool) -> &'static [&'static str] {
        match (self, stax) {
            (Refusal::Untrusted, _) => &["No trusted certs found"],
            (Refusal::UnknownSigner, false) => &["The signature or decryption was invalid"],
            (Refusal::UnknownSigner, true) => &["Referenced security token could not be retrieved"],
            (Refusal::Order, false) => {
                &["Not signed before encrypted", "Not encrypted before signed"]
            }
            (Refusal::Order, true) => &[
                "Policy enforces SignBeforeEncrypting but",
                "Policy enforces EncryptBeforeSigning but",
            ],
            (Refusal::SignatureNotEncrypted, false) => &["The signature is not protected"],
            (Refusal::SignatureNotEncrypted, true) => &["Signature must be encrypted"],
            (Refusal::TokenNotIncluded, false) => &["An incorrect X.509 Token Type is detected"],
            (Refusal::TokenNotIncluded, true) => &["Token must be included"],
            (Refusal::Unsigned, false) => &["Soap Body is not SIGNED"],
            (Refusal::Unsigned, true) => &["Body must be signed"],
            (Refusal::SignatureAlgorithm, false) => &["rsa-sha256 does not match required values"],
            (Refusal::SignatureAlgorithm, true) => &["rsa-sha256 does not meet policy"],
            (Refusal::Tampered | Refusal::TamperedCiphertext, false) => {
                &["The signature or decryption was invalid"]
            }
            (Refusal::Tampered, true) => &["Invalid digest of reference"],
            // Which XML error depends on the changed plaintext byte.
            (Refusal::TamperedCiphertext, true) => {
                &["XML_STREAM_EXC", "Error reading XMLStreamReader: "]
            }
        }
    }
}

/// One request through one route: the route's signing keys and what CXF must do.
struct Case {
    service: String,
    name: String,
    route: String,
    expect: Option<Refusal>,
}

/// The cases the service at `path` (`/signed/VARIANT/soapNN/dom|stax`) must
/// accept and refuse.
fn cases(path: &str) -> Vec<(String, String, Option<Refusal>)> {
    let variant = path.split('/').nth(2).unwrap();
    // WS-SecurityPolicy's Basic256Sha256 signs with RSA-SHA1, WCF's (and the
    // profile's) with RSA-SHA256; a service configured for the specification's
    // refuses the profile as it is (see SignedServices.java).
    let spec = variant == "lax-spec-rsa-sha1";
    // EncryptSignature: the Signature is encrypted too (with sign-then-encrypt).
    let encrypt_signature = variant == "strict-encrypt-signature";
    let extra = match (spec, encrypt_signature) {
        (true, _) => "\nsignature_algorithm = \"rsa-sha1\"\nallow_legacy = true",
        (_, true) => "\nencrypt_signature = true",
        _ => "",
    };
    let route = |ring: &str, order: &str, key_identifier: &str| {
        format!(
            "sign = true\nsigning_ring = \"{ring}\"\norder = \"{order}\"\nsignature_key_identifier = \"{key_identifier}\"{extra}"
        )
    };
    let (order, wrong_order) = match variant {
        "lax-encrypt-first" => ("encrypt-then-sign", "sign-then-encrypt"),
        _ => ("sign-then-encrypt", "encrypt-then-sign"),
    };
    let mut v = Vec::new();
    // IncludeToken Never: the certificate is not in the message, the signature's
    // KeyInfo names it and the service finds it among those it trusts. Otherwise
    // (AlwaysToRecipient) it must come as a BinarySecurityToken.
    let (identifiers, untrusted): (&[&str], _) = if variant == "lax-token-never" {
        (
            &["issuer-serial", "ski", "thumbprint"],
            Refusal::UnknownSigner,
        )
    } else {
        (&["bst"], Refusal::Untrusted)
    };
    for ki in identifiers {
        v.push((
            format!("tenant {order} {ki}"),
            route("tenant", order, ki),
            None,
        ));
        v.push((
            format!("stranger {order} {ki}"),
            route("stranger", order, ki),
            Some(untrusted),
        ));
    }
    v.push((
        format!("tenant {wrong_order} {}", identifiers[0]),
        // encrypt_signature is for sign-then-encrypt only (the config refuses it
        // with encrypt-then-sign).
        route("tenant", wrong_order, identifiers[0]).replace("\nencrypt_signature = true", ""),
        Some(Refusal::Order),
    ));
    // CXF's streaming receiver refuses the Signature in the clear under
    // EncryptSignature for SOAP 1.1 but accepts it for SOAP 1.2: WSS4J 3.0.5's
    // streaming policy check (SignatureProtectionAssertionState) looks for the
    // Signature under the SOAP 1.1 Header path only. A gap of the receiver's, so
    // the case is not sent there.
    let enforced = !(path.contains("/soap12/") && path.ends_with("/stax"));
    if encrypt_signature && enforced {
        v.push((
            format!("tenant {order} bst, the Signature in the clear"),
            route("tenant", order, "bst").replace(extra, ""),
            Some(Refusal::SignatureNotEncrypted),
        ));
    }
    // The profile alone (no signature_key_identifier) includes the token, as
    // AlwaysToRecipient wants; naming the signing certificate by issuer and
    // serial instead is refused there: the token must be in the message.
    if variant == "lax" {
        v.push((
            format!("tenant {order} (the profile's own key identifier)"),
            route("tenant", order, "bst").replace("\nsignature_key_identifier = \"bst\"", ""),
            None,
        ));
        v.push((
            format!("tenant {order} issuer-serial"),
            route("tenant", order, "issuer-serial"),
            Some(Refusal::TokenNotIncluded),
        ));
    }
    if spec {
        v.push((
            format!("tenant {order} bst rsa-sha256"),
            format!("sign = true\nsigning_ring = \"tenant\"\norder = \"{order}\"\nsignature_key_identifier = \"bst\""),
            Some(Refusal::SignatureAlgorithm),
        ));
    }
    // Encrypted as the policy wants, not signed: refused, so the acceptances are
    // the signature's.
    v.push((
        "encrypt only".into(),
        String::new(),
        Some(Refusal::Unsigned),
    ));
    v
}

/// The request with a WS-Addressing `To` header, which the recording routes sign
/// too: CXF checks every Reference of a Signature, so a changed header is refused
/// although the policy names only the Body.
fn addressed_envelope(soap12: bool) -> String {
    envelope(soap12).replace(
        "<soap:Header/>",
        r#"<soap:Header><wsa:To xmlns:wsa="http://www.w3.org/2005/08/addressing">http://orders.example/service</wsa:To></soap:Header>"#,
    )
}

/// The services whose requests are also recorded and replayed tampered: both
/// protection orders (the Body's ciphertext is what is signed only when it is
/// encrypted first).
fn recorded_for_tampering(service: &str) -> Option<&'static str> {
    match service.split('/').nth(2) {
        Some("lax") => Some("sign-then-encrypt"),
        Some("lax-encrypt-first") => Some("encrypt-then-sign"),
        _ => None,
    }
}

#[test]
fn cxf4_basic256sha256_sign_and_encrypt_policy_through_wssgate_serve() {
    let Some(harness) = harness() else { return };
    let dir = tempfile::tempdir().unwrap();
    let service = ServiceKey::new();
    let keystore = service.write_keystore(dir.path());
    let (_, signer_cert, _) = common::signer().write_to(dir.path(), "signer");
    let stranger = TestReceiver::new(&CertSpec {
        common_name: "not trusted".into(),
        serial: 668,
        ..CertSpec::default()
    });
    let cxf = CxfServices::start(
        harness,
        &keystore,
        Some(&signer_cert),
        &dir.path().join("cxf.log"),
    );

    // One daemon, two rings: the tenant's key, which the services trust, and a
    // stranger's, which they do not.
    common::write_ring(dir.path(), "tenant", common::signer());
    common::write_ring(dir.path(), "stranger", &stranger);
    common::write_keystore(
        dir.path(),
        &[("orders-service", service.cert().to_pem().unwrap())],
    );
    let d = dir.path().display();
    let mut config = format!(
        "[proxy]\nlisten = \"127.0.0.1:0\"\nupstream_timeout = \"30s\"\nshutdown_grace = \"1s\"\n\
         [keystore]\ndir = \"{d}/keystore\"\nprivate_dir = \"{d}/private\"\nstate_dir = \"{d}/var\"\n"
    );
    // What the daemon sends is recorded by a receiver that holds the service's
    // key (it answers 200 itself), to be replayed to the service, changed and not.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut ring = wssgate::wss::keys::KeyRing::default();
    ring.push(service.0.entry("orders-service").unwrap());
    let recorder = runtime.block_on(Receiver::start(ring)).unwrap();
    let mut recordings = Vec::new();
    let mut all = Vec::new();
    for path in cxf.paths.iter().filter(|p| p.starts_with("/signed/")) {
        if let Some(order) = recorded_for_tampering(path) {
            let route = format!("/r{}", recordings.len());
            config.push_str(&format!(
                "\n[[route]]\nname = \"r{n}\"\npath = \"{route}\"\nupstream = \"http://{addr}/\"\n\
                 alias = \"orders-service\"\nhold_max = 10\nprofile = \"basic256sha256\"\nsign = true\n\
                 signing_ring = \"tenant\"\norder = \"{order}\"\nsignature_key_identifier = \"bst\"\n\
                 sign_parts = [\"Body\", \"Timestamp\", \"To\"]\n",
                n = recordings.len(),
                addr = recorder.addr,
            ));
            recordings.push((path.clone(), route, order));
        }
        for (name, settings, expect) in cases(path) {
            let route = format!("/c{}", all.len());
            config.push_str(&format!(
                // hold_max small, so that every route's holds fit the descriptor
                // budget together.
                "\n[[route]]\nname = \"c{n}\"\npath = \"{route}\"\nupstream = \"http://127.0.0.1:{port}{path}\"\n\
                 alias = \"orders-service\"\nhold_max = 10\nprofile = \"basic256sha256\"\n{settings}\n",
                n = all.len(),
                port = cxf.port,
            ));
            all.push(Case {
                service: path.clone(),
                name,
                route,
                expect,
            });
        }
    }
    assert_eq!(
        all.iter()
            .map(|c| &c.service)
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        7 * 2 * 2,
        "every signing service published: {:?}",
        cxf.paths
    );
    let config_path = dir.path().join("wssgate.toml");
    std::fs::write(&config_path, config).unwrap();
    let gateway = Gateway::start(&config_path, &dir.path().join("wssgate.log"));

    let mut wrong = Vec::new();
    for case in &all {
        let soap12 = case.service.contains("/soap12/");
        let stax = case.service.ends_with("/stax");
        let (status, body) = post(
            &gateway.addr,
            &case.route,
            soap12,
            envelope(soap12).as_bytes(),
        );
        let echoed = received(&body);
        let ok = match case.expect {
            None => status == 200 && echoed.as_deref() == Some(PAYLOAD),
            Some(refusal) => {
                status == 500
                    && echoed.is_none()
                    && body.contains("Fault")
                    && refusal.reasons(stax).iter().any(|r| body.contains(r))
            }
        };
        let outcome = if status == 200 {
            "accepted".to_string()
        } else {
            fault_text(&body)
        };
        eprintln!("{} {}: {status} {outcome}", case.service, case.name);
        if !ok {
            wrong.push(format!(
                "{} {}: expected {:?}, got {status} {outcome}",
                case.service, case.name, case.expect
            ));
        }
    }

    // Recorded, then sent to the service directly, changed or not. CXF keeps
    // the Timestamps it has seen (a replay cache), also of some requests it then
    // refuses, so every copy is of a request of its own.
    let service_addr = format!("127.0.0.1:{}", cxf.port);
    let mut tampered = 0;
    for (service, route, order) in &recordings {
        let soap12 = service.contains("/soap12/");
        let stax = service.ends_with("/stax");
        let record = || {
            let request = addressed_envelope(soap12);
            let (status, body) = post(&gateway.addr, route, soap12, request.as_bytes());
            assert_eq!(status, 200, "{service} recorded: {body}");
            let sent = recorder.received.lock().unwrap().pop();
            sent.expect("the request recorded").raw
        };
        let body_signed_encrypted = *order == "encrypt-then-sign";
        let kinds = common::tampered_copies(&record(), body_signed_encrypted).len();
        for i in 0..kinds {
            let copies = common::tampered_copies(&record(), body_signed_encrypted);
            let (what, bytes) = copies.into_iter().nth(i).unwrap();
            tampered += 1;
            let (status, body) = post(&service_addr, service, soap12, &bytes);
            let refusal = match what {
                "Body" => Refusal::TamperedCiphertext,
                _ => Refusal::Tampered,
            };
            let ok = status == 500
                && received(&body).is_none()
                && refusal.reasons(stax).iter().any(|r| body.contains(r));
            let outcome = format!("{status} {}", fault_text(&body));
            eprintln!("{service} {order} tampered {what}: {outcome}");
            if !ok {
                wrong.push(format!("{service} {order} tampered {what}: got {outcome}"));
            }
        }
        let (status, body) = post(&service_addr, service, soap12, &record());
        eprintln!("{service} {order} untouched: {status}");
        if status != 200 || received(&body).as_deref() != Some(PAYLOAD) {
            let outcome = format!("{status} {}", fault_text(&body));
            wrong.push(format!("{service} {order} untouched: got {outcome}"));
        }
    }
    drop(gateway);
    assert!(
        wrong.is_empty(),
        "{} of {} not as expected:\n{}\n(CXF log: {})",
        wrong.len(),
        all.len() + tampered + recordings.len(),
        wrong.join("\n"),
        std::fs::read_to_string(dir.path().join("cxf.log")).unwrap_or_default()
    );
    let refused = all.iter().filter(|c| c.expect.is_some()).count();
    eprintln!(
        "CXF 4 signing services: {} accepted, {refused} refused, as expected; \
         {tampered} tampered copies of {} recorded requests refused and the originals accepted",
        all.len() - refused,
        recordings.len()
    );
}
