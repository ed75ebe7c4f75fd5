//! The bound on streamed requests: each holds a blocking thread while its client
//! sends, so only `STREAMS` run at once (one here). A streamed request beyond
//! the bound waits for a place and then goes through; buffered requests never
//! wait for one.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use tokio::sync::mpsc;
use wssgate::daemon::Daemon;
use wssgate::proxy::Proxy;

const OPEN: &str = r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><m:x xmlns:m="urn:m">"#;
const CLOSE: &str = "</m:x></soap:Body></soap:Envelope>";

/// A whole envelope: buffered, since all of it is there at once.
fn envelope(text_bytes: usize) -> String {
    format!("{OPEN}{}{CLOSE}", "a".repeat(text_bytes))
}

/// The answer's status, from a task of its own.
fn status_of<B>(proxy: Arc<Proxy>, request: Request<B>) -> tokio::task::JoinHandle<StatusCode>
where
    B: wssgate::proxy::RequestBody + Sync,
{
    let peer: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    tokio::spawn(async move {
        let response = proxy.handle(request, peer).await;
        let status = response.status();
        let _ = response.into_body().collect().await;
        status
    })
}

type HeldBody = StreamBody<
    std::pin::Pin<
        Box<dyn futures_util::Stream<Item = Result<Frame<Bytes>, Infallible>> + Send + Sync>,
    >,
>;

/// A request body the test sends piece by piece, with no announced length.
fn held_body() -> (mpsc::Sender<Bytes>, HeldBody) {
    let (tx, rx) = mpsc::channel::<Bytes>(4);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (Ok(Frame::data(chunk)), rx))
    });
    (tx, StreamBody::new(Box::pin(stream)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_request_past_the_bound_waits_for_a_place_and_buffered_ones_do_not() {
    let (upstream, received) = common::net::recording_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    common::write_keystore(
        dir.path(),
        &[("orders-receiver", common::receiver().cert_pem())],
    );
    let config = common::net::config(
        &format!("http://{upstream}/orders"),
        "",
        "max_body = \"1MiB\"\nstream_threshold = \"16KiB\"",
    );
    let path = dir.path().join("wssgate.toml");
    std::fs::write(&path, config.replace("{dir}", dir.path().to_str().unwrap())).unwrap();
    let daemon = Daemon::load(&path).await.unwrap();
    let proxy = Arc::new(Proxy::new(daemon.shared.clone(), daemon.gates.clone()).limit_streams(1));

    // The first streamed request: more than the threshold sent, then held.
    let (first_tx, first_body) = held_body();
    first_tx
        .send(Bytes::from(format!("{OPEN}{}", "a".repeat(20 * 1024))))
        .await
        .unwrap();
    let first = status_of(
        proxy.clone(),
        Request::post("/orders")
            .header("content-type", "text/xml")
            .body(first_body)
            .unwrap(),
    );
    common::eventually(Duration::from_secs(10), async || {
        proxy.streams_available() == 0
    })
    .await;
    assert_eq!(
        proxy.streams_available(),
        0,
        "the first stream has its place"
    );

    // A second streamed request, whole but for its end: it waits for the place.
    let (second_tx, second_body) = held_body();
    second_tx
        .send(Bytes::from(format!("{OPEN}{}", "c".repeat(40 * 1024))))
        .await
        .unwrap();
    second_tx
        .send(Bytes::from_static(CLOSE.as_bytes()))
        .await
        .unwrap();
    let second = status_of(
        proxy.clone(),
        Request::post("/orders")
            .header("content-type", "text/xml")
            .body(second_body)
            .unwrap(),
    );
    // A buffered request meanwhile goes through.
    let buffered = status_of(
        proxy.clone(),
        Request::post("/orders")
            .header("content-type", "text/xml")
            .body(Full::new(Bytes::from(envelope(1024))))
            .unwrap(),
    );
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(10), buffered)
            .await
            .expect("a buffered request does not wait for a stream's place")
            .unwrap(),
        StatusCode::OK
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    if second.is_finished() {
        panic!(
            "the second stream did not wait for a place: {}",
            second.await.unwrap()
        );
    }
    assert_eq!(
        received.lock().unwrap().len(),
        1,
        "only the buffered request has reached the upstream"
    );

    // The first finishes; the second then has its place and goes through.
    first_tx
        .send(Bytes::from(format!("{}{CLOSE}", "b".repeat(8 * 1024))))
        .await
        .unwrap();
    drop(first_tx);
    drop(second_tx);
    let within = Duration::from_secs(30);
    assert_eq!(
        tokio::time::timeout(within, first).await.unwrap().unwrap(),
        StatusCode::OK
    );
    assert_eq!(
        tokio::time::timeout(within, second).await.unwrap().unwrap(),
        StatusCode::OK
    );
    assert_eq!(received.lock().unwrap().len(), 3);
    assert_eq!(proxy.streams_available(), 1, "both places given back");
}
