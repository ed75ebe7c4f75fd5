//! Test helpers shared by the integration tests: throw-away receiver key pairs and
//! certificates, the corpus location, and running the independent decryptors.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use openssl::pkey::{PKey, Private};

pub mod gateway;
pub mod java;
pub use wssgate::receiver::CertSpec;
use wssgate::receiver::KeyPair;

/// A receiver key pair with its self-signed certificate (the library's kit, with
/// the conveniences tests want: no `Result` to unwrap at every call).
pub struct TestReceiver(pub KeyPair);

impl std::ops::Deref for TestReceiver {
    type Target = KeyPair;
    fn deref(&self) -> &KeyPair {
        &self.0
    }
}

impl TestReceiver {
    pub fn new(spec: &CertSpec) -> TestReceiver {
        TestReceiver(KeyPair::generate(spec).unwrap())
    }

    pub fn with_key(key: PKey<Private>, spec: &CertSpec) -> TestReceiver {
        TestReceiver(KeyPair::with_key(key, spec).unwrap())
    }

    pub fn cert_pem(&self) -> Vec<u8> {
        self.0.cert_pem().unwrap()
    }

    pub fn key_pem(&self) -> Vec<u8> {
        self.0.key_pem().unwrap()
    }

    /// PEM with the private key followed by the certificate (what `decrypt --key` reads).
    pub fn key_and_cert_pem(&self) -> Vec<u8> {
        self.0.key_and_cert_pem().unwrap()
    }

    pub fn recipient(&self) -> wssgate::wss::Recipient {
        wssgate::wss::Recipient::new(self.cert.clone()).unwrap()
    }

    pub fn key_ring(&self) -> wssgate::wss::keys::KeyRing {
        let mut ring = wssgate::wss::keys::KeyRing::default();
        ring.push(self.0.entry("test").unwrap());
        ring
    }

    /// Write key.pem, cert.pem and key+cert.pem into `dir`.
    pub fn write_to(&self, dir: &Path, stem: &str) -> (PathBuf, PathBuf, PathBuf) {
        let key = dir.join(format!("{stem}-key.pem"));
        let cert = dir.join(format!("{stem}-cert.pem"));
        let both = dir.join(format!("{stem}-both.pem"));
        std::fs::write(&key, self.key_pem()).unwrap();
        std::fs::write(&cert, self.cert_pem()).unwrap();
        std::fs::write(&both, self.key_and_cert_pem()).unwrap();
        (key, cert, both)
    }
}

/// A shared 2048-bit receiver: RSA key generation is slow in debug builds.
pub fn receiver() -> &'static TestReceiver {
    static R: std::sync::OnceLock<TestReceiver> = std::sync::OnceLock::new();
    R.get_or_init(|| TestReceiver::new(&CertSpec::default()))
}

/// A shared 2048-bit signer (the tenant's own key pair), distinct from the receiver.
pub fn signer() -> &'static TestReceiver {
    static S: std::sync::OnceLock<TestReceiver> = std::sync::OnceLock::new();
    S.get_or_init(|| {
        TestReceiver::new(&CertSpec {
            common_name: "tenant signer".into(),
            organization: "Example Tenant".into(),
            serial: 1919,
            ..CertSpec::default()
        })
    })
}

/// The tenant's next signing key pair (a signing key renewal adds it).
pub fn next_signer() -> &'static TestReceiver {
    static S: std::sync::OnceLock<TestReceiver> = std::sync::OnceLock::new();
    S.get_or_init(|| {
        TestReceiver::new(&CertSpec {
            common_name: "tenant signer 2".into(),
            organization: "Example Tenant".into(),
            serial: 1920,
            ..CertSpec::default()
        })
    })
}

/// The base64 DER of `key`'s certificate, as a BinarySecurityToken carries it.
pub fn bst_of(key: &TestReceiver) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(key.cert.to_der().unwrap())
}

/// Whether the message as recorded carries `key`'s certificate as its
/// BinarySecurityToken (the token the signature's KeyInfo names).
pub fn carries_token_of(message: &[u8], key: &TestReceiver) -> bool {
    let bst = bst_of(key);
    message.windows(bst.len()).any(|w| w == bst.as_bytes())
}

/// The signer as the engine takes it.
pub fn signing_key() -> wssgate::wss::SigningKey {
    let s = signer();
    wssgate::wss::SigningKey::new(s.key.clone(), s.cert.clone()).unwrap()
}

/// The orders a signed message can be made in, by name: signed only, and the
/// three ways of combining it with encryption.
pub fn sign_orders() -> Vec<(&'static str, Option<wssgate::wss::SignOrder>, bool)> {
    use wssgate::wss::SignOrder;
    vec![
        ("sign-only", None, false),
        ("sign-then-encrypt", Some(SignOrder::SignThenEncrypt), false),
        ("encrypt-then-sign", Some(SignOrder::EncryptThenSign), false),
        (
            "sign-then-encrypt+signature",
            Some(SignOrder::SignThenEncrypt),
            true,
        ),
    ]
}

/// Change one letter or digit of character data after `marker` (after the end
/// of the tag that contains it, outside any tag): a tampered wire byte that
/// leaves the XML well-formed.
pub fn tamper_after(message: &[u8], marker: &str) -> Option<Vec<u8>> {
    let at = memchr_find(message, marker.as_bytes())?;
    let gt = at + message[at..].iter().position(|&b| b == b'>')? + 1;
    let mut in_tag = false;
    let mut pos = None;
    for (i, &b) in message[gt..].iter().enumerate() {
        match b {
            b'<' => in_tag = true,
            b'>' => in_tag = false,
            _ if !in_tag && b.is_ascii_alphanumeric() => {
                pos = Some(gt + i);
                break;
            }
            _ => {}
        }
    }
    Some(tamper_at(message, pos?))
}

/// Copies of the signed message `bytes`, each with one byte changed in a place
/// its signature covers as it is on the wire, by name: the Timestamp's Expires
/// and Created, the `wsa:To` header when there is one, and the Body's
/// CipherValue when `body_encrypted_then_signed`. After sign-then-encrypt the
/// signed Body is the plaintext: a changed ciphertext would fail decryption
/// before the signature is looked at, which proves nothing about the signature.
pub fn tampered_copies(
    bytes: &[u8],
    body_encrypted_then_signed: bool,
) -> Vec<(&'static str, Vec<u8>)> {
    let text = String::from_utf8_lossy(bytes);
    let mut markers = vec![("Timestamp Expires", text.find("<wsu:Expires>"))];
    if let Some(at) = text.find("<wsa:To") {
        markers.push(("To", Some(at)));
    }
    if body_encrypted_then_signed {
        // The EncryptedKey's CipherValue comes first; the Body's is the last.
        markers.push(("Body", text.rfind("<xenc:CipherValue>")));
    }
    let mut changes = Vec::new();
    for (what, at) in markers {
        let at = at.unwrap_or_else(|| panic!("no {what} to change"));
        let changed = tamper_after(&bytes[at..], &text[at..at + 4])
            .unwrap_or_else(|| panic!("nothing to change in {what}"));
        changes.push((what, [&bytes[..at], &changed[..]].concat()));
    }
    // Created's first digit is the year's, and a receiver refuses a message
    // created in the future before it looks at the signature: change the
    // seconds (`YYYY-MM-DDTHH:MM:SS`, the 19th character), so the Timestamp
    // stays valid and only the signature can tell.
    let created = text.find("<wsu:Created>").expect("a Created") + "<wsu:Created>".len();
    assert_eq!(&text[created + 16..created + 17], ":", "Created's form");
    changes.push(("Timestamp Created", tamper_at(bytes, created + 18)));
    changes
}

/// Change the byte at `pos`: a digit stays a digit (a Timestamp stays a valid
/// time: only the signature can tell), a letter a letter.
pub fn tamper_at(message: &[u8], pos: usize) -> Vec<u8> {
    let mut out = message.to_vec();
    out[pos] = match out[pos] {
        b'9' => b'0',
        d @ b'0'..=b'8' => d + 1,
        b'A' => b'B',
        _ => b'A',
    };
    out
}

fn memchr_find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The repository's test data directory.
pub fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

/// The SOAP corpus kept in the repository.
pub fn corpus_files() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(data_dir().join("soap"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "xml"))
        .collect();
    v.sort();
    v
}

/// The Python interpreter that has python3-xmlsec (Debian's).
pub fn python() -> &'static str {
    "/usr/bin/python3"
}

/// Run a helper script under tests/interop and return its stdout parsed as JSON.
pub fn run_interop_script(script: &str, args: &[&str]) -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/interop")
        .join(script);
    let out = std::process::Command::new(python())
        .arg(&path)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {}: {e} (install python3-xmlsec: see README)",
                path.display()
            )
        });
    assert!(
        out.status.success(),
        "{script} failed: {}\n(install xmlsec1 and python3-xmlsec: see README)",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("script output is JSON")
}

// ---- the daemon and a receiver that decrypts, on port 0 ------------------------

pub mod net {
    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::time::Duration;

    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper::Request;
    use hyper_util::rt::TokioExecutor;
    use tokio::net::TcpListener;
    use tokio::sync::mpsc;
    use wssgate::signal::Intent;
    use wssgate::state::Shared;

    #[allow(unused_imports)]
    pub use wssgate::receiver::{RESPONSE, Received, Receiver};

    /// An upstream that reads each request whole and records only its size: for
    /// tests about what reaches the receiver, not what the receiver makes of it.
    pub async fn recording_upstream() -> (SocketAddr, Arc<std::sync::Mutex<Vec<usize>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let sizes = Arc::new(std::sync::Mutex::new(Vec::new()));
        let recorded = sizes.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let recorded = recorded.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |request: hyper::Request<hyper::body::Incoming>| {
                            let recorded = recorded.clone();
                            async move {
                                let body = request.into_body().collect().await;
                                let size = body.map_or(0, |b| b.to_bytes().len());
                                recorded.lock().unwrap().push(size);
                                Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                                    Bytes::from_static(b"<ok/>"),
                                )))
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        (addr, sizes)
    }

    /// A running daemon with its state, on port 0.
    pub struct Daemon {
        pub addr: SocketAddr,
        pub admin: SocketAddr,
        pub shared: Arc<Shared>,
        pub gates: Arc<wssgate::proxy::gate::Gates>,
        pub control: Arc<wssgate::control::Control>,
        pub intents: mpsc::Sender<Intent>,
        pub task: tokio::task::JoinHandle<()>,
        pub dir: tempfile::TempDir,
    }

    /// Tokens written for every test daemon, by role.
    pub const TOKENS: [(&str, &str, &str); 4] = [
        ("reader", "read", "read-token-0123456789"),
        ("ops", "operator", "operator-token-0123456789"),
        ("keyadmin", "keys", "keys-token-0123456789"),
        ("root", "admin", "admin-token-0123456789"),
    ];

    impl Daemon {
        /// Start with `config` (TOML; `{dir}` is replaced by the daemon's directory)
        /// and the given alias certificates in the keystore.
        pub async fn start(config: &str, certificates: &[(&str, Vec<u8>)]) -> Daemon {
            let dir = tempfile::tempdir().unwrap();
            Daemon::start_in(dir, config, certificates).await
        }

        /// Start in an existing directory (a restart keeps its state).
        pub async fn start_in(
            dir: tempfile::TempDir,
            config: &str,
            certificates: &[(&str, Vec<u8>)],
        ) -> Daemon {
            Daemon::start_with(dir, config, "", certificates).await
        }

        /// Start with extra lines for the `[admin]` section.
        pub async fn start_with(
            dir: tempfile::TempDir,
            config: &str,
            admin_extra: &str,
            certificates: &[(&str, Vec<u8>)],
        ) -> Daemon {
            super::write_keystore(dir.path(), certificates);
            let mut tokens = String::from("\n[admin]\nlisten = \"127.0.0.1:0\"\ntokens = [\n");
            for (name, role, token) in TOKENS {
                super::write_secret(
                    &dir.path().join(format!("{name}.token")),
                    format!("{token}\n"),
                );
                tokens.push_str(&format!("  {{ name = \"{name}\", role = \"{role}\", file = \"{{dir}}/{name}.token\" }},\n"));
            }
            tokens.push_str("]\n");
            tokens.push_str(admin_extra);
            tokens.push('\n');
            let config = if config.contains("[admin]") {
                config.to_string()
            } else {
                format!("{tokens}{config}")
            };
            let path = dir.path().join("wssgate.toml");
            std::fs::write(&path, config.replace("{dir}", dir.path().to_str().unwrap())).unwrap();
            let daemon = wssgate::daemon::Daemon::load(&path).await.unwrap();
            let (shared, gates, control) = (
                daemon.shared.clone(),
                daemon.gates.clone(),
                daemon.control.clone(),
            );
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let admin_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let admin = admin_listener.local_addr().unwrap();
            let (intents, rx) = mpsc::channel(8);
            let task = tokio::spawn(async move {
                daemon.run(listener, admin_listener, rx).await.unwrap();
            });
            Daemon {
                addr,
                admin,
                shared,
                gates,
                control,
                intents,
                task,
                dir,
            }
        }

        pub fn url(&self, path: &str) -> String {
            format!("http://{}{path}", self.addr)
        }

        pub fn admin_url(&self, path: &str) -> String {
            format!("http://{}{path}", self.admin)
        }

        /// SIGHUP, as the daemon handles it; returns once the reload ran.
        pub async fn reload(&self) -> Result<u64, String> {
            self.control
                .reload(wssgate::state::ReloadTrigger::Signal, None)
                .await
                .map(|o| o.generation)
                .map_err(|e| e.to_string())
        }

        /// The operator's `POST /v1/routes/orders/{action}` (`pause`, `pause?wait=10`, `resume`).
        pub async fn operate(&self, action: &str) -> (u16, serde_json::Value) {
            let path = format!("/v1/routes/orders/{action}");
            self.admin_call("POST", &path, Some("operator"), b"").await
        }

        /// The keystore administrator's `PUT /v1/keystore/orders-receiver` of `pem`.
        pub async fn exchange(&self, pem: &[u8]) -> (u16, serde_json::Value) {
            self.admin_call("PUT", "/v1/keystore/orders-receiver", Some("keys"), pem)
                .await
        }

        /// The typed admin client with the token of `role`.
        pub fn client(&self, role: &str) -> wssgate::admin::client::AdminClient {
            let token = TOKENS.iter().find(|t| t.1 == role).unwrap().2;
            wssgate::admin::client::AdminClient::with_token(&self.admin_url(""), token).unwrap()
        }

        /// Call the admin API with the token of `role` ("read", "operator", "keys", "admin").
        pub async fn admin_call(
            &self,
            method: &str,
            path: &str,
            role: Option<&str>,
            body: &[u8],
        ) -> (u16, serde_json::Value) {
            let mut req = Request::builder().method(method).uri(self.admin_url(path));
            if let Some(role) = role {
                let token = TOKENS.iter().find(|t| t.1 == role).unwrap().2;
                req = req.header("authorization", format!("Bearer {token}"));
            }
            let resp = client()
                .request(req.body(Full::new(Bytes::copy_from_slice(body))).unwrap())
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let bytes = resp.into_body().collect().await.unwrap().to_bytes();
            (
                status,
                serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
            )
        }
    }

    /// `wssgate serve` as a process, on port 0: the addresses it logged it bound.
    pub struct ServeProcess {
        pub addr: SocketAddr,
        pub admin: SocketAddr,
        pub dir: tempfile::TempDir,
        pub child: super::KillOnDrop,
    }

    impl ServeProcess {
        /// Run `wssgate serve` on `config` (as [`Daemon::start_in`] writes it, the
        /// test tokens included) in `dir`, with the alias certificates given.
        pub fn start(
            dir: tempfile::TempDir,
            config: &str,
            certificates: &[(&str, Vec<u8>)],
        ) -> ServeProcess {
            use std::io::BufRead;
            super::write_keystore(dir.path(), certificates);
            let mut text = String::from("[admin]\nlisten = \"127.0.0.1:0\"\ntokens = [\n");
            for (name, role, token) in TOKENS {
                super::write_secret(
                    &dir.path().join(format!("{name}.token")),
                    format!("{token}\n"),
                );
                text.push_str(&format!(
                    "  {{ name = \"{name}\", role = \"{role}\", file = \"{{dir}}/{name}.token\" }},\n"
                ));
            }
            text.push_str("]\n");
            text.push_str(config);
            let path = dir.path().join("wssgate.toml");
            std::fs::write(&path, text.replace("{dir}", dir.path().to_str().unwrap())).unwrap();
            let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_wssgate"))
                .args([
                    "serve",
                    "-c",
                    path.to_str().unwrap(),
                    "--log-format",
                    "json",
                ])
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            let stderr = child.stderr.take().unwrap();
            let child = super::KillOnDrop(child);
            // Its log read on a thread of its own, drained to the end so that it
            // never blocks on a full pipe.
            let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stderr)
                    .lines()
                    .map_while(Result::ok)
                {
                    let _ = lines_tx.send(line);
                }
            });
            let (mut addr, mut admin) = (None, None);
            while addr.is_none() || admin.is_none() {
                let line = lines
                    .recv_timeout(Duration::from_secs(30))
                    .expect("serve logs where it listens");
                // The log line is the wire format here: read its two fields.
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue;
                };
                let field = |k: &str| v[k].as_str().map(str::to_string);
                match field("message").as_deref() {
                    Some("proxy listening") => addr = field("addr"),
                    Some("admin API listening") => admin = field("addr"),
                    _ => {}
                }
            }
            ServeProcess {
                addr: addr.unwrap().parse().unwrap(),
                admin: admin.unwrap().parse().unwrap(),
                dir,
                child,
            }
        }

        /// The typed admin client with the token of `role`.
        pub fn client(&self, role: &str) -> wssgate::admin::client::AdminClient {
            let token = TOKENS.iter().find(|t| t.1 == role).unwrap().2;
            wssgate::admin::client::AdminClient::with_token(
                &format!("http://{}", self.admin),
                token,
            )
            .unwrap()
        }
    }

    /// One request of [`clients`]: its id (sent as X-Request-Id), when it was
    /// sent and answered, and the status (0 when no answer came).
    pub struct Sent {
        pub id: String,
        pub start: std::time::Instant,
        pub end: std::time::Instant,
        pub status: u16,
    }

    /// `n` clients POSTing `body` to /orders until `stop`, `pause` between requests;
    /// request ids are `{prefix}{client}-{i}`.
    pub fn clients(
        daemon: &Arc<Daemon>,
        stop: &Arc<std::sync::atomic::AtomicBool>,
        n: usize,
        prefix: &str,
        pause: Duration,
        body: &'static str,
    ) -> Vec<tokio::task::JoinHandle<Vec<Sent>>> {
        clients_to(&daemon.url("/orders"), stop, n, prefix, pause, body)
    }

    /// [`clients`] POSTing to `url`.
    pub fn clients_to(
        url: &str,
        stop: &Arc<std::sync::atomic::AtomicBool>,
        n: usize,
        prefix: &str,
        pause: Duration,
        body: &'static str,
    ) -> Vec<tokio::task::JoinHandle<Vec<Sent>>> {
        (0..n)
            .map(|c| {
                let (url, stop, client) = (url.to_string(), stop.clone(), client());
                let prefix = prefix.to_string();
                tokio::spawn(async move {
                    let mut out = Vec::new();
                    let mut i = 0;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let id = format!("{prefix}{c}-{i}");
                        let request = Request::post(&url)
                            .header("content-type", "text/xml")
                            .header("x-request-id", &id)
                            .body(Full::new(Bytes::from_static(body.as_bytes())))
                            .unwrap();
                        let start = std::time::Instant::now();
                        let status = client
                            .request(request)
                            .await
                            .map(|r| r.status().as_u16())
                            .unwrap_or(0);
                        out.push(Sent {
                            id,
                            start,
                            end: std::time::Instant::now(),
                            status,
                        });
                        i += 1;
                        tokio::time::sleep(pause).await;
                    }
                    out
                })
            })
            .collect()
    }

    /// The configuration of one route to `upstream`.
    pub fn config(upstream: &str, extra_route: &str, extra_proxy: &str) -> String {
        format!(
            r#"[proxy]
listen = "127.0.0.1:0"
upstream_timeout = "5s"
shutdown_grace = "5s"
drain_delay = "200ms"
{extra_proxy}
[keystore]
dir = "{{dir}}/keystore"
state_dir = "{{dir}}/var"

[[route]]
name = "orders"
path = "/orders"
upstream = "{upstream}"
alias = "orders-receiver"
{extra_route}
"#
        )
    }

    /// The configuration of the `/orders` route to `upstream` signing with the
    /// key ring `tenant` (`{dir}/private/tenant.pem`), then encrypting.
    pub fn signing_config(upstream: &str) -> String {
        config(upstream, "sign = true\nsigning_ring = \"tenant\"", "").replace(
            "[keystore]\n",
            "[keystore]\nprivate_dir = \"{dir}/private\"\n",
        )
    }

    /// A daemon whose `/orders` route signs with key ring `tenant`, holding
    /// `key`, and encrypts for the shared receiver.
    pub async fn start_signing(upstream: &str, key: &super::TestReceiver) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        super::write_ring(dir.path(), "tenant", key);
        Daemon::start_in(
            dir,
            &signing_config(upstream),
            &[("orders-receiver", super::receiver().cert_pem())],
        )
        .await
    }

    /// The configuration of one decrypt route `/inbound` to `upstream`, with the
    /// key ring `tenant` (`{dir}/private/tenant.pem`).
    pub fn decrypt_config(upstream: &str, extra_route: &str, extra_proxy: &str) -> String {
        format!(
            r#"[proxy]
listen = "127.0.0.1:0"
upstream_timeout = "5s"
shutdown_grace = "5s"
drain_delay = "200ms"
{extra_proxy}
[keystore]
dir = "{{dir}}/keystore"
private_dir = "{{dir}}/private"
state_dir = "{{dir}}/var"

[[route]]
name = "inbound"
path = "/inbound"
upstream = "{upstream}"
mode = "decrypt"
ring = "tenant"
{extra_route}
"#
        )
    }

    pub type Client = hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Full<Bytes>,
    >;

    pub fn client() -> Client {
        hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http()
    }

    /// POST `body` and return status, headers and body.
    pub async fn post(
        client: &Client,
        url: &str,
        content_type: &str,
        body: &[u8],
    ) -> (u16, http::HeaderMap, String) {
        let req = Request::post(url)
            .header("content-type", content_type)
            .header("soapaction", "\"urn:submit\"")
            .body(Full::new(Bytes::copy_from_slice(body)))
            .unwrap();
        let resp = client.request(req).await.expect("the daemon answers");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, headers, String::from_utf8_lossy(&body).into_owned())
    }
}

/// A TLS server answering 200 to everything, for upstream TLS tests.
pub mod tls {
    use std::net::SocketAddr;

    use openssl::ssl::{SslAcceptor, SslMethod};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    pub async fn start_tls_server(identity: &super::TestReceiver) -> SocketAddr {
        let mut acceptor = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server()).unwrap();
        acceptor.set_private_key(&identity.key).unwrap();
        acceptor.set_certificate(&identity.cert).unwrap();
        let acceptor = std::sync::Arc::new(acceptor.build());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let ssl = openssl::ssl::Ssl::new(acceptor.context()).unwrap();
                    let mut stream = tokio_openssl::SslStream::new(ssl, stream).unwrap();
                    if std::pin::Pin::new(&mut stream).accept().await.is_err() {
                        return;
                    }
                    let mut buf = vec![0u8; 1 << 20];
                    let mut got = Vec::new();
                    // Read the request head and a Content-Length body.
                    loop {
                        let n = stream.read(&mut buf).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        got.extend_from_slice(&buf[..n]);
                        if super::http_message_complete(&got) {
                            break;
                        }
                    }
                    let body = super::net::RESPONSE;
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: text/xml\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(resp.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        addr
    }
}

/// Send raw bytes over TCP and read what comes back until the server closes or
/// `timeout` passes. Write errors are ignored: a server may answer early (413)
/// and close before the whole request was written.
pub async fn raw_exchange(
    addr: std::net::SocketAddr,
    request: &[u8],
    timeout: std::time::Duration,
) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut reader, mut writer) = stream.split();
    let write = async {
        for chunk in request.chunks(64 * 1024) {
            if writer.write_all(chunk).await.is_err() {
                break;
            }
        }
    };
    // Read until one whole response (head and Content-Length body) is in, the
    // server closes, or `timeout` passes.
    let read = async {
        let mut out = Vec::new();
        let _ = tokio::time::timeout(timeout, async {
            let mut buf = [0u8; 16 * 1024];
            loop {
                match reader.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => out.extend_from_slice(&buf[..n]),
                }
                if http_message_complete(&out) {
                    return;
                }
            }
        })
        .await;
        out
    };
    let ((), out) = tokio::join!(write, read);
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether `bytes` hold a whole HTTP/1.1 message: a head and, when it has a
/// Content-Length, that many body bytes.
pub fn http_message_complete(bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(bytes);
    let Some(end) = text.find("\r\n\r\n") else {
        return false;
    };
    let len = text[..end]
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
        })
        .unwrap_or(0);
    bytes.len() >= end + 4 + len
}

/// Wait until `done` holds, checking every 20 ms, for at most `within`. The caller
/// asserts afterwards, so a timeout shows as the assertion that failed.
pub async fn eventually(within: std::time::Duration, mut done: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + within;
    while !done().await && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A loopback port free at the time of asking (for a process that binds it itself).
/// Write a secret (a token file) readable by its owner only, as `serve` wants it.
pub fn write_secret(path: &std::path::Path, contents: impl AsRef<[u8]>) {
    wssgate::keystore::files::write_private(path, contents.as_ref()).unwrap();
}

/// A keystore directory `dir/keystore` holding each alias's certificate.
pub fn write_keystore(dir: &std::path::Path, certificates: &[(&str, Vec<u8>)]) {
    std::fs::create_dir_all(dir.join("keystore")).unwrap();
    for (alias, pem) in certificates {
        std::fs::write(dir.join(format!("keystore/{alias}.pem")), pem).unwrap();
    }
}

/// A key ring `dir/private/RING.pem` (key and certificate, mode 0600), as
/// `keystore.private_dir = "{dir}/private"` reads it.
pub fn write_ring(dir: &std::path::Path, ring: &str, key: &TestReceiver) {
    std::fs::create_dir_all(dir.join("private")).unwrap();
    write_secret(
        &dir.join(format!("private/{ring}.pem")),
        key.key_and_cert_pem(),
    );
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Send `name` (`"HUP"`, `"TERM"`) to process `pid`, as an operator's `kill` does.
#[allow(dead_code)]
pub fn signal(name: &str, pid: u32) {
    let sent = std::process::Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(sent.success(), "kill -{name} {pid}: {sent}");
}

/// A child process killed (SIGKILL) when dropped, also when an assertion fails first.
pub struct KillOnDrop(pub std::process::Child);

impl KillOnDrop {
    /// Stops the daemon as an operator does (SIGTERM) and waits for it to exit, so
    /// what it logs on the way out (and what its log writer still holds) is written;
    /// SIGKILL after 10 s. A test that reads the log after the daemon stops ends it
    /// this way: SIGKILL loses the lines of the last log-writer interval.
    #[allow(dead_code)]
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        signal("TERM", self.0.id());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status;
            }
            if std::time::Instant::now() > deadline {
                let _ = self.0.kill();
                return self.0.wait().unwrap();
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The `<wssgate:code>` of a wssgate SOAP Fault, or "" for any other answer.
pub fn fault_code(answer: &str) -> &str {
    answer
        .split_once("<wssgate:code>")
        .and_then(|(_, rest)| rest.split_once("</wssgate:code>"))
        .map_or("", |(code, _)| code)
}

/// Gives at most `step` bytes per read: splits every token of the input, as a
/// slow client's request arrives.
pub struct Trickle<'a> {
    pub data: &'a [u8],
    pub step: usize,
}

impl std::io::Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.step.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}
