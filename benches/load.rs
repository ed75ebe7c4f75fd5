//! Proxy load harness: the same load, in one run, against
//!
//! - `direct`: the receiver stub itself,
//! - `nginx`: nginx as a plain reverse proxy to the stub (when `nginx` is installed),
//! - `pass-through`: wssgate with a `mode = "pass-through"` route,
//! - `encrypt`: wssgate encrypting for the route's certificate,
//!
//! for 2 KiB and 100 KiB SOAP requests over 64 keep-alive connections, and the
//! latency each adds with one connection and no queueing; then the
//! p99 of `encrypt` while the certificate is exchanged ten times a second through
//! the admin API, against the p99 without exchanges (in alternating slices,
//! `LOAD_SWAP_PAIRS` pairs of them, 5 by default, `LOAD_SECONDS` in all on each
//! side); then wssgate's peak resident memory under 1,000 concurrent 100 KiB
//! requests.
//!
//! ```sh
//! cargo bench --bench load                      # 10 s per measurement
//! LOAD_SECONDS=30 LOAD_CONNECTIONS=64 cargo bench --bench load
//! LOAD_PARTS=memory cargo bench --bench load     # any of proxy,latency,swap,memory
//! LOAD_PARTS=swap LOAD_SECONDS=30 LOAD_SWAP_PAIRS=10 cargo bench --bench load
//! LOAD_BIN=path/to/wssgate LOAD_PARTS=memory cargo bench --bench load  # another build
//! ```
//!
//! Everything runs on this machine's cores: the load generator and the stub share
//! them with the proxy under test, as `wrk` and a backend would. Results are
//! ratios within this run; nothing is asserted.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

const RESPONSE: &str = r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><r:ok xmlns:r="urn:receiver"/></soap:Body></soap:Envelope>"#;
const TOKEN: &str = "load-harness-admin-token-0123456789";

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A SOAP 1.1 request whose Body holds about `size` bytes of order lines.
fn envelope(size: usize) -> Bytes {
    Bytes::from(common::envelope(size))
}

/// The receiver stub: reads the whole request, answers a small SOAP response.
async fn start_stub() -> SocketAddr {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(8192).unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let service = service_fn(|request: Request<hyper::body::Incoming>| async move {
                    let _ = request.into_body().collect().await;
                    Ok::<_, Infallible>(
                        Response::builder()
                            .header("content-type", "text/xml; charset=utf-8")
                            .body(Full::new(Bytes::from_static(RESPONSE.as_bytes())))
                            .unwrap(),
                    )
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn wait_listening(addr: SocketAddr) {
    for _ in 0..200 {
        if TcpStream::connect(addr).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("nothing listens on {addr}");
}

/// A process stopped when dropped: SIGTERM (nginx's master then stops its
/// workers; SIGKILL would orphan them), SIGKILL if it is still there after 5 s.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn write_cert(dir: &Path, name: &str, serial: u32) -> PathBuf {
    let cert = wssgate::receiver::KeyPair::generate(&wssgate::receiver::CertSpec {
        serial,
        common_name: "load receiver".into(),
        ..Default::default()
    })
    .unwrap()
    .cert;
    let path = dir.join(name);
    std::fs::write(&path, cert.to_pem().unwrap()).unwrap();
    path
}

/// wssgate with a pass-through route `/pass` and an encrypting route `/enc`.
fn start_wssgate(dir: &Path, stub: SocketAddr) -> (Process, SocketAddr, SocketAddr) {
    let (proxy, admin) = (free_port(), free_port());
    std::fs::create_dir_all(dir.join("keystore")).unwrap();
    write_cert(&dir.join("keystore"), "receiver.pem", 1);
    wssgate::keystore::files::write_private(&dir.join("admin.token"), TOKEN.as_bytes()).unwrap();
    let config = format!(
        r#"[proxy]
listen = "127.0.0.1:{proxy}"
max_body = "16MiB"

[admin]
listen = "127.0.0.1:{admin}"
tokens = [ {{ name = "load", role = "admin", file = "admin.token" }} ]

[keystore]
dir = "keystore"
state_dir = "var"

[[route]]
name = "pass"
path = "/pass"
upstream = "http://{stub}/service"
alias = "receiver"
mode = "pass-through"

[[route]]
name = "enc"
path = "/enc"
upstream = "http://{stub}/service"
alias = "receiver"
"#
    );
    std::fs::write(dir.join("wssgate.toml"), config).unwrap();
    let log = std::fs::File::create(dir.join("wssgate.log")).unwrap();
    // LOAD_BIN runs another build of the daemon (a baseline) under the same load.
    let bin = std::env::var_os("LOAD_BIN")
        .unwrap_or_else(|| std::ffi::OsString::from(env!("CARGO_BIN_EXE_wssgate")));
    let child = Command::new(bin)
        .args(["serve", "-c"])
        .arg(dir.join("wssgate.toml"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    (
        Process(child),
        SocketAddr::from(([127, 0, 0, 1], proxy)),
        SocketAddr::from(([127, 0, 0, 1], admin)),
    )
}

/// nginx as a plain reverse proxy with keep-alive to the stub, if installed.
fn start_nginx(dir: &Path, stub: SocketAddr) -> Option<(Process, SocketAddr)> {
    let nginx = ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|p| Path::new(p).exists())?;
    let port = free_port();
    let d = dir.display();
    let config = format!(
        r#"worker_processes 2;
daemon off;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log;
events {{ worker_connections 4096; }}
http {{
    access_log {d}/nginx-access.log;
    client_body_temp_path {d}/nginx-body;
    proxy_temp_path {d}/nginx-proxy;
    fastcgi_temp_path {d}/nginx-fastcgi;
    uwsgi_temp_path {d}/nginx-uwsgi;
    scgi_temp_path {d}/nginx-scgi;
    client_max_body_size 16m;
    client_body_buffer_size 1m;
    upstream stub {{ server {stub}; keepalive 128; }}
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://stub;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"#
    );
    std::fs::write(dir.join("nginx.conf"), config).unwrap();
    let child = Command::new(nginx)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    Some((Process(child), SocketAddr::from(([127, 0, 0, 1], port))))
}

#[derive(Debug, Clone, Copy)]
struct Figures {
    failed: u64,
    per_second: f64,
    mb_per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
}

async fn connect(addr: SocketAddr) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    sender
}

/// `connections` keep-alive connections POST `body` to `addr{path}` for `seconds`.
async fn load(
    addr: SocketAddr,
    path: &str,
    body: Bytes,
    connections: usize,
    seconds: u64,
) -> Figures {
    let body_len = body.len();
    let mut samples = load_for(addr, path, body, connections, Duration::from_secs(seconds)).await;
    samples.figures(body_len)
}

/// What one load run saw: each answered request's latency (µs), the failures and
/// how long it ran.
#[derive(Debug, Default)]
struct Samples {
    latencies_us: Vec<u32>,
    failed: u64,
    seconds: f64,
}

impl Samples {
    fn add(&mut self, other: Samples) {
        self.latencies_us.extend(other.latencies_us);
        self.failed += other.failed;
        self.seconds += other.seconds;
    }

    fn figures(&mut self, body_len: usize) -> Figures {
        let all = &mut self.latencies_us;
        all.sort_unstable();
        let at = |q: f64| {
            all.get(((all.len() as f64 * q) as usize).min(all.len().saturating_sub(1)))
                .copied()
                .unwrap_or(0) as f64
                / 1000.0
        };
        let requests = all.len() as f64;
        Figures {
            failed: self.failed,
            per_second: requests / self.seconds,
            mb_per_second: requests * body_len as f64 / self.seconds / 1e6,
            p50_ms: at(0.50),
            p99_ms: at(0.99),
        }
    }
}

async fn load_for(
    addr: SocketAddr,
    path: &str,
    body: Bytes,
    connections: usize,
    duration: Duration,
) -> Samples {
    let deadline = Instant::now() + duration;
    let failed = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (body, path, failed) = (body.clone(), path.to_string(), failed.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(100_000);
            let mut sender = connect(addr).await;
            while Instant::now() < deadline {
                // A server may close a keep-alive connection (nginx does after
                // `keepalive_requests`): open a new one, as wrk does.
                if sender.is_closed() || sender.ready().await.is_err() {
                    sender = connect(addr).await;
                }
                let request = Request::post(path.as_str())
                    .header("host", addr.to_string())
                    .header("content-type", "text/xml; charset=utf-8")
                    .header("soapaction", "\"urn:submit\"")
                    .body(Full::new(body.clone()))
                    .unwrap();
                let started = Instant::now();
                let ok = match sender.send_request(request).await {
                    Ok(response) => {
                        let status = response.status();
                        response.into_body().collect().await.is_ok() && status.is_success()
                    }
                    Err(_) => false,
                };
                if !ok {
                    failed.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                latencies.push(started.elapsed().as_micros() as u32);
            }
            latencies
        }));
    }
    let mut latencies_us = Vec::new();
    for t in tasks {
        latencies_us.extend(t.await.unwrap());
    }
    Samples {
        latencies_us,
        failed: failed.load(Ordering::Relaxed),
        seconds: duration.as_secs_f64(),
    }
}

/// Exchange the route's certificate through the admin API every 100 ms,
/// alternating two certificates (the first is `certs[first % 2]`, so a loop
/// started again goes on where the last one stopped), until `stop`. Returns how
/// many succeeded.
async fn exchange_loop(
    admin: SocketAddr,
    certs: Arc<[Vec<u8>; 2]>,
    first: u64,
    stop: Arc<AtomicBool>,
) -> u64 {
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http();
    let mut done = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let request = Request::put(format!("http://{admin}/v1/keystore/receiver"))
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(Full::new(Bytes::from(
                certs[((first + done) % 2) as usize].clone(),
            )))
            .unwrap();
        match client.request(request).await {
            Ok(r) if r.status().is_success() => done += 1,
            Ok(r) => eprintln!("exchange answered {}", r.status()),
            Err(e) => eprintln!("exchange failed: {e}"),
        }
    }
    done
}

/// A `kB` field of `/proc/PID/status` (`VmHWM`: peak resident, `VmRSS`: now).
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// `concurrency` clients each send one `body` at the same time, `rounds` times.
async fn burst(
    addr: SocketAddr,
    body: Bytes,
    concurrency: usize,
    rounds: usize,
) -> (u64, u64, Vec<String>) {
    let (mut ok, mut failed, mut errors) = (0, 0, Vec::new());
    for _ in 0..rounds {
        let mut tasks = Vec::new();
        for _ in 0..concurrency {
            let body = body.clone();
            tasks.push(tokio::spawn(async move {
                let stream = TcpStream::connect(addr)
                    .await
                    .map_err(|e| format!("connect: {e}"))?;
                let (mut sender, connection) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream))
                        .await
                        .map_err(|e| format!("handshake: {e}"))?;
                tokio::spawn(connection);
                let request = Request::post("/enc")
                    .header("host", addr.to_string())
                    .header("content-type", "text/xml")
                    .body(Full::new(body))
                    .unwrap();
                let response = sender
                    .send_request(request)
                    .await
                    .map_err(|e| format!("send: {e}"))?;
                let status = response.status();
                let answer = response
                    .into_body()
                    .collect()
                    .await
                    .map_err(|e| format!("body: {e}"))?;
                if status.is_success() {
                    Ok(())
                } else {
                    Err(format!(
                        "{status}: {}",
                        String::from_utf8_lossy(&answer.to_bytes())
                            .chars()
                            .take(300)
                            .collect::<String>()
                    ))
                }
            }));
        }
        for t in tasks {
            match t.await {
                Ok(Ok(())) => ok += 1,
                Ok(Err(e)) => {
                    failed += 1;
                    if errors.len() < 3 {
                        errors.push(e);
                    }
                }
                Err(e) => {
                    failed += 1;
                    errors.push(e.to_string());
                }
            }
        }
    }
    (ok, failed, errors)
}

fn row(name: &str, size: &str, f: &Figures, base: Option<&Figures>) {
    let ratio = base
        .map(|b| format!("{:.2}", f.per_second / b.per_second))
        .unwrap_or_else(|| "-".into());
    let added = base
        .map(|b| format!("{:+.2}", f.p50_ms - b.p50_ms))
        .unwrap_or_else(|| "-".into());
    println!(
        "| {name} | {size} | {:.0} | {:.1} | {:.2} | {:.2} | {} | {ratio} | {added} |",
        f.per_second, f.mb_per_second, f.p50_ms, f.p99_ms, f.failed
    );
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes `--bench`; a filter argument is not used.
    // `cargo test --all-targets` runs this binary without `--bench`: a smoke run
    // (1 s, 4 connections, 2 KiB, a burst of 50) keeps the harness working.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let seconds = if smoke {
        1
    } else {
        env_number("LOAD_SECONDS", 10)
    };
    let parts = std::env::var("LOAD_PARTS").unwrap_or_else(|_| "proxy,latency,swap,memory".into());
    let connections = if smoke {
        4
    } else {
        env_number("LOAD_CONNECTIONS", 64) as usize
    };
    let dir = tempfile::tempdir().unwrap();
    let stub = start_stub().await;
    let (wssgate, proxy, admin) = start_wssgate(dir.path(), stub);
    let pid = wssgate.0.id();
    wait_listening(proxy).await;
    let nginx = start_nginx(dir.path(), stub);
    if let Some((_, addr)) = &nginx {
        wait_listening(*addr).await;
    }
    println!(
        "{} s per measurement, {connections} connections, {} cores",
        seconds,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let sizes: &[(usize, &str)] = if parts.contains("proxy") {
        println!();
        println!(
            "| target | body | requests/s | MB/s | p50 ms | p99 ms | failed | / direct | p50 added ms |"
        );
        println!("|---|---|---|---|---|---|---|---|---|");
        if smoke {
            &[(2 * 1024, "2 KiB")]
        } else {
            &[(2 * 1024, "2 KiB"), (100 * 1024, "100 KiB")]
        }
    } else {
        &[]
    };
    for &(size, label) in sizes {
        let body = envelope(size);
        // Warm connections and caches.
        load(proxy, "/enc", body.clone(), connections, 1).await;
        let direct = load(stub, "/service", body.clone(), connections, seconds).await;
        row("direct", label, &direct, None);
        if let Some((_, addr)) = &nginx {
            let f = load(*addr, "/service", body.clone(), connections, seconds).await;
            row("nginx", label, &f, Some(&direct));
        }
        let f = load(proxy, "/pass", body.clone(), connections, seconds).await;
        row("wssgate pass-through", label, &f, Some(&direct));
        let f = load(proxy, "/enc", body.clone(), connections, seconds).await;
        row("wssgate encrypt", label, &f, Some(&direct));
    }
    if nginx.is_none() {
        println!("(nginx not installed: no nginx row)");
    }
    if parts.contains("latency") {
        // One connection, one request at a time: the latency each hop adds
        // without queueing behind other requests.
        println!();
        println!("| one connection, 2 KiB | requests/s | p50 ms | p99 ms | p50 added ms |");
        println!("|---|---|---|---|---|");
        let body = envelope(2 * 1024);
        let direct = load(stub, "/service", body.clone(), 1, seconds).await;
        let mut targets = vec![("direct", stub, "/service")];
        if let Some((_, addr)) = &nginx {
            targets.push(("nginx", *addr, "/service"));
        }
        targets.push(("wssgate pass-through", proxy, "/pass"));
        targets.push(("wssgate encrypt", proxy, "/enc"));
        for (name, addr, path) in targets {
            let f = if name == "direct" {
                direct
            } else {
                load(addr, path, body.clone(), 1, seconds).await
            };
            println!(
                "| {name} | {:.0} | {:.3} | {:.3} | {:+.3} |",
                f.per_second,
                f.p50_ms,
                f.p99_ms,
                f.p50_ms - direct.p50_ms
            );
        }
    }

    // Swap under load: p99 with ten exchanges a second against p99 without.
    println!();
    if parts.contains("swap") {
        swap_under_load(dir.path(), proxy, admin, connections, seconds).await;
    }
    if parts.contains("memory") {
        memory(proxy, pid, if smoke { 50 } else { 1000 }).await;
    }
    drop(nginx);
    drop(wssgate);
}

async fn swap_under_load(
    dir: &Path,
    proxy: SocketAddr,
    admin: SocketAddr,
    connections: usize,
    seconds: u64,
) {
    let body = envelope(2 * 1024);
    let certs = Arc::new([
        std::fs::read(write_cert(dir, "a.pem", 11)).unwrap(),
        std::fs::read(write_cert(dir, "b.pem", 12)).unwrap(),
    ]);
    // The two loads alternate in slices (without, with, with, without, ...), so a
    // drift of the machine over the run weighs on both alike; each side's figures
    // pool its slices.
    let pairs = env_number("LOAD_SWAP_PAIRS", 5).max(1);
    // Warm connections and caches, so the first slice is not a cold one.
    load(proxy, "/enc", body.clone(), connections, 1).await;
    let slice = Duration::from_secs_f64(seconds as f64 / pairs as f64);
    let (mut quiet, mut swapping) = (Samples::default(), Samples::default());
    let mut ratios = Vec::new();
    let mut exchanges = 0u64;
    for pair in 0..pairs {
        let mut pair_p99 = [0.0; 2];
        for exchanging in if pair % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        } {
            let stop = Arc::new(AtomicBool::new(false));
            let exchanger = exchanging.then(|| {
                tokio::spawn(exchange_loop(admin, certs.clone(), exchanges, stop.clone()))
            });
            let mut samples = load_for(proxy, "/enc", body.clone(), connections, slice).await;
            stop.store(true, Ordering::Relaxed);
            if let Some(exchanger) = exchanger {
                exchanges += exchanger.await.unwrap();
            }
            pair_p99[exchanging as usize] = samples.figures(body.len()).p99_ms;
            if exchanging {
                swapping.add(samples);
            } else {
                quiet.add(samples);
            }
        }
        if pair_p99[0] > 0.0 {
            ratios.push(pair_p99[1] / pair_p99[0]);
        }
    }
    let (quiet, swapping) = (quiet.figures(body.len()), swapping.figures(body.len()));
    println!(
        "| encrypt, 2 KiB, {pairs} pairs of {:.1} s slices | requests/s | p50 ms | p99 ms | failed | exchanges |",
        slice.as_secs_f64()
    );
    println!("|---|---|---|---|---|---|");
    println!(
        "| no exchanges | {:.0} | {:.2} | {:.2} | {} | 0 |",
        quiet.per_second, quiet.p50_ms, quiet.p99_ms, quiet.failed
    );
    println!(
        "| 10 exchanges/s | {:.0} | {:.2} | {:.2} | {} | {exchanges} |",
        swapping.per_second, swapping.p50_ms, swapping.p99_ms, swapping.failed
    );
    println!(
        "p99 with exchanges / without: {:.3} (pooled); per pair {}",
        swapping.p99_ms / quiet.p99_ms,
        ratios
            .iter()
            .map(|r| format!("{r:.3}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
}

/// Memory: 1,000 concurrent 100 KiB requests.
async fn memory(proxy: SocketAddr, pid: u32, concurrency: usize) {
    println!();
    let before = status_kib(pid, "VmRSS");
    let (ok, failed, errors) = burst(proxy, envelope(100 * 1024), concurrency, 3).await;
    println!(
        "{concurrency} concurrent 100 KiB requests × 3: {ok} ok, {failed} failed; wssgate RSS before {:.1} MB, peak {:.1} MB",
        before as f64 / 1000.0,
        status_kib(pid, "VmHWM") as f64 / 1000.0
    );
    for e in errors {
        println!("  failure: {e}");
    }
}
