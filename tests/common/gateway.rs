//! `wssgate serve` as a process in front of the services of a test, and a
//! client for it that speaks HTTP/1.0 (the answer ends with the connection).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// `wssgate serve` as a process, killed when dropped.
pub struct Gateway {
    child: Child,
    /// The proxy listener's address, as the daemon logged it.
    pub addr: String,
}

impl Gateway {
    pub fn start(config: &Path, log: &Path) -> Gateway {
        let mut child = Command::new(env!("CARGO_BIN_EXE_wssgate"))
            .args(["serve", "--log-format", "json", "-c"])
            .arg(config)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let log = log.to_path_buf();
        std::thread::spawn(move || {
            let mut file = std::fs::File::create(log).unwrap();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = writeln!(file, "{line}");
                if line.contains("proxy listening") {
                    let _ = tx.send(line);
                }
            }
        });
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("wssgate serve logs its listening address");
        let event: serde_json::Value = serde_json::from_str(&line).unwrap();
        Gateway {
            addr: event["addr"].as_str().unwrap().to_string(),
            child,
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// POST over HTTP/1.0 (the answer ends with the connection): status and body.
pub fn post(addr: &str, path: &str, soap12: bool, body: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let version_headers = if soap12 {
        "Content-Type: application/soap+xml; charset=utf-8\r\n"
    } else {
        "Content-Type: text/xml; charset=utf-8\r\nSOAPAction: \"\"\r\n"
    };
    write!(
        stream,
        "POST {path} HTTP/1.0\r\nHost: {addr}\r\n{version_headers}Content-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    stream.write_all(body).unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, body.to_string())
}
