//! The request path as an operator relies on it: what is matched is what is
//! forwarded (normalized paths), headers a client controls cannot add header
//! parameters upstream, a body that cannot be read is refused, and an HTTP/1.0
//! receiver does not break the client's HTTP/1.1 connection.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::net::{self, Daemon, Receiver};
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ENVELOPE: &str = r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><m:x xmlns:m="urn:m">1</m:x></soap:Body></soap:Envelope>"#;

const SOAP12: &str = r#"<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope"><env:Body><m:x xmlns:m="urn:m">1</m:x></env:Body></env:Envelope>"#;

async fn send(daemon: &Daemon, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    let mut req = http::Request::post(daemon.url(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = net::client()
        .request(req.body(Full::new(Bytes::from(body.to_string()))).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn the_matched_path_is_the_forwarded_path() {
    let rx = common::receiver();
    let receiver = Receiver::start(rx.key_ring()).await.unwrap();
    // Only /orders/public is routed, and it passes plaintext through.
    let config = net::config(
        &format!("http://{}/backend", receiver.addr),
        "mode = \"pass-through\"",
        "",
    )
    .replace("path = \"/orders\"", "path = \"/orders/public\"");
    let daemon = Daemon::start(&config, &[("orders-receiver", rx.cert_pem())]).await;
    let xml = [("content-type", "text/xml")];
    for escape in [
        "/orders/public/../secret",
        "/orders/public/%2e%2e/secret",
        "/orders/public/..%2fsecret",
        "/orders/public/..;x=1/secret",
        "/orders//public/../../secret",
        "/orders/public/../../../etc",
    ] {
        let (status, body) = send(&daemon, escape, &xml, ENVELOPE).await;
        assert_eq!(status, 404, "{escape}: {body}");
        assert_eq!(common::fault_code(&body), "no-route", "{escape}");
    }
    assert!(receiver.received().is_empty(), "nothing escaped the route");
    // Inside the route the normalized path is what the receiver sees.
    for (sent, arrived) in [
        ("/orders/public/a/../b", "/backend/b"),
        ("/orders//public/./c", "/backend/c"),
        ("/orders/public/%2e/d?x=1", "/backend/d?x=1"),
    ] {
        let (status, body) = send(&daemon, sent, &xml, ENVELOPE).await;
        assert_eq!(status, 200, "{sent}: {body}");
        let last = receiver.received().pop().unwrap();
        assert_eq!(last.path, arrived, "{sent}");
    }
}

#[tokio::test]
async fn soap_action_stays_one_parameter_and_compressed_bodies_are_refused() {
    let rx = common::receiver();
    let receiver = Receiver::start(rx.key_ring()).await.unwrap();
    let config = net::config(&format!("http://{}/s", receiver.addr), "", "");
    let daemon = Daemon::start(&config, &[("orders-receiver", rx.cert_pem())]).await;
    let (status, body) = send(
        &daemon,
        "/orders",
        &[
            ("content-type", "application/soap+xml"),
            ("soapaction", "x\"; charset=iso-8859-1"),
        ],
        SOAP12,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let got = receiver.received().pop().unwrap();
    assert_eq!(
        got.content_type,
        r#"application/soap+xml; charset=utf-8; action="x\"; charset=iso-8859-1""#
    );
    assert_eq!(got.content_type.matches("charset=").count(), 2);
    assert!(got.decrypted.is_ok());
    for encoding in ["gzip", "deflate", "br, gzip"] {
        let (status, body) = send(
            &daemon,
            "/orders",
            &[("content-type", "text/xml"), ("content-encoding", encoding)],
            ENVELOPE,
        )
        .await;
        assert_eq!(status, 415, "{encoding}: {body}");
        assert_eq!(common::fault_code(&body), "unsupported-media-type");
    }
    let (status, _) = send(
        &daemon,
        "/orders",
        &[
            ("content-type", "text/xml"),
            ("content-encoding", "identity"),
        ],
        ENVELOPE,
    )
    .await;
    assert_eq!(status, 200);
}

/// A receiver that answers HTTP/1.0, without a length, and closes.
async fn http10_receiver() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut buf = [0u8; 8192];
                // Read the head and the Content-Length body.
                while !common::http_message_complete(&seen) {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = stream
                    .write_all(b"HTTP/1.0 200 OK\r\nContent-Type: text/xml\r\n\r\n<ok/>")
                    .await;
                let _ = stream.shutdown().await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn an_http10_receiver_answers_an_http11_client_on_a_kept_connection() {
    let rx = common::receiver();
    let upstream = http10_receiver().await;
    let config = net::config(&format!("http://{upstream}/s"), "", "");
    let daemon = Daemon::start(&config, &[("orders-receiver", rx.cert_pem())]).await;
    let mut stream = tokio::net::TcpStream::connect(daemon.addr).await.unwrap();
    let request = format!(
        "POST /orders HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n\r\n{ENVELOPE}",
        ENVELOPE.len()
    );
    for round in 0..2 {
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        let mut buf = [0u8; 8192];
        let complete = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return false,
                    Ok(n) => answer.extend_from_slice(&buf[..n]),
                }
                if answer.ends_with(b"0\r\n\r\n") || common::http_message_complete(&answer) {
                    return true;
                }
            }
        })
        .await
        .unwrap_or(false);
        let text = String::from_utf8_lossy(&answer);
        assert!(complete, "round {round}: the answer was not framed: {text}");
        assert!(text.starts_with("HTTP/1.1 200"), "round {round}: {text}");
        assert!(text.contains("<ok/>"), "round {round}: {text}");
        assert!(
            !text.to_ascii_lowercase().contains("connection: close"),
            "round {round}: {text}"
        );
    }
}

/// Refusals that come before the body is read — no route, a media type, a
/// compressed body, a route that is paused — still reach a client that sends a
/// large body and reads the answer only once it has sent it all (as most
/// clients do): the daemon reads the body to its end (bounded) instead of
/// closing with data unread, which resets the connection and loses the answer.
#[tokio::test]
async fn an_early_refusal_reaches_a_client_that_sends_its_whole_body_first() {
    let rx = common::receiver();
    let receiver = Receiver::start(rx.key_ring()).await.unwrap();
    let config = net::config(
        &format!("http://{}/service", receiver.addr),
        "on_pause = \"reject\"",
        "max_body = \"16MiB\"",
    );
    let daemon = Daemon::start(&config, &[("orders-receiver", rx.cert_pem())]).await;
    let body = vec![b'x'; 8 << 20];
    let send_all_then_read = |path: &'static str, headers: &'static str| {
        let (addr, body) = (daemon.addr, body.clone());
        async move {
            let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
            let head = format!(
                "POST {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n{headers}content-length: {}\r\n\r\n",
                body.len()
            );
            let sent = async {
                socket.write_all(head.as_bytes()).await?;
                socket.write_all(&body).await
            }
            .await;
            let mut answer = Vec::new();
            let read = socket.read_to_end(&mut answer).await;
            let status_line = String::from_utf8_lossy(&answer)
                .lines()
                .next()
                .unwrap_or("")
                .to_string();
            (
                sent.is_ok(),
                read.is_ok() || !answer.is_empty(),
                status_line,
            )
        }
    };
    let cases = [
        ("no route", "/nowhere", "content-type: text/xml\r\n", "404"),
        (
            "media type",
            "/orders",
            "content-type: text/plain\r\n",
            "415",
        ),
        (
            "compressed",
            "/orders",
            "content-type: text/xml\r\ncontent-encoding: gzip\r\n",
            "415",
        ),
    ];
    for (name, path, headers, status) in cases {
        let (sent, _, status_line) = send_all_then_read(path, headers).await;
        assert!(sent, "{name}: the body could not be sent whole");
        assert!(status_line.contains(status), "{name}: {status_line:?}");
    }
    daemon
        .client("operator")
        .pause("orders", None)
        .await
        .unwrap();
    let (sent, _, status_line) = send_all_then_read("/orders", "content-type: text/xml\r\n").await;
    assert!(sent, "paused: the body could not be sent whole");
    assert!(status_line.contains("503"), "paused: {status_line:?}");
}
