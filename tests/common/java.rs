//! The Maven project of tests/interop/java (WSS4J 3 and CXF 4 receivers): built
//! once per test binary into target/interop-java, run with one JVM per test.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub const KEYSTORE_PASSWORD: &str = "changeit";

// ---- the Maven project -----------------------------------------------------------

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
