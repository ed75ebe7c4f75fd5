//! The pool against a raw loopback upstream that counts its connections.

use super::*;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// How the test upstream ends a connection.
#[derive(Clone, Copy, PartialEq)]
enum Ends {
    /// Keeps it open for the next request.
    Never,
    /// Closes it after each answer without saying so, as an upstream whose
    /// keep-alive timeout ran out does.
    Silently,
    /// Answers 413 as soon as it has the head, then reads and throws away
    /// what comes until the client closes. (Closing with the body unread
    /// would reset the connection, and the reset can overtake the answer.)
    Early,
    /// Answers the first request on a connection; reads the second whole
    /// and closes without answering it.
    DropsSecond,
}

/// An upstream on a loopback port that answers every request with
/// `answer_len` bytes and counts the connections it accepted and closed.
struct TestUpstream {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    closed: Arc<AtomicUsize>,
    /// Request heads read whole, over every connection.
    requests: Arc<AtomicUsize>,
    /// Raised to close every connection open at that moment, as soon as
    /// it waits for its next request.
    shut: tokio::sync::watch::Sender<u64>,
}

async fn test_upstream(ends: Ends, answer_len: usize) -> TestUpstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let closed = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(AtomicUsize::new(0));
    let shut = tokio::sync::watch::Sender::new(0u64);
    let (a, c, r, s) = (
        accepted.clone(),
        closed.clone(),
        requests.clone(),
        shut.clone(),
    );
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            a.fetch_add(1, Ordering::SeqCst);
            let closed = c.clone();
            let requests = r.clone();
            let mut shut = s.subscribe();
            let born = *shut.borrow_and_update();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                let mut answered = 0;
                'requests: loop {
                    // Requests here have no body: up to the blank line.
                    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                        let read = tokio::select! {
                            read = socket.read(&mut buf) => read,
                            _ = shut.wait_for(|&g| g > born) => break 'requests,
                        };
                        match read {
                            Ok(0) | Err(_) => break 'requests,
                            Ok(n) => seen.extend_from_slice(&buf[..n]),
                        }
                    }
                    requests.fetch_add(1, Ordering::SeqCst);
                    if ends == Ends::DropsSecond && answered == 1 {
                        break;
                    }
                    answered += 1;
                    if ends == Ends::Early {
                        let refusal = "HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
                        let _ = socket.write_all(refusal.as_bytes()).await;
                        while let Ok(1..) = socket.read(&mut buf).await {}
                        break;
                    }
                    let end = seen.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                    seen.drain(..end);
                    let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {answer_len}\r\n\r\n");
                    let written = socket.write_all(head.as_bytes()).await.is_ok()
                        && socket.write_all(&vec![b'x'; answer_len]).await.is_ok();
                    if !written || ends == Ends::Silently {
                        break;
                    }
                }
                drop(socket);
                closed.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    TestUpstream {
        addr,
        accepted,
        closed,
        requests,
        shut,
    }
}

/// Idle places for tests that are not about the bound.
const PLACES: usize = crate::descriptors::MAX_IDLE_UPSTREAM;

fn upstream(places: usize) -> Arc<Upstream> {
    sharing(&Arc::new(Semaphore::new(places)))
}

/// Plain HTTP, or HTTPS verified against the system roots.
fn system_roots() -> UpstreamTls {
    UpstreamTls {
        ca_file: None,
        client_identity: None,
    }
}

/// An upstream whose pool shares `places` with others.
fn sharing(places: &Arc<Semaphore>) -> Arc<Upstream> {
    Arc::new(Upstream::new(
        connector(&system_roots(), Duration::from_secs(5)).unwrap(),
        places.clone(),
    ))
}

fn get(addr: SocketAddr) -> Request<ProxyBody> {
    let mut request = Request::new(super::super::full_body(Bytes::new()));
    *request.uri_mut() = format!("http://{addr}/s").parse().unwrap();
    request
        .headers_mut()
        .insert(http::header::HOST, addr.to_string().parse().unwrap());
    request
}

async fn read_whole(upstream: &Arc<Upstream>, addr: SocketAddr) -> usize {
    let answer = upstream.send(get(addr), false).await.unwrap();
    assert_eq!(answer.status(), 200);
    answer.into_body().collect().await.unwrap().to_bytes().len()
}

/// Lets the runtime's I/O driver see what the upstream did (a close) before
/// the next request looks at the connection.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(50)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_connection_keeps_its_upstream_connection_then_gives_it_to_the_pool() {
    let server = test_upstream(Ends::Never, 2).await;
    let upstream = upstream(PLACES);
    let u = upstream.clone();
    keeping(async move {
        for _ in 0..5 {
            assert_eq!(read_whole(&u, server.addr).await, 2);
        }
        assert_eq!(u.idle_connections(), 0, "kept by the client connection");
        assert_eq!(
            u.places.available_permits(),
            PLACES,
            "which counts it: it takes no place in the pool"
        );
    })
    .await;
    assert_eq!(server.accepted.load(Ordering::SeqCst), 1);
    assert_eq!(
        upstream.idle_connections(),
        1,
        "in the pool once the client's task ended"
    );
    assert_eq!(upstream.places.available_permits(), PLACES - 1);
    // And the pool's connection serves the next client connection.
    let u = upstream.clone();
    keeping(async move { read_whole(&u, server.addr).await }).await;
    assert_eq!(server.accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_a_client_connection_the_pool_serves_one_request_after_another() {
    let server = test_upstream(Ends::Never, 2).await;
    let upstream = upstream(PLACES);
    for _ in 0..5 {
        read_whole(&upstream, server.addr).await;
    }
    assert_eq!(server.accepted.load(Ordering::SeqCst), 1);
    assert_eq!(upstream.idle_connections(), 1);
}

/// Wait until the upstream has closed `count` connections, and the
/// runtime has seen it.
async fn closed(server: &TestUpstream, count: usize) {
    let waited = tokio::time::timeout(Duration::from_secs(10), async {
        while server.closed.load(Ordering::SeqCst) < count {
            settle().await;
        }
    })
    .await;
    assert!(
        waited.is_ok(),
        "the upstream saw {} of {count} connections closed",
        server.closed.load(Ordering::SeqCst)
    );
    settle().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_the_upstream_closed_is_not_used_again() {
    // Closed after each answer: every request still answered.
    let server = test_upstream(Ends::Silently, 2).await;
    let upstream = upstream(PLACES);
    let u = upstream.clone();
    keeping(async {
        for round in 1..=3 {
            assert_eq!(read_whole(&u, server.addr).await, 2);
            closed(&server, round).await;
        }
    })
    .await;
    assert_eq!(server.accepted.load(Ordering::SeqCst), 3);
    assert_eq!(upstream.idle_connections(), 0);
    // Closed while kept by the client connection, and while in the pool:
    // the next request connects anew instead of failing.
    let server = test_upstream(Ends::Never, 2).await;
    keeping(async {
        read_whole(&u, server.addr).await;
        server.shut.send_modify(|g| *g += 1);
        closed(&server, 1).await;
        read_whole(&u, server.addr).await;
    })
    .await;
    assert_eq!(server.accepted.load(Ordering::SeqCst), 2);
    assert_eq!(upstream.idle_connections(), 1);
    server.shut.send_modify(|g| *g += 1);
    closed(&server, 2).await;
    read_whole(&u, server.addr).await;
    assert_eq!(server.accepted.load(Ordering::SeqCst), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_written_to_a_connection_that_then_closes_is_not_sent_again() {
    let server = test_upstream(Ends::DropsSecond, 2).await;
    let upstream = upstream(PLACES);
    read_whole(&upstream, server.addr).await;
    // The second goes out on the same connection, which the upstream closes
    // once it has read it: the upstream may have acted on it, so it fails
    // here and is not sent on a new connection.
    let failed = upstream.send(get(server.addr), false).await;
    assert!(
        matches!(failed, Err(SendError::Exchange(_))),
        "{:?}",
        failed.map(|r| r.status())
    );
    assert_eq!(server.requests.load(Ordering::SeqCst), 2);
    assert_eq!(server.accepted.load(Ordering::SeqCst), 1);
    assert_eq!(upstream.idle_connections(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_dropped_before_its_end_closes_its_connection() {
    let server = test_upstream(Ends::Never, 1 << 20).await;
    let upstream = upstream(PLACES);
    let u = upstream.clone();
    keeping(async move {
        let answer = u.send(get(server.addr), false).await.unwrap();
        let mut body = answer.into_body();
        let first = body.frame().await.unwrap().unwrap();
        assert!(first.data_ref().is_some_and(|d| d.len() < 1 << 20));
        drop(body);
        // The rest of that answer must not be read as the next one's.
        assert_eq!(read_whole(&u, server.addr).await, 1 << 20);
    })
    .await;
    assert_eq!(server.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_bounded_and_swept() {
    let server = test_upstream(Ends::Never, 2).await;
    let upstream = upstream(2);
    // Three at once: three connections, of which the pool keeps two.
    let (a, b, c) = tokio::join!(
        read_whole(&upstream, server.addr),
        read_whole(&upstream, server.addr),
        read_whole(&upstream, server.addr)
    );
    assert_eq!((a, b, c), (2, 2, 2));
    assert_eq!(server.accepted.load(Ordering::SeqCst), 3);
    assert_eq!(upstream.idle_connections(), 2);
    // The third found no place and was closed, not left open unpooled.
    closed(&server, 1).await;
    upstream.sweep(Instant::now());
    assert_eq!(upstream.idle_connections(), 2, "fresh and open: kept");
    upstream.sweep(Instant::now() + IDLE_TIMEOUT);
    assert_eq!(upstream.idle_connections(), 0, "idled too long: closed");
    assert_eq!(upstream.places.available_permits(), 2, "their places free");
    // Closed by the upstream while idle: the sweep closes our side too.
    read_whole(&upstream, server.addr).await;
    assert_eq!(upstream.idle_connections(), 1);
    let closed_before = server.closed.load(Ordering::SeqCst);
    server.shut.send_modify(|g| *g += 1);
    closed(&server, closed_before + 1).await;
    // The sweep sees the close once the runtime has: give it a bounded time.
    for _ in 0..100 {
        upstream.sweep(Instant::now());
        if upstream.idle_connections() == 0 {
            break;
        }
        settle().await;
    }
    assert_eq!(upstream.idle_connections(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_upstream_and_origin_shares_the_places_for_idle_connections() {
    let (one, two) = (
        test_upstream(Ends::Never, 2).await,
        test_upstream(Ends::Never, 2).await,
    );
    let places = Arc::new(Semaphore::new(2));
    let (first, second) = (sharing(&places), sharing(&places));
    // Two origins through one upstream take both places; a third connection,
    // through another upstream (another TLS setting) with no idle connection
    // of its own to give a place up, finds none: closed.
    read_whole(&first, one.addr).await;
    read_whole(&first, two.addr).await;
    read_whole(&second, one.addr).await;
    assert_eq!(first.idle_connections(), 2);
    assert_eq!(second.idle_connections(), 0);
    assert_eq!(one.accepted.load(Ordering::SeqCst), 2);
    closed(&one, 1).await;
    // A connection taken from the pool gives its place back: the client
    // connection whose request took it counts it now.
    let answer = first.send(get(one.addr), false).await.unwrap();
    assert_eq!(places.available_permits(), 1);
    read_whole(&second, one.addr).await;
    assert_eq!(second.idle_connections(), 1);
    assert_eq!(places.available_permits(), 0);
    // Read to its end, the answer's connection finds no place free: the
    // least recently used idle connection of its upstream (to the other
    // origin) gives its place up and is closed.
    answer.into_body().collect().await.unwrap();
    closed(&two, 1).await;
    assert_eq!(
        (first.idle_connections(), second.idle_connections()),
        (1, 1)
    );
    assert_eq!(places.available_permits(), 0);
    read_whole(&first, one.addr).await;
    assert_eq!(one.accepted.load(Ordering::SeqCst), 3, "the newer one kept");
    assert_eq!(one.closed.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_connection_carries_only_requests_of_its_own_tls_setting() {
    let server = test_upstream(Ends::Never, 2).await;
    // Two routes to one origin with different TLS settings have two
    // upstreams: one's connection must never carry the other's request.
    let (first, second) = (upstream(PLACES), upstream(PLACES));
    keeping(async {
        read_whole(&first, server.addr).await;
        read_whole(&second, server.addr).await;
    })
    .await;
    assert_eq!(server.accepted.load(Ordering::SeqCst), 2);
    assert_eq!(first.idle_connections(), 1, "back in its own pool");
    assert_eq!(second.idle_connections(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_request_answered_before_its_end_does_not_wait_for_the_answer_to_be_read() {
    let server = test_upstream(Ends::Early, 0).await;
    let upstream = upstream(PLACES);
    // As the proxy streams: a producer that sends 4 MiB through a small
    // channel, and a reader of the answer that waits for the producer.
    let (frames, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(4);
    let producer = tokio::spawn(async move {
        for _ in 0..64 {
            if frames
                .send(Ok(Frame::data(Bytes::from(vec![b'x'; 64 * 1024]))))
                .await
                .is_err()
            {
                return "stopped";
            }
        }
        "sent everything"
    });
    let body = http_body_util::StreamBody::new(tokio_stream_from(rx));
    let mut request = get(server.addr);
    *request.method_mut() = http::Method::POST;
    *request.body_mut() = BodyExt::boxed(body);
    let answer = upstream.send(request, true).await.unwrap();
    assert_eq!(answer.status(), 413);
    let ended = tokio::time::timeout(Duration::from_secs(30), producer).await;
    assert!(
        ended.is_ok(),
        "the request's producer is still blocked: nobody drives the connection"
    );
    drop(answer);
    assert_eq!(upstream.idle_connections(), 0);
}

/// A stream of a channel's items, without a dependency for it.
fn tokio_stream_from<T>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_first_requests_makes_one_upstream_per_tls_setting() {
    let clients = Arc::new(Clients::new(PLACES));
    let tls = system_roots();
    let timeout = Duration::from_secs(5);
    // Sixteen threads ask at the same moment (more than the runtime's
    // workers, so that they truly overlap).
    let start = Arc::new(std::sync::Barrier::new(16));
    let runtime = tokio::runtime::Handle::current();
    let gets: Vec<_> = (0..16)
        .map(|_| {
            let (clients, tls, start, runtime) =
                (clients.clone(), tls.clone(), start.clone(), runtime.clone());
            std::thread::spawn(move || {
                let _runtime = runtime.enter();
                start.wait();
                clients.get(&tls, timeout).unwrap()
            })
        })
        .collect();
    let upstreams: Vec<_> = gets.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(upstreams.iter().all(|u| Arc::ptr_eq(u, &upstreams[0])));
    assert_eq!(clients.made.load(Ordering::SeqCst), 1);
    // Another connect timeout is another upstream.
    let other = clients.get(&tls, Duration::from_secs(6)).unwrap();
    assert!(!Arc::ptr_eq(&other, &upstreams[0]));
    assert_eq!(clients.made.load(Ordering::SeqCst), 2);
}
