//! The proxy and admin handlers called in process, with in-memory bodies and no
//! socket: the fault table, the gate before the snapshot, roles, a pause that
//! waits for in-flight requests, and an exchange that waits for the keystore lock.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use wssgate::admin::Admin;
use wssgate::admin::contract::{ErrorAnswer, ExchangeAnswer, PauseAnswer, RouteState, paths};
use wssgate::daemon::Daemon;
use wssgate::proxy::{Proxy, ProxyBody};

const ADMIN_ADDR: &str = "127.0.0.1:9090";
const ENVELOPE: &str = r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><m:x xmlns:m="urn:m">1</m:x></soap:Body></soap:Envelope>"#;

/// A loaded daemon (no listener bound) with its proxy and admin handlers.
struct InProcess {
    daemon: Daemon,
    proxy: Proxy,
    admin: Admin,
    _dir: tempfile::TempDir,
}

/// `extra_route` is appended to the one route, which points at a closed port.
async fn in_process(extra_route: &str) -> InProcess {
    let dir = tempfile::tempdir().unwrap();
    common::write_keystore(
        dir.path(),
        &[("orders-receiver", common::receiver().cert_pem())],
    );
    let mut config = String::from("[admin]\nlisten = \"127.0.0.1:9090\"\ntokens = [\n");
    for (name, role, token) in common::net::TOKENS {
        common::write_secret(&dir.path().join(format!("{name}.token")), token);
        config.push_str(&format!(
            "  {{ name = \"{name}\", role = \"{role}\", file = \"{{dir}}/{name}.token\" }},\n"
        ));
    }
    config.push_str("]\n");
    // Port 9 (discard) on loopback: nothing listens there in the test machines.
    config.push_str(&common::net::config(
        "http://127.0.0.1:9/orders",
        extra_route,
        "max_body = \"64KiB\"\nstream_threshold = \"16KiB\"",
    ));
    let path = dir.path().join("wssgate.toml");
    std::fs::write(&path, config.replace("{dir}", dir.path().to_str().unwrap())).unwrap();
    let daemon = Daemon::load(&path).await.unwrap();
    let proxy = Proxy::new(daemon.shared.clone(), daemon.gates.clone());
    let admin = Admin::new(daemon.control.clone(), ADMIN_ADDR.parse().unwrap());
    InProcess {
        daemon,
        proxy,
        admin,
        _dir: dir,
    }
}

fn peer() -> SocketAddr {
    "127.0.0.1:40000".parse().unwrap()
}

async fn text(response: Response<ProxyBody>) -> (StatusCode, String) {
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn post(path: &str, content_type: &str, body: &str) -> Request<Full<Bytes>> {
    Request::post(path)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

#[tokio::test]
async fn the_fault_table_in_process() {
    let p = in_process("").await;
    let big = format!(
        r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><m:x xmlns:m="urn:m">{}</m:x></soap:Body></soap:Envelope>"#,
        "a".repeat(70 * 1024)
    );
    let cases: Vec<(Request<Full<Bytes>>, StatusCode, &str)> = vec![
        (
            post("/nowhere", "text/xml", ENVELOPE),
            StatusCode::NOT_FOUND,
            "no-route",
        ),
        (
            Request::put("/orders")
                .body(Full::new(Bytes::new()))
                .unwrap(),
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
        ),
        (
            Request::get("/orders")
                .body(Full::new(Bytes::new()))
                .unwrap(),
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
        ),
        (
            post("/orders", "application/json", ENVELOPE),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
        ),
        (
            post("/orders", "text/xml", "<not-soap/>"),
            StatusCode::BAD_REQUEST,
            "malformed-envelope",
        ),
        (
            post(
                "/orders",
                "text/xml",
                r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body/></soap:Envelope>"#,
            ),
            StatusCode::BAD_REQUEST,
            "empty-body",
        ),
        (
            post("/orders", "text/xml", &big),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload-too-large",
        ),
        (
            post("/orders", "text/xml", ENVELOPE),
            StatusCode::BAD_GATEWAY,
            "upstream-unreachable",
        ),
    ];
    for (request, status, code) in cases {
        let what = format!("{} {}", request.method(), request.uri());
        let (got, body) = text(p.proxy.handle(request, peer()).await).await;
        assert_eq!(got, status, "{what}: {body}");
        assert_eq!(common::fault_code(&body), code, "{what}: {body}");
    }
    // A SOAP 1.2 request is answered with a SOAP 1.2 fault.
    let soap12 = ENVELOPE.replace(
        "http://schemas.xmlsoap.org/soap/envelope/",
        "http://www.w3.org/2003/05/soap-envelope",
    );
    let response = p
        .proxy
        .handle(post("/orders", "application/soap+xml", &soap12), peer())
        .await;
    assert_eq!(
        response.headers()["content-type"],
        "application/soap+xml; charset=utf-8"
    );
    let (_, body) = text(response).await;
    assert!(
        body.contains("<env:Value>env:Receiver</env:Value>"),
        "{body}"
    );
}

#[tokio::test]
async fn a_paused_route_refuses_before_reading_the_body() {
    let p = in_process("on_pause = \"reject\"\nhold_timeout = \"7s\"").await;
    let paused = admin_call(&p, "POST", &paths::pause("orders"), "operator", "").await;
    assert_eq!(paused.0, StatusCode::OK, "{}", paused.1);
    // The gate comes before the body is read: even a malformed body is refused
    // as paused, with Retry-After from hold_timeout.
    let response = p
        .proxy
        .handle(post("/orders", "text/xml", "<garbage"), peer())
        .await;
    assert_eq!(response.headers()["retry-after"], "7");
    let (status, body) = text(response).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(common::fault_code(&body), "route-paused");
}

async fn admin_call(
    p: &InProcess,
    method: &str,
    path: &str,
    role: &str,
    body: &str,
) -> (StatusCode, String) {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header("host", ADMIN_ADDR);
    if let Some((_, _, token)) = common::net::TOKENS.iter().find(|t| t.1 == role) {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let request = request
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    text(p.admin.handle(request).await).await
}

#[tokio::test]
async fn roles_and_the_host_check_in_process() {
    let p = in_process("").await;
    let cases = [
        (
            "GET",
            paths::ROUTES.to_string(),
            "none",
            StatusCode::UNAUTHORIZED,
        ),
        ("GET", paths::ROUTES.to_string(), "read", StatusCode::OK),
        (
            "POST",
            paths::pause("orders"),
            "read",
            StatusCode::FORBIDDEN,
        ),
        (
            "POST",
            paths::pause("orders"),
            "keys",
            StatusCode::FORBIDDEN,
        ),
        ("POST", paths::pause("orders"), "operator", StatusCode::OK),
        ("POST", paths::resume("orders"), "admin", StatusCode::OK),
        (
            "PUT",
            paths::keystore_alias("orders-receiver"),
            "operator",
            StatusCode::FORBIDDEN,
        ),
        (
            "POST",
            paths::withdraw("orders-receiver"),
            "operator",
            StatusCode::FORBIDDEN,
        ),
        (
            "POST",
            paths::withdraw("orders-receiver"),
            "keys",
            StatusCode::NOT_FOUND,
        ),
        (
            "POST",
            paths::pause("nosuch"),
            "operator",
            StatusCode::NOT_FOUND,
        ),
        (
            "DELETE",
            paths::ROUTES.to_string(),
            "admin",
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            "GET",
            "/v2/anything".to_string(),
            "admin",
            StatusCode::NOT_FOUND,
        ),
        ("GET", paths::HEALTHZ.to_string(), "none", StatusCode::OK),
    ];
    for (method, path, role, want) in cases {
        let (status, body) = admin_call(&p, method, &path, role, "").await;
        assert_eq!(status, want, "{method} {path} as {role}: {body}");
        if status.is_client_error() {
            let e: ErrorAnswer = serde_json::from_str(&body).unwrap();
            assert!(!e.error.is_empty());
        }
    }
    // A Host that names another address (DNS rebinding), and two Host headers.
    let request = Request::get(paths::ROUTES)
        .header("host", "attacker.example:9090")
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(
        p.admin.handle(request).await.status(),
        StatusCode::FORBIDDEN
    );
    let request = Request::get(paths::HEALTHZ)
        .header("host", ADMIN_ADDR)
        .header("host", ADMIN_ADDR)
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(
        p.admin.handle(request).await.status(),
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn a_pause_waits_for_what_is_in_flight() {
    let p = Arc::new(in_process("").await);
    // A request past the gate, as the proxy holds it while the upstream answers.
    let gate = p.daemon.gates.get("orders");
    let in_flight = gate
        .enter(wssgate::config::OnPause::Hold, 10, Duration::from_secs(1))
        .await
        .unwrap();
    let path = format!("{}?wait=0.2", paths::pause("orders"));
    let (status, body) = admin_call(&p, "POST", &path, "operator", "").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let answer: PauseAnswer = serde_json::from_str(&body).unwrap();
    assert!(!answer.drained);
    assert_eq!(answer.route.in_flight, 1);
    assert_eq!(answer.route.state, RouteState::Paused);
    // The same call, with the request finishing while the pause waits.
    let waiting = {
        let p = p.clone();
        tokio::spawn(async move {
            let path = format!("{}?wait=10", paths::pause("orders"));
            admin_call(&p, "POST", &path, "operator", "").await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !waiting.is_finished(),
        "the pause answered while a request was in flight"
    );
    drop(in_flight);
    let (status, body) = waiting.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    let answer: PauseAnswer = serde_json::from_str(&body).unwrap();
    assert!(answer.drained);
    assert_eq!(answer.route.in_flight, 0);
}

#[tokio::test]
async fn an_exchange_waits_for_the_keystore_lock() {
    let p = Arc::new(in_process("").await);
    let state_dir = p.daemon.shared.load().config.keystore.state_dir.clone();
    std::fs::create_dir_all(&state_dir).unwrap();
    // The command line (another process) holds the keystore lock.
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(state_dir.join("keystore.lock"))
        .unwrap();
    lock.lock().unwrap();
    let next = common::TestReceiver::new(&common::CertSpec {
        serial: 4712,
        ..Default::default()
    });
    let pem = String::from_utf8(next.cert_pem()).unwrap();
    let exchange = {
        let p = p.clone();
        tokio::spawn(async move {
            admin_call(
                &p,
                "PUT",
                &paths::keystore_alias("orders-receiver"),
                "keys",
                &pem,
            )
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !exchange.is_finished(),
        "the exchange did not wait for the lock"
    );
    let before = p.daemon.shared.load();
    assert_eq!(before.aliases["orders-receiver"].info().serial, "4711");
    drop(lock);
    let (status, body) = exchange.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    let answer: ExchangeAnswer = serde_json::from_str(&body).unwrap();
    assert!(answer.live);
    assert_eq!(answer.current.serial, "4712");
    assert_eq!(answer.previous.unwrap().serial, "4711");
    assert_eq!(
        p.daemon.shared.load().aliases["orders-receiver"]
            .info()
            .serial,
        "4712"
    );
}

#[tokio::test]
async fn a_pem_body_is_read_whatever_its_content_type_says() {
    let p = in_process("").await;
    let next = common::TestReceiver::new(&common::CertSpec {
        serial: 4713,
        ..Default::default()
    });
    let pem = String::from_utf8(next.cert_pem()).unwrap();
    let put = |content_type: &'static str, body: String| {
        let (_, _, token) = common::net::TOKENS.iter().find(|t| t.1 == "keys").unwrap();
        Request::put(paths::keystore_alias("orders-receiver"))
            .header("host", ADMIN_ADDR)
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", content_type)
            .body(Full::new(Bytes::from(body)))
            .unwrap()
    };
    // What `curl --data-binary @new.pem` sends.
    let (status, body) = text(
        p.admin
            .handle(put("application/x-www-form-urlencoded", pem.clone()))
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = text(
        p.admin
            .handle(put("application/json", "{\"certificate\": 1}".into()))
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");
}

#[tokio::test]
async fn refusals_name_files_by_their_configuration_key_not_their_place() {
    let p = in_process("").await;
    let config = p.daemon.shared.load().config.clone();
    let places = [
        config.path.parent().unwrap().display().to_string(),
        config.keystore.state_dir.display().to_string(),
        config.keystore.dir.display().to_string(),
    ];
    // A certificate the keystore refuses (the refusal names its file).
    let expired = common::TestReceiver::new(&common::CertSpec {
        serial: 4714,
        not_before_days: -10,
        not_after_days: -1,
        ..Default::default()
    });
    let pem = String::from_utf8(expired.cert_pem()).unwrap();
    let (status, body) = admin_call(
        &p,
        "PUT",
        &paths::keystore_alias("orders-receiver"),
        "keys",
        &pem,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body.contains("keystore.dir"), "{body}");
    for place in &places {
        assert!(!body.contains(place.as_str()), "{place} in {body}");
    }
    // A reload of a configuration that no longer validates (the error has its line).
    let mut text = std::fs::read_to_string(&config.path).unwrap();
    text.push_str("\n[[route]]\nname = 1\n");
    std::fs::write(&config.path, text).unwrap();
    let (status, body) = admin_call(&p, "POST", paths::RELOAD, "operator", "").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body.contains("wssgate.toml"), "{body}");
    for place in &places {
        assert!(!body.contains(place.as_str()), "{place} in {body}");
    }
    // A token file elsewhere that has gone: named by its token, not its place.
    let elsewhere = tempfile::tempdir().unwrap();
    let gone = elsewhere.path().join("secrets/ops.token");
    let text = std::fs::read_to_string(&config.path)
        .unwrap()
        .replace("\n[[route]]\nname = 1\n", "");
    let first_token = text.find("file = \"").unwrap() + "file = \"".len();
    let end = first_token + text[first_token..].find('"').unwrap();
    let text = format!("{}{}{}", &text[..first_token], gone.display(), &text[end..]);
    std::fs::write(&config.path, text).unwrap();
    let (status, body) = admin_call(&p, "POST", paths::RELOAD, "operator", "").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body.contains("admin token"), "{body}");
    assert!(!body.contains(elsewhere.path().to_str().unwrap()), "{body}");
}
