//! The Maven project tests/interop/java (WSS4J 3, CXF 4), built once per test
//! binary: resolved into target/interop-java/m2, offline after the first time;
//! its CXF services as a process, the service's key, and what its services
//! answer.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use openssl::x509::X509;
use wssgate::receiver::{CertSpec, KeyPair};
use wssgate::wss::Recipient;

pub const KEYSTORE_PASSWORD: &str = "changeit";

pub fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Where the Maven project keeps its build and its local repository (see pom.xml).
pub fn maven_target() -> PathBuf {
    manifest_dir().join("target/interop-java")
}

/// The compiled harness: the classpath to run `wssgate.interop.Harness` with.
pub struct Harness {
    classpath: String,
}

/// Build the harness once per test binary; `None` when Maven is not installed.
pub fn harness() -> Option<&'static Harness> {
    static BUILT: OnceLock<Option<Harness>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            if Command::new("mvn").arg("-v").output().is_err() {
                // Straight to standard error: the test harness would swallow eprintln!
                // of a passing test.
                let _ = writeln!(
                    std::io::stderr(),
                    "SKIPPED: mvn is not installed, so the WSS4J 3 / CXF 4 interop tests did not \
                     run (scripts/install-test-deps installs default-jdk-headless and maven)"
                );
                return None;
            }
            let project = manifest_dir().join("tests/interop/java");
            let classpath_file = maven_target().join("classpath.txt");
            let mvn = |offline: bool| {
                let mut cmd = Command::new("mvn");
                cmd.current_dir(&project)
                    .args(["-B", "-q", "-s", "settings.xml"]);
                if offline {
                    cmd.arg("-o");
                }
                cmd.arg(format!(
                    "-Dmaven.repo.local={}",
                    maven_target().join("m2").display()
                ))
                .args(["compile", "dependency:build-classpath"])
                .arg(format!("-Dmdep.outputFile={}", classpath_file.display()))
                .output()
                .expect("mvn runs")
            };
            // Offline first: after the first resolution nothing is downloaded again.
            let mut out = mvn(true);
            if !out.status.success() {
                out = mvn(false);
            }
            assert!(
                out.status.success(),
                "building tests/interop/java failed:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            let dependencies = std::fs::read_to_string(&classpath_file).unwrap();
            Some(Harness {
                classpath: format!(
                    "{}:{}",
                    maven_target().join("build/classes").display(),
                    dependencies.trim()
                ),
            })
        })
        .as_ref()
}

impl Harness {
    pub fn java(&self, mode: &str, keystore: &Path) -> Command {
        let mut cmd = Command::new("java");
        cmd.arg("-cp")
            .arg(&self.classpath)
            .arg("wssgate.interop.Harness")
            .arg(mode)
            .arg(keystore)
            .arg(KEYSTORE_PASSWORD);
        cmd
    }
}

/// The shared test receiver's key (`common::receiver()`) under the alias
/// "receiver" in a PKCS#12 keystore in `dir`, as the harness reads it.
pub fn receiver_keystore(dir: &Path) -> PathBuf {
    let rx = super::receiver();
    let p12 = openssl::pkcs12::Pkcs12::builder()
        .name("receiver")
        .pkey(&rx.key)
        .cert(&rx.cert)
        .build2(KEYSTORE_PASSWORD)
        .unwrap();
    let path = dir.join("receiver.p12");
    std::fs::write(&path, p12.to_der().unwrap()).unwrap();
    path
}

/// Whether a WSS4J refusal (the harness's reason) is the signature's — its
/// value, a digest, the trust in its certificate — and not a broken message (the
/// streaming receiver says only that verifying failed).
pub fn refused_for_signature(reason: &str) -> bool {
    let reason = reason.to_ascii_lowercase();
    [
        "signature",
        "digest",
        "when verifying the message",
        "trust",
        "certificate",
    ]
    .iter()
    .any(|r| reason.contains(r))
}

/// The lines of the harness's `verify` report (two per case, DOM then
/// streaming: `receiver\tname\tok|refused\tparts-or-reason`) that are not as
/// `cases` expect: each case's name and the parts it must be verified with
/// (`None`: refused, for the signature).
pub fn unexpected_verdicts<'a>(
    stdout: &str,
    cases: impl ExactSizeIterator<Item = (&'a str, Option<&'a [&'static str]>)>,
) -> Vec<String> {
    let cases: Vec<_> = cases.collect();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2 * cases.len(), "every case reported twice");
    let mut wrong = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let (name, signed) = cases[i / 2];
        let f: Vec<&str> = line.splitn(4, '\t').collect();
        assert_eq!(f[1], name);
        let detail = f.get(3).copied().unwrap_or("");
        let as_expected = match signed {
            // The streaming receiver reports what is signed in document order.
            Some(want) => {
                let mut want = want.to_vec();
                let mut got: Vec<&str> = detail.split(',').collect();
                want.sort_unstable();
                got.sort_unstable();
                f[2] == "ok" && got == want
            }
            // Refused for the signature, not for a broken message.
            None => f[2] == "refused" && refused_for_signature(detail),
        };
        if !as_expected {
            wrong.push(line.to_string());
        }
    }
    wrong
}

// ---- the CXF services ------------------------------------------------------------

/// The service's key pair and certificate (the library's throw-away kind); the
/// issuer's `O` holds a comma, so the RFC 2253 and WCF forms of issuer-serial differ.
pub struct ServiceKey(pub KeyPair);

impl ServiceKey {
    pub fn new() -> ServiceKey {
        let spec = CertSpec {
            common_name: "orders-service".into(),
            serial: 271_828,
            ..CertSpec::default()
        };
        assert!(spec.organization.contains(','));
        ServiceKey(KeyPair::generate(&spec).unwrap())
    }

    pub fn cert(&self) -> &X509 {
        &self.0.cert
    }

    pub fn recipient(&self) -> Recipient {
        Recipient::new(self.0.cert.clone()).unwrap()
    }

    /// A PKCS#12 keystore with the key under the alias "receiver".
    pub fn write_keystore(&self, dir: &Path) -> PathBuf {
        let p12 = openssl::pkcs12::Pkcs12::builder()
            .name("receiver")
            .pkey(&self.0.key)
            .cert(&self.0.cert)
            .build2(KEYSTORE_PASSWORD)
            .unwrap();
        let path = dir.join("receiver.p12");
        std::fs::write(&path, p12.to_der().unwrap()).unwrap();
        path
    }
}

/// The CXF services of the harness in `serve` mode (tests/interop/java,
/// Services.java and SignedServices.java); stopped when dropped (its standard input closes).
pub struct CxfServices {
    child: Child,
    stdin: Option<ChildStdin>,
    pub port: u16,
    /// Every service's path, as the harness printed them.
    pub paths: Vec<String>,
}

impl CxfServices {
    /// With `signer` (a certificate PEM) the signing services are published too,
    /// trusting that certificate's signatures only.
    pub fn start(
        harness: &Harness,
        keystore: &Path,
        signer: Option<&Path>,
        log: &Path,
    ) -> CxfServices {
        let mut java = harness.java("serve", keystore);
        java.args(signer);
        let mut child = java
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let fields: Vec<&str> = line.trim_end().split('\t').collect();
        assert_eq!(
            fields.first(),
            Some(&"listening"),
            "CXF services did not start: {line:?}\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        CxfServices {
            port: fields[1].parse().unwrap(),
            paths: fields[2].split(',').map(str::to_string).collect(),
            child,
            stdin,
        }
    }
}

impl Drop for CxfServices {
    fn drop(&mut self) {
        drop(self.stdin.take());
        for _ in 0..100 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The payload every request carries, in exclusive-C14N form already: the service
/// answers with the C14N of what it decrypted, which must be these bytes.
pub const PAYLOAD: &str = r#"<ord:submit xmlns:ord="urn:orders" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="ord:Order"><ord:id>42</ord:id><ord:note>a &amp; b &lt; c</ord:note></ord:submit>"#;

pub fn envelope(soap12: bool) -> String {
    let ns = if soap12 {
        "http://www.w3.org/2003/05/soap-envelope"
    } else {
        "http://schemas.xmlsoap.org/soap/envelope/"
    };
    // The payload's namespaces are declared on the Envelope: wssgate redeclares them.
    let payload = PAYLOAD.replace(
        r#" xmlns:ord="urn:orders" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance""#,
        "",
    );
    format!(
        r#"<soap:Envelope xmlns:soap="{ns}" xmlns:ord="urn:orders" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soap:Header/><soap:Body>{payload}</soap:Body></soap:Envelope>"#
    )
}

/// What an Orders service answered it received (the base64 in `<ord:received>`),
/// decoded; `None` when the answer holds none (a fault).
pub fn received(body: &str) -> Option<String> {
    body.split_once("<ord:received xmlns:ord=\"urn:orders\">")
        .and_then(|(_, rest)| rest.split_once("</ord:received>"))
        .and_then(|(b64, _)| B64.decode(b64).ok())
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
}

/// The fault string of a SOAP 1.1 or 1.2 fault, for messages.
pub fn fault_text(body: &str) -> String {
    for (open, close) in [
        ("<faultstring>", "</faultstring>"),
        ("<soap:Text xml:lang=\"en\">", "</soap:Text>"),
    ] {
        if let Some((_, rest)) = body.split_once(open)
            && let Some((text, _)) = rest.split_once(close)
        {
            return text.replace('\n', " ");
        }
    }
    body.chars().take(300).collect()
}
