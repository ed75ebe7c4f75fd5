//! A SOAP receiver that decrypts every message with the keys it holds at that
//! moment (one key, as a one-key receiver; two during an overlap), and throw-away
//! receiver key pairs with their certificates. One kit for `wssgate demo`, the
//! tests and the benches: what they check is decrypted by the engine's own
//! receiver-side decryptor, the same way in each. Told which signing
//! certificates it trusts ([`Receiver::trust`]), it also checks each message's
//! signature ([`verify`]) and records who signed it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use openssl::asn1::{Asn1Integer, Asn1Time};
use openssl::bn::BigNum;
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::extension::{KeyUsage, SubjectKeyIdentifier};
use openssl::x509::{X509, X509NameBuilder};
use tokio::net::TcpListener;

use crate::wss::keys::{self, KeyRing, PrivateKeyEntry};

pub mod verify;
use verify::SignatureCheck;

/// What a throw-away receiver certificate looks like.
#[derive(Debug, Clone)]
pub struct CertSpec {
    pub bits: u32,
    pub common_name: String,
    pub organization: String,
    pub country: Option<String>,
    pub serial: u32,
    /// With a SubjectKeyIdentifier extension.
    pub ski: bool,
    /// KeyUsage: Some(true) = keyEncipherment (and digitalSignature),
    /// Some(false) = digitalSignature only, None = no KeyUsage extension.
    pub key_encipherment: Option<bool>,
    /// Days from now; negative for the past.
    pub not_before_days: i64,
    pub not_after_days: i64,
}

impl Default for CertSpec {
    fn default() -> Self {
        CertSpec {
            bits: 2048,
            common_name: "receiver".into(),
            organization: "Example, Receivers Inc.".into(),
            country: Some("DE".into()),
            serial: 4711,
            ski: true,
            key_encipherment: Some(true),
            not_before_days: -1,
            not_after_days: 365,
        }
    }
}

/// A receiver key pair with its self-signed certificate.
pub struct KeyPair {
    pub key: PKey<Private>,
    pub cert: X509,
}

fn days_from_now(days: i64) -> Result<Asn1Time, ErrorStack> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    Asn1Time::from_unix(now + days * 86_400)
}

impl KeyPair {
    /// A new RSA key and its certificate.
    pub fn generate(spec: &CertSpec) -> Result<KeyPair, ErrorStack> {
        KeyPair::with_key(PKey::from_rsa(Rsa::generate(spec.bits)?)?, spec)
    }

    /// A certificate for an existing key.
    pub fn with_key(key: PKey<Private>, spec: &CertSpec) -> Result<KeyPair, ErrorStack> {
        let mut name = X509NameBuilder::new()?;
        if let Some(c) = &spec.country {
            name.append_entry_by_text("C", c)?;
        }
        name.append_entry_by_text("O", &spec.organization)?;
        name.append_entry_by_text("CN", &spec.common_name)?;
        let name = name.build();
        let mut b = X509::builder()?;
        b.set_version(2)?;
        let serial_bn = BigNum::from_u32(spec.serial)?;
        let serial = Asn1Integer::from_bn(&serial_bn)?;
        b.set_serial_number(&serial)?;
        b.set_subject_name(&name)?;
        b.set_issuer_name(&name)?;
        b.set_pubkey(&key)?;
        let (not_before, not_after) = (
            days_from_now(spec.not_before_days)?,
            days_from_now(spec.not_after_days)?,
        );
        b.set_not_before(&not_before)?;
        b.set_not_after(&not_after)?;
        if spec.ski {
            let ski = SubjectKeyIdentifier::new().build(&b.x509v3_context(None, None))?;
            b.append_extension(ski)?;
        }
        match spec.key_encipherment {
            Some(true) => b.append_extension(
                KeyUsage::new()
                    .key_encipherment()
                    .digital_signature()
                    .build()?,
            )?,
            Some(false) => b.append_extension(KeyUsage::new().digital_signature().build()?)?,
            None => {}
        }
        b.sign(&key, MessageDigest::sha256())?;
        Ok(KeyPair {
            key,
            cert: b.build(),
        })
    }

    pub fn cert_pem(&self) -> Result<Vec<u8>, ErrorStack> {
        self.cert.to_pem()
    }

    pub fn key_pem(&self) -> Result<Vec<u8>, ErrorStack> {
        self.key.private_key_to_pem_pkcs8()
    }

    /// The private key followed by the certificate (what `decrypt --key` reads).
    pub fn key_and_cert_pem(&self) -> Result<Vec<u8>, ErrorStack> {
        let mut v = self.key_pem()?;
        v.extend_from_slice(&self.cert_pem()?);
        Ok(v)
    }

    /// This pair as a decryptor's key, named `label` in what it reports.
    pub fn entry(&self, label: &str) -> Result<PrivateKeyEntry, String> {
        let pem = self.key_and_cert_pem().map_err(|e| e.to_string())?;
        keys::from_pem(&pem, label).map_err(|e| e.to_string())
    }
}

/// The keys of `pairs`, each named by its certificate's serial.
pub fn ring(pairs: &[&KeyPair]) -> Result<KeyRing, String> {
    let mut ring = KeyRing::default();
    for p in pairs {
        let serial = p
            .cert
            .serial_number()
            .to_bn()
            .and_then(|b| b.to_dec_str())
            .map(|s| s.to_string())
            .map_err(|e| e.to_string())?;
        ring.push(p.entry(&format!("serial {serial}"))?);
    }
    Ok(ring)
}

/// What the receiver saw of one message.
#[derive(Debug, Clone)]
pub struct Received {
    pub request_id: String,
    pub content_type: String,
    pub soap_action: Option<String>,
    pub host: String,
    pub forwarded_for: Option<String>,
    /// Path and query.
    pub path: String,
    /// The message as it arrived.
    pub raw: Vec<u8>,
    /// The decrypted message, or why it could not be decrypted.
    pub decrypted: Result<String, String>,
    /// SHA-256 of the certificate whose key decrypted it.
    pub certificate: Option<String>,
    /// The names of the keys that decrypted it (see [`ring`]).
    pub key_sources: Vec<String>,
    /// Its signature checked after decryption, when the receiver was told
    /// which signing certificates it trusts ([`Receiver::trust`]).
    pub signature: Option<SignatureCheck>,
    pub chunked: bool,
    /// The whole body arrived (a request the sender aborted mid-body does not).
    pub complete: bool,
    /// When the request's head arrived.
    pub at: Instant,
}

/// How the receiver answers.
#[derive(Debug, Clone, Copy, Default)]
pub struct Answering {
    /// Answer 500 to a message it cannot decrypt, as a real receiver does (else 200
    /// to everything, for tests that look at what arrived).
    pub refuse_undecryptable: bool,
    /// Answer 500 to a message whose signature does not verify under a trusted
    /// certificate, once the receiver checks signatures.
    pub refuse_unverified: bool,
}

/// A SOAP receiver on a loopback port.
pub struct Receiver {
    pub addr: SocketAddr,
    /// Every message, in arrival order.
    pub received: Arc<Mutex<Vec<Received>>>,
    /// The keys it decrypts with; replace them to swap the receiver's key pair.
    pub keys: Arc<Mutex<KeyRing>>,
    /// Waited before answering (a slow receiver).
    pub delay: Arc<Mutex<Duration>>,
    /// The signing certificates it trusts; `None`: it does not check signatures.
    pub trusted: Arc<Mutex<Option<Vec<X509>>>>,
}

/// What the receiver answers when it accepted a message.
pub const RESPONSE: &str = r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><r:ok xmlns:r="urn:receiver"/></soap:Body></soap:Envelope>"#;

impl Receiver {
    /// Listen on 127.0.0.1, a free port, answering 200 to everything.
    pub async fn start(keys: KeyRing) -> std::io::Result<Receiver> {
        Receiver::start_with(keys, Answering::default()).await
    }

    /// Listen on 127.0.0.1, a free port, answering as `answering` says.
    pub async fn start_with(keys: KeyRing, answering: Answering) -> std::io::Result<Receiver> {
        Receiver::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), keys, answering).await
    }

    /// Listen on `addr`, answering as `answering` says.
    pub async fn start_on(
        addr: SocketAddr,
        keys: KeyRing,
        answering: Answering,
    ) -> std::io::Result<Receiver> {
        let listener = TcpListener::bind(addr).await?;
        let receiver = Receiver {
            addr: listener.local_addr()?,
            received: Arc::new(Mutex::new(Vec::new())),
            keys: Arc::new(Mutex::new(keys)),
            delay: Arc::new(Mutex::new(Duration::ZERO)),
            trusted: Arc::new(Mutex::new(None)),
        };
        let shared = (
            receiver.received.clone(),
            receiver.keys.clone(),
            receiver.delay.clone(),
            receiver.trusted.clone(),
        );
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let shared = shared.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let (received, keys, delay, trusted) = shared.clone();
                        async move {
                            let rec = receive(req, &keys, &trusted).await;
                            let unverified =
                                rec.signature.as_ref().is_some_and(|s| !s.is_verified());
                            let status = if (answering.refuse_undecryptable
                                && rec.decrypted.is_err())
                                || (answering.refuse_unverified && unverified)
                            {
                                StatusCode::INTERNAL_SERVER_ERROR
                            } else {
                                StatusCode::OK
                            };
                            lock(&received).push(rec);
                            let delay = *lock(&delay);
                            if !delay.is_zero() {
                                tokio::time::sleep(delay).await;
                            }
                            let mut resp =
                                Response::new(Full::new(Bytes::from_static(RESPONSE.as_bytes())));
                            *resp.status_mut() = status;
                            resp.headers_mut().insert(
                                "content-type",
                                http::HeaderValue::from_static("text/xml; charset=utf-8"),
                            );
                            resp.headers_mut()
                                .insert("x-receiver", http::HeaderValue::from_static("yes"));
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(receiver)
    }

    /// What it has received so far.
    pub fn received(&self) -> Vec<Received> {
        lock(&self.received).clone()
    }

    /// Hold `keys` from now on.
    pub fn hold(&self, keys: KeyRing) {
        *lock(&self.keys) = keys;
    }

    /// Trust these signing certificates from now on (and check signatures).
    pub fn trust(&self, certificates: Vec<X509>) {
        *lock(&self.trusted) = Some(certificates);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

async fn receive(
    req: Request<Incoming>,
    keys: &Mutex<KeyRing>,
    trusted: &Mutex<Option<Vec<X509>>>,
) -> Received {
    let header = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let mut rec = Received {
        request_id: header("x-request-id").unwrap_or_default(),
        content_type: header("content-type").unwrap_or_default(),
        soap_action: header("soapaction"),
        host: header("host").unwrap_or_default(),
        forwarded_for: header("x-forwarded-for"),
        path: req.uri().to_string(),
        raw: Vec::new(),
        decrypted: Err("empty body".into()),
        certificate: None,
        key_sources: Vec::new(),
        signature: None,
        chunked: header("transfer-encoding").is_some_and(|t| t.contains("chunked")),
        complete: false,
        at: Instant::now(),
    };
    let collected = req.into_body().collect().await;
    rec.complete = collected.is_ok();
    let body = collected.map(|b| b.to_bytes()).unwrap_or_default();
    rec.raw = body.to_vec();
    if !body.is_empty() {
        let keys = lock(keys);
        match crate::wss::decrypt::decrypt_document(&body, &keys) {
            Ok((plain, summary)) => {
                rec.decrypted = Ok(String::from_utf8_lossy(&plain).into_owned());
                rec.certificate = summary.certificates.first().cloned();
                rec.key_sources = summary.key_sources;
            }
            Err(e) => rec.decrypted = Err(e.to_string()),
        }
    }
    let trusted = lock(trusted).clone();
    if let Some(trusted) = trusted {
        // Checked as the receiver reads it: after decryption when it decrypted.
        let doc = match &rec.decrypted {
            Ok(plain) => plain.clone(),
            Err(_) => String::from_utf8_lossy(&rec.raw).into_owned(),
        };
        rec.signature = Some(verify::check(&doc, &trusted));
    }
    rec
}
