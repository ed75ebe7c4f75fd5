//! The probe listener (`[probe] listen`: health, readiness and metrics without a
//! token, nothing else) and the drain on SIGTERM (`/readyz` 503 at once, requests
//! served for `drain_delay`, then no new connections, in-flight ones finish, held
//! ones answered `route-paused`).

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::net::{self, Daemon, Receiver};
use http_body_util::{BodyExt, Full};

const BODY: &str = r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><m:x xmlns:m="urn:m">1</m:x></soap:Body></soap:Envelope>"#;

async fn get(url: String) -> Option<(u16, String)> {
    let resp = net::client()
        .request(
            http::Request::get(url)
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .ok()?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.ok()?.to_bytes();
    Some((status, String::from_utf8_lossy(&body).into_owned()))
}

async fn daemon_with_probe(drain_delay: &str, receiver: &Receiver) -> (Daemon, u16) {
    let probe = common::free_port();
    let config = format!(
        "{}\n[probe]\nlisten = \"127.0.0.1:{probe}\"\n",
        net::config(&format!("http://{}/s", receiver.addr), "", "").replace(
            "drain_delay = \"200ms\"",
            &format!("drain_delay = \"{drain_delay}\"")
        )
    );
    let daemon = Daemon::start(
        &config,
        &[("orders-receiver", common::receiver().cert_pem())],
    )
    .await;
    common::eventually(Duration::from_secs(10), async || {
        get(format!("http://127.0.0.1:{probe}/healthz"))
            .await
            .is_some()
    })
    .await;
    (daemon, probe)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_probe_listener_serves_probes_and_metrics_only() {
    let receiver = Receiver::start(common::receiver().key_ring())
        .await
        .unwrap();
    let (daemon, probe) = daemon_with_probe("200ms", &receiver).await;
    let at = |path: &str| format!("http://127.0.0.1:{probe}{path}");
    assert_eq!(get(at("/healthz")).await.unwrap().0, 200);
    let (status, ready) = get(at("/readyz")).await.unwrap();
    assert_eq!(status, 200, "{ready}");
    let (status, metrics) = get(at("/metrics")).await.unwrap();
    assert_eq!(status, 200);
    assert!(metrics.contains("wssgate_config_generation"), "{metrics}");
    // Nothing else, whatever the token: reads and mutations are 404.
    for path in ["/v1/status", "/v1/routes", "/v1/keystore", "/nothing"] {
        assert_eq!(get(at(path)).await.unwrap().0, 404, "{path}");
    }
    for (method, path) in [
        ("POST", "/v1/routes/orders/pause"),
        ("POST", "/v1/reload"),
        ("PUT", "/v1/keystore/orders-receiver"),
        ("POST", "/readyz"),
    ] {
        let (_, _, token) = net::TOKENS.iter().find(|t| t.1 == "admin").unwrap();
        let resp = net::client()
            .request(
                http::Request::builder()
                    .method(method)
                    .uri(at(path))
                    .header("authorization", format!("Bearer {token}"))
                    .body(Full::new(Bytes::new()))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(resp.status(), 404, "{method} {path}");
    }
    assert_eq!(daemon.control.gates().paused(), Vec::<String>::new());
    // The admin API still wants its token for the same metrics.
    let (status, _) = daemon.admin_call("GET", "/metrics", None, b"").await;
    assert_eq!(status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_then_stops_accepting_and_answers_what_is_held() {
    let receiver = Receiver::start(common::receiver().key_ring())
        .await
        .unwrap();
    *receiver.delay.lock().unwrap() = Duration::from_millis(300);
    let (daemon, probe) = daemon_with_probe("2s", &receiver).await;
    let url = daemon.url("/orders");
    let post = |url: String, id: &'static str| async move {
        let request = http::Request::post(url)
            .header("content-type", "text/xml")
            .header("x-request-id", id)
            .body(Full::new(Bytes::from_static(BODY.as_bytes())))
            .unwrap();
        match net::client().request(request).await {
            Ok(r) => {
                let status = r.status().as_u16();
                let body = r
                    .into_body()
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                (status, String::from_utf8_lossy(&body).into_owned())
            }
            Err(_) => (0, String::new()),
        }
    };
    // One request in flight when SIGTERM comes.
    let in_flight = tokio::spawn(post(url.clone(), "in-flight"));
    tokio::time::sleep(Duration::from_millis(100)).await;
    daemon
        .intents
        .send(wssgate::signal::Intent::Shutdown)
        .await
        .unwrap();
    let signalled = Instant::now();
    // At once: not ready any more, on the probe listener.
    common::eventually(Duration::from_secs(1), async || {
        get(format!("http://127.0.0.1:{probe}/readyz"))
            .await
            .is_some_and(|(s, _)| s == 503)
    })
    .await;
    let (status, body) = get(format!("http://127.0.0.1:{probe}/readyz"))
        .await
        .unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("draining"), "{body}");
    // Within the drain delay, new requests are still served.
    let (status, body) = post(url.clone(), "during-drain").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        signalled.elapsed() < Duration::from_secs(2),
        "the check ran inside the drain"
    );
    // A request paused and held during the drain is answered at the end.
    daemon
        .control
        .pause("orders", wssgate::control::Actor("ops"), None)
        .await
        .unwrap();
    let held = tokio::spawn(post(url.clone(), "held"));
    assert_eq!(
        in_flight.await.unwrap().0,
        200,
        "in flight at SIGTERM: completed"
    );
    let (status, body) = held.await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert_eq!(common::fault_code(&body), "route-paused");
    assert!(
        signalled.elapsed() >= Duration::from_secs(2),
        "held until the drain ended"
    );
    // After the drain: new connections are refused.
    common::eventually(Duration::from_secs(5), async || {
        tokio::net::TcpStream::connect(daemon.addr).await.is_err()
    })
    .await;
    assert!(tokio::net::TcpStream::connect(daemon.addr).await.is_err());
    let ids: Vec<String> = receiver
        .received()
        .into_iter()
        .map(|r| r.request_id)
        .collect();
    assert!(ids.contains(&"in-flight".to_string()) && ids.contains(&"during-drain".to_string()));
    assert!(
        !ids.contains(&"held".to_string()),
        "nothing sent while paused: {ids:?}"
    );
}
