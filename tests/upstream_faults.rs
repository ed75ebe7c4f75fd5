//! Upstream faults injected by misbehaving receivers: each maps to its fault
//! code, no connection or file descriptor is leaked (counted before and after),
//! and the daemon serves normally afterwards.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::fault_code;
use common::net::{self, Daemon, Receiver};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const BODY: &str = r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><m:ping xmlns:m="urn:m">1</m:ping></soap:Body></soap:Envelope>"#;
const ROUNDS: usize = 20;

#[derive(Clone, Copy, Debug)]
enum Misbehaviour {
    /// Accept, then close without reading.
    Refuse,
    /// Read the request, then reset the connection (SO_LINGER 0).
    ResetBeforeAnswer,
    /// Send a response head promising 1000 bytes, 10 of them, then reset.
    ResetMidResponse,
    /// Answer bytes that are not HTTP.
    Garbage,
    /// Read the request and never answer, until the connection is closed.
    Silent,
}

async fn misbehaving(kind: Misbehaviour) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                if !matches!(kind, Misbehaviour::Refuse) {
                    // Read the head and the body (small requests: one or two reads).
                    let mut seen = Vec::new();
                    while !common::http_message_complete(&seen) {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => seen.extend_from_slice(&buf[..n]),
                        }
                    }
                }
                match kind {
                    Misbehaviour::Refuse => {}
                    Misbehaviour::ResetBeforeAnswer => {
                        let _ = stream.set_zero_linger();
                    }
                    Misbehaviour::ResetMidResponse => {
                        let _ = stream
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: 1000\r\n\r\n<soap:Env")
                            .await;
                        let _ = stream.flush().await;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        let _ = stream.set_zero_linger();
                    }
                    Misbehaviour::Garbage => {
                        let _ = stream
                            .write_all(b"SSH-2.0-OpenSSH_9.2\r\nnot http at all\r\n\r\n")
                            .await;
                        let _ = stream.flush().await;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Misbehaviour::Silent => {
                        // Never answer; hold the connection until wssgate drops it
                        // (this stub's descriptors are counted too).
                        while let Ok(n) = stream.read(&mut buf).await {
                            if n == 0 {
                                break;
                            }
                        }
                    }
                }
            });
        }
    });
    addr
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// POST and return the status, or 0 when the answer broke off (the client sees
/// the upstream's reset passed on).
async fn post_status(url: &str) -> (u16, String) {
    let request = http::Request::post(url)
        .header("content-type", "text/xml")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(
            BODY.as_bytes(),
        )))
        .unwrap();
    // A fresh client each time: the test counts the daemon's descriptors, not a pool's.
    let client = net::client();
    let Ok(response) = client.request(request).await else {
        return (0, String::new());
    };
    let status = response.status().as_u16();
    use http_body_util::BodyExt;
    match response.into_body().collect().await {
        Ok(b) => (status, String::from_utf8_lossy(&b.to_bytes()).into_owned()),
        Err(_) => (0, String::new()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_upstream_fault_has_its_code_and_leaks_nothing() {
    let rx = common::receiver();
    let good = Receiver::start(rx.key_ring()).await.unwrap();
    // Bound and not listening, for the whole test: connections to it are
    // refused, and the port cannot be handed to anything else meanwhile (a
    // port freed at once went to this test's own daemon now and then, which
    // answered 404 in place of the refused connection).
    let down_socket = tokio::net::TcpSocket::new_v4().unwrap();
    down_socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let down = down_socket.local_addr().unwrap();
    let tls_identity = common::TestReceiver::new(&common::CertSpec {
        serial: 4242,
        common_name: "127.0.0.1".into(),
        ..common::CertSpec::default()
    });
    let tls = common::tls::start_tls_server(&tls_identity).await;
    let faults: Vec<(&str, String, u16, &str)> = vec![
        (
            "down",
            format!("http://{down}/s"),
            502,
            "upstream-unreachable",
        ),
        (
            "refusing",
            format!("http://{}/s", misbehaving(Misbehaviour::Refuse).await),
            502,
            "upstream-unreachable",
        ),
        (
            "reset before answering",
            format!(
                "http://{}/s",
                misbehaving(Misbehaviour::ResetBeforeAnswer).await
            ),
            502,
            "upstream-unreachable",
        ),
        (
            "reset mid-response",
            format!(
                "http://{}/s",
                misbehaving(Misbehaviour::ResetMidResponse).await
            ),
            0,
            "",
        ),
        (
            "garbage",
            format!("http://{}/s", misbehaving(Misbehaviour::Garbage).await),
            502,
            "upstream-unreachable",
        ),
        (
            "silent (slower than upstream_timeout)",
            format!("http://{}/s", misbehaving(Misbehaviour::Silent).await),
            504,
            "upstream-timeout",
        ),
        (
            "TLS with an untrusted certificate",
            format!("https://{tls}/s"),
            502,
            "upstream-unreachable",
        ),
    ];
    let mut routes = String::new();
    for (i, (_, upstream, _, _)) in faults.iter().enumerate() {
        routes.push_str(&format!(
            "\n[[route]]\nname = \"fault{i}\"\npath = \"/fault{i}\"\nupstream = \"{upstream}\"\nalias = \"orders-receiver\"\n"
        ));
    }
    let config = net::config(&format!("http://{}/s", good.addr), &routes, "")
        .replace("upstream_timeout = \"5s\"", "upstream_timeout = \"300ms\"");
    let daemon = Daemon::start(&config, &[("orders-receiver", rx.cert_pem())]).await;
    let good_url = daemon.url("/orders");
    assert_eq!(post_status(&good_url).await.0, 200);
    let mut injected = 0;
    for (i, (name, _, want_status, want_code)) in faults.iter().enumerate() {
        let url = daemon.url(&format!("/fault{i}"));
        // Warm up once (pools, TLS contexts), then count descriptors around the rounds.
        let _ = post_status(&url).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let before = open_fds();
        for _ in 0..ROUNDS {
            let (status, answer) = post_status(&url).await;
            assert_eq!(
                (status, fault_code(&answer)),
                (*want_status, *want_code),
                "{name}: {answer:.300}"
            );
            injected += 1;
        }
        let mut after = open_fds();
        common::eventually(Duration::from_secs(5), async || {
            after = open_fds();
            after <= before + 2
        })
        .await;
        assert!(
            after <= before + 2,
            "{name}: {before} descriptors before {ROUNDS} faults, {after} after"
        );
        // Healthy afterwards.
        assert_eq!(post_status(&good_url).await.0, 200, "after {name}");
        println!("{name}: {ROUNDS} × ({want_status} {want_code}), descriptors {before} → {after}");
    }
    println!("{injected} faults injected");
    assert_eq!(
        good.received()
            .iter()
            .filter(|r| r.decrypted.is_ok())
            .count(),
        1 + faults.len()
    );
}
