//! Slow and crowding clients on every listener: a request head that never ends,
//! an idle keep-alive connection, a body dripped just under the idle timeout, a
//! silent TLS-less admin socket, and ports held at their connection caps. Each is
//! cut at its configured bound, and the admin API keeps answering meanwhile.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::net::{self, Daemon, Receiver};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BODY: &str = r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><m:x xmlns:m="urn:m">1</m:x></soap:Body></soap:Envelope>"#;

/// Long enough that a cut seen before it is the bound at work, not luck.
const PATIENCE: Duration = Duration::from_secs(20);

async fn start(extra_proxy: &str, admin_extra: &str, probe: Option<u16>) -> (Daemon, Receiver) {
    let receiver = Receiver::start(common::receiver().key_ring())
        .await
        .unwrap();
    // Held requests must fit in a small proxy cap (checked at start).
    let mut config = net::config(
        &format!("http://{}/s", receiver.addr),
        "hold_max = 2",
        extra_proxy,
    );
    if let Some(port) = probe {
        config.push_str(&format!(
            "\n[probe]\nlisten = \"127.0.0.1:{port}\"\nheader_timeout = \"300ms\"\n"
        ));
    }
    let daemon = Daemon::start_with(
        tempfile::tempdir().unwrap(),
        &config,
        admin_extra,
        &[("orders-receiver", common::receiver().cert_pem())],
    )
    .await;
    (daemon, receiver)
}

/// Read until the peer closes; what it sent before closing, or `None` if it was
/// still open after [`PATIENCE`].
async fn until_closed(stream: &mut TcpStream) -> Option<String> {
    let mut got = Vec::new();
    let closed = tokio::time::timeout(PATIENCE, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    closed
        .is_ok()
        .then(|| String::from_utf8_lossy(&got).into_owned())
}

async fn half_a_head(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"POST /orders HTTP/1.1\r\nHost: x\r\nContent-Ty")
        .await
        .unwrap();
    stream
}

async fn admin_status(daemon: &Daemon) -> bool {
    daemon.client("read").status().await.is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unfinished_request_head_is_cut_on_every_listener() {
    let probe = common::free_port();
    let (daemon, _receiver) = start(
        "header_timeout = \"300ms\"",
        "header_timeout = \"300ms\"",
        Some(probe),
    )
    .await;
    let probe: SocketAddr = format!("127.0.0.1:{probe}").parse().unwrap();
    common::eventually(Duration::from_secs(10), async || {
        TcpStream::connect(probe).await.is_ok()
    })
    .await;
    for (name, addr) in [
        ("proxy", daemon.addr),
        ("admin", daemon.admin),
        ("probe", probe),
    ] {
        let mut stream = half_a_head(addr).await;
        let said = until_closed(&mut stream).await;
        assert!(
            said.is_some(),
            "{name}: a half-sent head kept the connection open"
        );
        // And a silent socket that never sends a byte.
        let mut silent = TcpStream::connect(addr).await.unwrap();
        assert!(
            until_closed(&mut silent).await.is_some(),
            "{name}: a silent connection stayed open"
        );
    }
    assert!(admin_status(&daemon).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_timeout() {
    let (daemon, _receiver) = start("header_timeout = \"300ms\"", "", None).await;
    let mut stream = TcpStream::connect(daemon.addr).await.unwrap();
    let request = format!(
        "POST /orders HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n\r\n{BODY}",
        BODY.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let said = until_closed(&mut stream)
        .await
        .expect("the idle connection is closed");
    assert!(said.starts_with("HTTP/1.1 200"), "{said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_dripped_under_the_idle_timeout_meets_the_request_deadline() {
    let (daemon, _receiver) = start(
        "body_idle_timeout = \"30s\"\nrequest_timeout = \"1s\"",
        "",
        None,
    )
    .await;
    let mut stream = TcpStream::connect(daemon.addr).await.unwrap();
    stream
        .write_all(b"POST /orders HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\nContent-Length: 100000\r\n\r\n<soap:Envelope")
        .await
        .unwrap();
    let answer = tokio::time::timeout(PATIENCE, async {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            // One byte every 100 ms: never idle for long, never finished.
            let _ = stream.write_all(b" ").await;
            tokio::select! {
                read = stream.read(&mut buf) => match read {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        got.extend_from_slice(&buf[..n]);
                        if common::http_message_complete(&got) {
                            break;
                        }
                    }
                },
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
        String::from_utf8_lossy(&got).into_owned()
    })
    .await
    .expect("the dripping client was cut off");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert_eq!(common::fault_code(&answer), "request-timeout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_body_that_never_arrives_gets_408() {
    let (daemon, _receiver) = start("", "request_timeout = \"500ms\"", None).await;
    let (_, _, token) = net::TOKENS.iter().find(|t| t.1 == "keys").unwrap();
    let mut stream = TcpStream::connect(daemon.admin).await.unwrap();
    let head = format!(
        "PUT /v1/keystore/orders-receiver HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/x-pem-file\r\nContent-Length: 5000\r\n\r\n-----BEGIN",
        daemon.admin
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let said = until_closed(&mut stream)
        .await
        .expect("the admin API gave up on the body");
    assert!(said.starts_with("HTTP/1.1 408"), "{said}");
    // Nothing changed.
    let audit =
        std::fs::read_to_string(daemon.dir.path().join("var/audit.log")).unwrap_or_default();
    assert!(!audit.contains("exchange"), "{audit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_answers_while_the_proxy_is_at_its_cap() {
    let (daemon, _receiver) =
        start("max_connections = 3\nheader_timeout = \"60s\"", "", None).await;
    // Three clients that never finish their heads take every proxy place.
    let mut holders = Vec::new();
    for _ in 0..3 {
        holders.push(half_a_head(daemon.addr).await);
    }
    // A fourth waits in the backlog: no answer while the three hold on.
    let waiting = tokio::spawn({
        let url = daemon.url("/orders");
        async move {
            net::post(&net::client(), &url, "text/xml", BODY.as_bytes())
                .await
                .0
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !waiting.is_finished(),
        "a fourth connection was served past the cap"
    );
    // The admin API is another port with its own places.
    for _ in 0..5 {
        assert!(admin_status(&daemon).await, "the admin API did not answer");
    }
    // A place freed serves the one that waited.
    drop(holders.pop());
    let status = tokio::time::timeout(PATIENCE, waiting)
        .await
        .expect("the waiting request was served once a place was free")
        .unwrap();
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_admin_clients_hold_their_places_only_until_the_header_timeout() {
    let (daemon, _receiver) =
        start("", "max_connections = 2\nheader_timeout = \"500ms\"", None).await;
    // Both admin places taken by clients that say nothing.
    let _a = TcpStream::connect(daemon.admin).await.unwrap();
    let _b = TcpStream::connect(daemon.admin).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The operator's call waits at most until they are cut, then is answered.
    let answered = tokio::time::timeout(PATIENCE, admin_status(&daemon))
        .await
        .expect("the admin API was held hostage by silent clients");
    assert!(answered);
}
