//! The admin API server: authentication, routing of paths to [`Control`]
//! operations and views, and the one conversion of [`ControlError`] into an HTTP
//! answer (`errors`). It holds no renewal logic. Request bodies with
//! certificates and keys are read in `bodies`; the listeners are in `listen`.

mod bodies;
mod errors;
mod listen;

use bodies::{certificate_body, key_body};
pub use errors::ApiError;
use errors::{error_response, file_names_only, json_response};
pub use listen::{run, run_probe, tls_acceptor};

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Body;

use super::contract::{
    self, AliasView, CertificateView, ExchangeAnswer, ExchangeQuery, Health, KeyringAddAnswer,
    KeystoreAlias, KeystoreEntry, PauseAnswer, PauseQuery, ReloadAnswer, ReloadCounts,
    ResumeAnswer, RouteState, RouteView, StageAnswer, StatusAnswer, WithdrawAnswer,
};
use crate::config::{OnPause, Role};
use crate::control::{Actor, Control, ControlError};
use crate::keystore::{self, CertificateSummary, Keystore, KeystoreError};
use crate::proxy::{BoxError, ProxyBody, full_body};
use crate::state::{ReloadTrigger, Snapshot, token_digest};
use crate::time::rfc3339;

/// What the admin API works on.
pub struct Admin {
    /// Every operation, and the state they change.
    pub control: Arc<Control>,
    /// Set once the listeners are bound (`/readyz`).
    pub ready: AtomicBool,
    /// Set at SIGTERM: `/readyz` answers 503 so that traffic goes elsewhere while
    /// the proxy drains.
    pub draining: AtomicBool,
    /// The address the admin listener is bound to (for the Host check).
    pub bound: SocketAddr,
}

/// The caller, once authenticated.
struct Caller {
    name: String,
    role: Role,
}

/// Which endpoint a path names.
enum Endpoint {
    Healthz,
    Readyz,
    Metrics,
    Status,
    Routes,
    Route(String),
    Pause(String),
    Resume(String),
    Reload,
    Keystore,
    KeystoreAlias(String),
    Withdraw(String),
    Keyring,
    KeyringAlias(String),
}

impl Endpoint {
    fn parse(path: &str) -> Option<Endpoint> {
        let segments = contract::paths::segments(path);
        let s: Vec<&str> = segments.iter().map(String::as_str).collect();
        Some(match s.as_slice() {
            ["healthz"] => Endpoint::Healthz,
            ["readyz"] => Endpoint::Readyz,
            ["metrics"] => Endpoint::Metrics,
            ["v1", "status"] => Endpoint::Status,
            ["v1", "routes"] => Endpoint::Routes,
            ["v1", "routes", name] => Endpoint::Route(name.to_string()),
            ["v1", "routes", name, "pause"] => Endpoint::Pause(name.to_string()),
            ["v1", "routes", name, "resume"] => Endpoint::Resume(name.to_string()),
            ["v1", "reload"] => Endpoint::Reload,
            ["v1", "keystore"] => Endpoint::Keystore,
            ["v1", "keystore", alias] => Endpoint::KeystoreAlias(alias.to_string()),
            ["v1", "keystore", alias, "withdraw"] => Endpoint::Withdraw(alias.to_string()),
            ["v1", "keyring"] => Endpoint::Keyring,
            ["v1", "keyring", ring] => Endpoint::KeyringAlias(ring.to_string()),
            _ => return None,
        })
    }

    /// The methods allowed, and the role `method` needs (None: no token).
    fn access(&self, method: &Method) -> (&'static [Method], Option<Role>) {
        match self {
            Endpoint::Healthz | Endpoint::Readyz => (&[Method::GET], None),
            Endpoint::Metrics
            | Endpoint::Status
            | Endpoint::Routes
            | Endpoint::Route(_)
            | Endpoint::Keystore
            | Endpoint::Keyring => (&[Method::GET], Some(Role::Read)),
            Endpoint::Pause(_) | Endpoint::Resume(_) | Endpoint::Reload => {
                (&[Method::POST], Some(Role::Operator))
            }
            Endpoint::Withdraw(_) => (&[Method::POST], Some(Role::Keys)),
            Endpoint::KeystoreAlias(_) | Endpoint::KeyringAlias(_) => (
                &[Method::GET, Method::PUT],
                Some(if method == Method::PUT {
                    Role::Keys
                } else {
                    Role::Read
                }),
            ),
        }
    }
}

impl Admin {
    pub fn new(control: Arc<Control>, bound: SocketAddr) -> Admin {
        Admin {
            control,
            ready: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            bound,
        }
    }

    fn hosts_allowed(&self, host: &str) -> bool {
        let port = self.bound.port();
        let listen = self.control.shared().load().config.admin.listen;
        let mut allowed = vec![self.bound.to_string(), listen.to_string()];
        if self.bound.ip().is_loopback() {
            allowed.extend([
                format!("localhost:{port}"),
                format!("127.0.0.1:{port}"),
                format!("[::1]:{port}"),
            ]);
        }
        allowed.iter().any(|a| a.eq_ignore_ascii_case(host))
    }

    fn authenticate<B>(
        &self,
        snapshot: &Snapshot,
        request: &Request<B>,
    ) -> Result<Caller, ApiError> {
        let unauthorized =
            || ApiError::new(StatusCode::UNAUTHORIZED, "a valid bearer token is required");
        let value = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(unauthorized)?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or_else(unauthorized)?;
        let digest = token_digest(token);
        // Compare with every token (constant time each) so timing says nothing
        // about which token nearly matched.
        let mut found = None;
        for t in &snapshot.admin_tokens {
            if openssl::memcmp::eq(&t.digest, &digest) && found.is_none() {
                found = Some(Caller {
                    name: t.name.clone(),
                    role: t.role,
                });
            }
        }
        found.ok_or_else(unauthorized)
    }

    /// Handle one admin request. Any body will do, so tests call this in
    /// process without a socket.
    pub async fn handle<B>(&self, request: Request<B>) -> Response<ProxyBody>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        match self.route(request).await {
            Ok(r) => r,
            Err(e) => error_response(self.without_paths(e)),
        }
    }

    /// An answer names files by the configuration key they come from, never by
    /// their place on this machine (`state_dir/archive/…`, not `/var/lib/…`).
    fn without_paths(&self, mut e: ApiError) -> ApiError {
        let snapshot = self.control.shared().load();
        let config = &snapshot.config;
        let mut places: Vec<(String, String)> = vec![
            (
                config.keystore.state_dir.display().to_string(),
                "state_dir".into(),
            ),
            (
                config.keystore.dir.display().to_string(),
                "keystore.dir".into(),
            ),
        ];
        // Files named in the configuration, by their key.
        let named = config
            .admin
            .tokens
            .iter()
            .map(|t| (&t.file, format!("admin token {:?}", t.name)))
            .chain(config.admin.tls.iter().flat_map(|(cert, key)| {
                [
                    (cert, "admin.tls_cert".to_string()),
                    (key, "admin.tls_key".to_string()),
                ]
            }))
            .chain(
                config
                    .admin
                    .paused_routes_file
                    .iter()
                    .map(|f| (f, "admin.paused_routes_file".to_string())),
            );
        places.extend(named.map(|(path, key)| (path.display().to_string(), key)));
        if let Some(name) = config.path.file_name() {
            places.push((
                config.path.display().to_string(),
                name.to_string_lossy().into_owned(),
            ));
        }
        if let Some(dir) = config.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            places.push((format!("{}/", dir.display()), String::new()));
        }
        // Longest first, so that a directory inside another is named by its key.
        places.sort_by_key(|(path, _)| std::cmp::Reverse(path.len()));
        if let Some(serde_json::Value::String(message)) = e.body.get_mut("error") {
            for (path, key) in &places {
                // Only absolute places: a relative one ("var") is a common word.
                if path.starts_with('/') && path != "/" {
                    *message = message.replace(path.as_str(), key);
                }
            }
            // What is left in a refusal (a file named by a configuration that was
            // refused, so not the one above) keeps its name and loses its
            // directories. Routing errors name request paths, not files.
            if e.status == StatusCode::UNPROCESSABLE_ENTITY || e.status.is_server_error() {
                *message = file_names_only(message);
            }
        }
        e
    }

    async fn route<B>(&self, request: Request<B>) -> Result<Response<ProxyBody>, ApiError>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        let mut hosts = request.headers().get_all(header::HOST).iter();
        let host = hosts.next().and_then(|v| v.to_str().ok()).unwrap_or("");
        if hosts.next().is_some() {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "a request has one Host header",
            ));
        }
        if !self.hosts_allowed(host) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "the Host header does not name this admin address",
            ));
        }
        let path = request.uri().path().to_string();
        let endpoint = Endpoint::parse(&path).ok_or_else(|| {
            ApiError::new(StatusCode::NOT_FOUND, format!("no such endpoint {path}"))
        })?;
        let method = request.method().clone();
        let (allowed, role) = endpoint.access(&method);
        if !allowed.contains(&method) {
            let mut r = error_response(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{method} is not allowed on {path}"),
            ));
            let allow: Vec<&str> = allowed.iter().map(|m| m.as_str()).collect();
            if let Ok(v) = HeaderValue::from_str(&allow.join(", ")) {
                r.headers_mut().insert(header::ALLOW, v);
            }
            return Ok(r);
        }
        let snapshot = self.control.shared().load();
        let actor = match role {
            None => String::new(),
            Some(needed) => {
                let caller = self.authenticate(&snapshot, &request)?;
                if !caller.role.allows(needed) {
                    return Err(ApiError::new(
                        StatusCode::FORBIDDEN,
                        format!(
                            "token {:?} has role {}; this needs {}",
                            caller.name,
                            caller.role.name(),
                            needed.name()
                        ),
                    ));
                }
                caller.name
            }
        };
        let actor = Actor(&actor);
        let control = &self.control;
        let query = request.uri().query().map(str::to_string);
        match endpoint {
            Endpoint::Healthz => Ok(json_response(
                StatusCode::OK,
                &Health {
                    status: "ok".into(),
                    generation: None,
                },
            )),
            Endpoint::Readyz => Ok(self.readiness(&snapshot)),
            Endpoint::Metrics => Ok(self.metrics(&snapshot)),
            Endpoint::Status => Ok(json_response(StatusCode::OK, &self.status(&snapshot))),
            Endpoint::Routes => {
                let routes: Vec<RouteView> = snapshot
                    .routes
                    .iter()
                    .filter_map(|r| self.route_view(&snapshot, &r.config.name))
                    .collect();
                Ok(json_response(StatusCode::OK, &routes))
            }
            Endpoint::Route(name) => {
                let view = self
                    .route_view(&snapshot, &name)
                    .ok_or(ControlError::UnknownRoute(name))?;
                Ok(json_response(StatusCode::OK, &view))
            }
            Endpoint::Pause(name) => {
                let query: PauseQuery = contract::parse_query(query.as_deref())?;
                let wait = query.wait()?;
                let route = name.clone();
                let paused = detached(control, actor, move |c, a| async move {
                    c.pause(&route, Actor(&a), wait).await
                })
                .await?;
                let status = if wait.is_some() && !paused.drained {
                    StatusCode::ACCEPTED
                } else {
                    StatusCode::OK
                };
                let answer = PauseAnswer {
                    route: self.current_view(&name)?,
                    drained: paused.drained,
                };
                Ok(json_response(status, &answer))
            }
            Endpoint::Resume(name) => {
                let route = name.clone();
                let resumed = detached(control, actor, move |c, a| async move {
                    c.resume(&route, Actor(&a)).await
                })
                .await?;
                let answer = ResumeAnswer {
                    route: self.current_view(&name)?,
                    released: resumed.released,
                };
                Ok(json_response(StatusCode::OK, &answer))
            }
            Endpoint::Reload => {
                let outcome = detached(control, actor, move |c, a| async move {
                    c.reload(ReloadTrigger::Api, Some(Actor(&a))).await
                })
                .await?;
                Ok(json_response(
                    StatusCode::OK,
                    &ReloadAnswer {
                        generation: outcome.generation,
                        changed: outcome.changed,
                    },
                ))
            }
            Endpoint::Keystore => self.keystore_list(&snapshot).await,
            Endpoint::KeystoreAlias(alias) if method == Method::GET => {
                self.keystore_show(&snapshot, alias).await
            }
            Endpoint::KeystoreAlias(alias) => {
                let query: ExchangeQuery = contract::parse_query(query.as_deref())?;
                let activation = query.activation()?;
                let within = snapshot.config.admin.listener.request_timeout;
                let body = certificate_body(request, within).await?;
                let staged = match activation {
                    contract::Activation::Now => {
                        let live = detached(control, actor, move |c, a| async move {
                            c.exchange(&alias, body, Actor(&a)).await
                        })
                        .await?;
                        return Ok(json_response(
                            StatusCode::OK,
                            &ExchangeAnswer {
                                error: None,
                                alias: live.outcome.alias,
                                previous: live.outcome.previous,
                                current: live.outcome.current,
                                generation: Some(live.generation),
                                live: true,
                            },
                        ));
                    }
                    contract::Activation::OnResume => keystore::Activation::OnResume,
                    contract::Activation::At(at) => keystore::Activation::At { at },
                };
                let pending = detached(control, actor, move |c, a| async move {
                    c.stage(&alias, body, staged, Actor(&a)).await
                })
                .await?;
                Ok(json_response(
                    StatusCode::ACCEPTED,
                    &StageAnswer { pending },
                ))
            }
            Endpoint::Withdraw(alias) => {
                let withdrawn = detached(control, actor, move |c, a| async move {
                    c.withdraw(&alias, Actor(&a)).await
                })
                .await?;
                Ok(json_response(StatusCode::OK, &WithdrawAnswer { withdrawn }))
            }
            Endpoint::Keyring => Ok(json_response(StatusCode::OK, &control.keyrings().await?)),
            Endpoint::KeyringAlias(ring) if method == Method::GET => Ok(json_response(
                StatusCode::OK,
                &control.keyring(&ring).await?,
            )),
            Endpoint::KeyringAlias(ring) => {
                let within = snapshot.config.admin.listener.request_timeout;
                let body = key_body(request, within).await?;
                let live = detached(control, actor, move |c, a| async move {
                    c.keyring_add(&ring, body, Actor(&a)).await
                })
                .await?;
                Ok(json_response(
                    StatusCode::OK,
                    &KeyringAddAnswer {
                        error: None,
                        ring: live.outcome.ring,
                        previous: live.outcome.previous,
                        current: live.outcome.current,
                        previous_retain_until: live.outcome.previous_retain_until,
                        generation: Some(live.generation),
                        live: true,
                    },
                ))
            }
        }
    }

    /// One request to the probe listener (`[probe] listen`): `GET /healthz`,
    /// `/readyz` and `/metrics`, without a token and without the Host check
    /// (kubelets and scrapers use the pod's address); anything else is 404.
    pub async fn handle_probe<B>(&self, request: Request<B>) -> Response<ProxyBody> {
        let snapshot = self.control.shared().load();
        let path = request.uri().path();
        if request.method() != Method::GET {
            return error_response(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("{} {path} is not served here", request.method()),
            ));
        }
        match Endpoint::parse(path) {
            Some(Endpoint::Healthz) => json_response(
                StatusCode::OK,
                &Health {
                    status: "ok".into(),
                    generation: None,
                },
            ),
            Some(Endpoint::Readyz) => self.readiness(&snapshot),
            Some(Endpoint::Metrics) => self.metrics(&snapshot),
            _ => error_response(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("{path} is not served here"),
            )),
        }
    }

    fn readiness(&self, snapshot: &Snapshot) -> Response<ProxyBody> {
        if self.draining.load(Ordering::SeqCst) {
            return json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &Health {
                    status: "draining".into(),
                    generation: Some(snapshot.generation),
                },
            );
        }
        if self.ready.load(Ordering::SeqCst) {
            json_response(
                StatusCode::OK,
                &Health {
                    status: "ready".into(),
                    generation: Some(snapshot.generation),
                },
            )
        } else {
            json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &Health {
                    status: "starting".into(),
                    generation: None,
                },
            )
        }
    }

    /// The route as it is now (after an operation), from the newest snapshot.
    fn current_view(&self, name: &str) -> Result<RouteView, ApiError> {
        let snapshot = self.control.shared().load();
        self.route_view(&snapshot, name)
            .ok_or_else(|| ControlError::UnknownRoute(name.to_string()).into())
    }

    fn route_view(&self, snapshot: &Snapshot, name: &str) -> Option<RouteView> {
        let route = snapshot.route(name)?;
        let gate = self.control.gates().get(name);
        let certificate = match (&route.recipient, &route.ring) {
            (Some(recipient), _) => {
                let info = recipient.info();
                CertificateView {
                    serial: info.serial.clone(),
                    issuer: info.issuer.clone(),
                    subject: info.subject.clone(),
                    sha256: info.sha256.clone(),
                    not_after: rfc3339(info.not_after),
                }
            }
            // A decrypt route: the certificate senders encrypt for now.
            (None, Some(ring)) => {
                let s = &ring.keys.first()?.key.summary;
                CertificateView {
                    serial: s.serial.clone(),
                    issuer: s.issuer.clone(),
                    subject: s.subject.clone(),
                    sha256: s.sha256.clone(),
                    not_after: s.not_after.clone(),
                }
            }
            (None, None) => return None,
        };
        Some(RouteView {
            name: name.to_string(),
            state: if gate.is_paused() {
                RouteState::Paused
            } else {
                RouteState::Active
            },
            in_flight: gate.in_flight(),
            held: gate.held(),
            alias: route.config.alias.clone(),
            path: route.config.path.clone(),
            upstream: route.config.upstream.to_string(),
            on_pause: match route.config.on_pause {
                OnPause::Hold => "hold",
                OnPause::Reject => "reject",
            }
            .into(),
            algorithms: route.config.algorithms.to_string(),
            certificate,
            mode: route.config.mode.name().to_string(),
        })
    }

    fn status(&self, snapshot: &Snapshot) -> StatusAnswer {
        let now = SystemTime::now();
        let reloads = self.control.shared().reload_counts();
        StatusAnswer {
            version: env!("CARGO_PKG_VERSION").into(),
            generation: snapshot.generation,
            loaded_at: rfc3339(snapshot.loaded_at),
            config: snapshot
                .config
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            routes: snapshot
                .routes
                .iter()
                .filter_map(|r| self.route_view(snapshot, &r.config.name))
                .collect(),
            aliases: snapshot
                .aliases
                .iter()
                .map(|(alias, r)| AliasView {
                    alias: alias.clone(),
                    serial: r.info().serial.clone(),
                    sha256: r.info().sha256.clone(),
                    not_after: rfc3339(r.info().not_after),
                    days_left: r.info().days_left(now),
                })
                .collect(),
            reloads: ReloadCounts {
                ok: reloads.0,
                failed: reloads.1,
            },
        }
    }

    async fn keystore_list(&self, snapshot: &Snapshot) -> Result<Response<ProxyBody>, ApiError> {
        let store = Keystore::new(snapshot.config.keystore.clone());
        let entries = tokio::task::spawn_blocking(move || store.load())
            .await
            .map_err(|e| ControlError::Internal(e.to_string()))?
            .map_err(ControlError::from)?;
        let now = SystemTime::now();
        let list: Vec<KeystoreEntry> = entries
            .values()
            .map(|e| {
                let routes = snapshot
                    .config
                    .routes_for_alias(&e.alias)
                    .map(|r| r.name.clone())
                    .collect();
                match &e.certificate {
                    Ok(r) => KeystoreEntry {
                        alias: e.alias.clone(),
                        certificate: Some(CertificateSummary::of(r.info())),
                        days_left: Some(r.info().days_left(now)),
                        routes,
                        live: snapshot
                            .aliases
                            .get(&e.alias)
                            .map(|live| live.info().sha256 == r.info().sha256),
                        error: None,
                    },
                    Err(reason) => KeystoreEntry {
                        alias: e.alias.clone(),
                        certificate: None,
                        days_left: None,
                        routes,
                        live: None,
                        error: Some(reason.clone()),
                    },
                }
            })
            .collect();
        Ok(json_response(StatusCode::OK, &list))
    }

    async fn keystore_show(
        &self,
        snapshot: &Snapshot,
        alias: String,
    ) -> Result<Response<ProxyBody>, ApiError> {
        let store = Keystore::new(snapshot.config.keystore.clone());
        let live = snapshot
            .aliases
            .get(&alias)
            .map(|r| CertificateSummary::of(r.info()));
        let answer = tokio::task::spawn_blocking(move || {
            Ok::<_, KeystoreError>(KeystoreAlias {
                history: store.history(&alias)?,
                archive: store.archived(&alias)?,
                pending: store.pending(&alias)?,
                live,
                alias,
            })
        })
        .await
        .map_err(|e| ControlError::Internal(e.to_string()))?
        .map_err(ControlError::from)?;
        Ok(json_response(StatusCode::OK, &answer))
    }

    fn metrics(&self, snapshot: &Snapshot) -> Response<ProxyBody> {
        let m = &self.control.shared().metrics;
        m.generation.set(snapshot.generation as i64);
        for r in &snapshot.routes {
            let gate = self.control.gates().get(&r.config.name);
            let labels = vec![("route", r.config.name.clone())];
            m.paused
                .get_or_create(&labels)
                .set(i64::from(gate.is_paused()));
            m.in_flight
                .get_or_create(&labels)
                .set(gate.in_flight() as i64);
            m.held.get_or_create(&labels).set(gate.held() as i64);
        }
        // Only the certificates in use now: a replaced one leaves the family.
        m.not_after.clear();
        for (alias, r) in &snapshot.aliases {
            let secs = r
                .info()
                .not_after
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0);
            m.not_after
                .get_or_create(&vec![
                    ("alias", alias.clone()),
                    ("serial", r.info().serial.clone()),
                ])
                .set(secs);
        }
        let mut r = Response::new(full_body(Bytes::from(m.encode())));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        );
        r
    }
}

/// Run a [`Control`] operation on a task of its own: a client that goes away
/// mid-call must not cancel it half-way (between the keystore and the snapshot,
/// or the pause file and memory).
async fn detached<T, F, Fut>(
    control: &Arc<Control>,
    actor: Actor<'_>,
    op: F,
) -> Result<T, ControlError>
where
    T: Send + 'static,
    F: FnOnce(Arc<Control>, String) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, ControlError>> + Send + 'static,
{
    let (control, actor) = (control.clone(), actor.0.to_string());
    tokio::spawn(async move { op(control, actor).await })
        .await
        .map_err(|e| ControlError::Internal(e.to_string()))?
}
