//! The admin API: JSON over HTTP on its own listener (loopback by default, TLS
//! required elsewhere), bearer tokens with roles, and the operations of both
//! renewal procedures: pause and resume routes, exchange certificates, reload.
//!
//! Every mutation is a POST or PUT, is checked against the token's role, and is
//! written to the audit log with the token's name as actor. Requests whose Host is
//! not the admin address are refused (DNS rebinding). Tokens are compared in
//! constant time; neither tokens nor key material appear in answers or logs.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::config::Role;
use crate::keystore::audit::{self, AuditRecord};
use crate::keystore::{self, CertificateSummary, Keystore};
use crate::proxy::gate::{Gates, PauseFile, PausedBy};
use crate::proxy::{ProxyBody, full_body};
use crate::state::{ReloadTrigger, Shared, Snapshot, token_digest};
use crate::wss::certificate::rfc3339;

/// Largest certificate accepted by `PUT /v1/keystore/{alias}`.
const MAX_CERTIFICATE_BYTES: usize = 1 << 20;

/// What the admin API works on.
pub struct Admin {
    pub shared: Arc<Shared>,
    pub gates: Arc<Gates>,
    /// Persisted pause state.
    pub pause_file: PauseFile,
    /// Set once the listeners are bound (`/readyz`).
    pub ready: AtomicBool,
    /// The address the admin listener is bound to (for the Host check).
    pub bound: SocketAddr,
}

/// An error answered as JSON.
struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }
}

fn json_response(status: StatusCode, value: &Value) -> Response<ProxyBody> {
    let mut body = serde_json::to_vec_pretty(value).unwrap_or_default();
    body.push(b'\n');
    let mut r = Response::new(full_body(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn error_response(e: ApiError) -> Response<ProxyBody> {
    let mut r = json_response(e.status, &json!({ "error": e.message }));
    if e.status == StatusCode::UNAUTHORIZED {
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    r
}

/// The caller, once authenticated.
struct Caller {
    name: String,
    role: Role,
}

impl Admin {
    fn hosts_allowed(&self, host: &str) -> bool {
        let port = self.bound.port();
        let listen = self.shared.load().config.admin.listen;
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

    fn authenticate(
        &self,
        snapshot: &Snapshot,
        request: &Request<Incoming>,
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

    /// Handle one admin request (no socket needed: tests call this directly).
    pub async fn handle(&self, request: Request<Incoming>) -> Response<ProxyBody> {
        match self.route(request).await {
            Ok(r) => r,
            Err(e) => error_response(e),
        }
    }

    async fn route(&self, request: Request<Incoming>) -> Result<Response<ProxyBody>, ApiError> {
        let host = request
            .headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !self.hosts_allowed(host) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "the Host header does not name this admin address",
            ));
        }
        let path = request.uri().path().to_string();
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let method = request.method().clone();
        // (allowed methods, role needed) for each known path.
        let (allowed, role): (&[Method], Option<Role>) = match segments.as_slice() {
            ["healthz"] | ["readyz"] => (&[Method::GET], None),
            ["metrics"]
            | ["v1", "status"]
            | ["v1", "routes"]
            | ["v1", "routes", _]
            | ["v1", "keystore"] => (&[Method::GET], Some(Role::Read)),
            ["v1", "routes", _, "pause"] | ["v1", "routes", _, "resume"] | ["v1", "reload"] => {
                (&[Method::POST], Some(Role::Operator))
            }
            ["v1", "keystore", _, "withdraw"] => (&[Method::POST], Some(Role::Keys)),
            ["v1", "keystore", _] => match method {
                Method::PUT => (&[Method::GET, Method::PUT], Some(Role::Keys)),
                _ => (&[Method::GET, Method::PUT], Some(Role::Read)),
            },
            _ => {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    format!("no such endpoint {path}"),
                ));
            }
        };
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
        let snapshot = self.shared.load();
        let caller = match role {
            None => None,
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
                Some(caller)
            }
        };
        let actor = caller.as_ref().map(|c| c.name.clone()).unwrap_or_default();
        let query: HashMap<String, String> = request
            .uri()
            .query()
            .map(|q| {
                q.split('&')
                    .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            })
            .unwrap_or_default();
        match (segments.as_slice(), method) {
            (["healthz"], _) => Ok(json_response(StatusCode::OK, &json!({"status": "ok"}))),
            (["readyz"], _) => {
                if self.ready.load(Ordering::SeqCst) {
                    Ok(json_response(
                        StatusCode::OK,
                        &json!({"status": "ready", "generation": snapshot.generation}),
                    ))
                } else {
                    Ok(json_response(
                        StatusCode::SERVICE_UNAVAILABLE,
                        &json!({"status": "starting"}),
                    ))
                }
            }
            (["metrics"], _) => Ok(self.metrics(&snapshot)),
            (["v1", "status"], _) => Ok(json_response(StatusCode::OK, &self.status(&snapshot))),
            (["v1", "routes"], _) => {
                let routes: Vec<Value> = snapshot
                    .routes
                    .iter()
                    .map(|r| self.route_view(&snapshot, &r.config.name))
                    .collect();
                Ok(json_response(StatusCode::OK, &Value::Array(routes)))
            }
            (["v1", "routes", name], _) => {
                self.known_route(&snapshot, name)?;
                Ok(json_response(
                    StatusCode::OK,
                    &self.route_view(&snapshot, name),
                ))
            }
            (["v1", "routes", name, "pause"], _) => {
                let wait = match query.get("wait") {
                    Some(w) => Some(
                        w.parse::<f64>()
                            .ok()
                            .filter(|s| s.is_finite() && *s >= 0.0 && *s <= 3600.0)
                            .ok_or_else(|| {
                                ApiError::new(
                                    StatusCode::BAD_REQUEST,
                                    "wait must be a number of seconds (0 to 3600)",
                                )
                            })?,
                    ),
                    None => None,
                };
                self.pause(&snapshot, name, &actor, wait).await
            }
            (["v1", "routes", name, "resume"], _) => self.resume(&snapshot, name, &actor).await,
            (["v1", "reload"], _) => self.reload(&actor).await,
            (["v1", "keystore"], _) => self.keystore_list(&snapshot),
            (["v1", "keystore", alias], Method::GET) => self.keystore_show(&snapshot, alias),
            (["v1", "keystore", alias, "withdraw"], _) => {
                let store = Keystore::new(snapshot.config.keystore.clone());
                let withdrawn = store
                    .withdraw(alias, &actor, SystemTime::now())
                    .map_err(|e| {
                        ApiError::new(
                            if e.is_invalid_input() {
                                StatusCode::NOT_FOUND
                            } else {
                                StatusCode::INTERNAL_SERVER_ERROR
                            },
                            e.to_string(),
                        )
                    })?;
                Ok(json_response(
                    StatusCode::OK,
                    &json!({"withdrawn": withdrawn}),
                ))
            }
            (["v1", "keystore", alias], _) => {
                let alias = alias.to_string();
                let activation = match (
                    query.get("activate").map(String::as_str),
                    query.get("activate_at"),
                ) {
                    (None | Some("now"), None) => None,
                    (Some("on-resume"), None) => Some(keystore::Activation::OnResume),
                    (None, Some(at)) => {
                        let at = at
                            .replace("%3A", ":")
                            .replace("%3a", ":")
                            .replace("%2B", "+")
                            .replace("%2b", "+");
                        humantime::parse_rfc3339(&at).map_err(|e| {
                            ApiError::new(
                                StatusCode::BAD_REQUEST,
                                format!("activate_at is not RFC 3339: {e}"),
                            )
                        })?;
                        Some(keystore::Activation::At { at })
                    }
                    _ => {
                        return Err(ApiError::new(
                            StatusCode::BAD_REQUEST,
                            "use activate=now|on-resume or activate_at=RFC3339",
                        ));
                    }
                };
                match activation {
                    None => self.exchange(request, &alias, &actor).await,
                    Some(a) => self.stage(request, &alias, &actor, a).await,
                }
            }
            _ => Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no such endpoint {path}"),
            )),
        }
    }

    fn known_route(&self, snapshot: &Snapshot, name: &str) -> Result<(), ApiError> {
        snapshot
            .route(name)
            .map(|_| ())
            .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no route named {name:?}")))
    }

    fn route_view(&self, snapshot: &Snapshot, name: &str) -> Value {
        let Some(route) = snapshot.route(name) else {
            return json!({"name": name});
        };
        let gate = self.gates.get(name);
        let info = route.recipient.info();
        json!({
            "name": name,
            "state": if gate.is_paused() { "paused" } else { "active" },
            "in_flight": gate.in_flight(),
            "held": gate.held(),
            "alias": route.config.alias,
            "path": route.config.path,
            "upstream": route.config.upstream.to_string(),
            "on_pause": match route.config.on_pause { crate::config::OnPause::Hold => "hold", crate::config::OnPause::Reject => "reject" },
            "algorithms": route.config.algorithms.to_string(),
            "certificate": {
                "serial": info.serial,
                "issuer": info.issuer,
                "subject": info.subject,
                "sha256": info.sha256,
                "not_after": rfc3339(info.not_after),
            },
        })
    }

    fn status(&self, snapshot: &Snapshot) -> Value {
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "generation": snapshot.generation,
            "loaded_at": rfc3339(snapshot.loaded_at),
            "config": snapshot.config.path.display().to_string(),
            "routes": snapshot.routes.iter().map(|r| self.route_view(snapshot, &r.config.name)).collect::<Vec<_>>(),
            "aliases": snapshot.aliases.iter().map(|(alias, r)| json!({
                "alias": alias,
                "serial": r.info().serial,
                "sha256": r.info().sha256,
                "not_after": rfc3339(r.info().not_after),
                "days_left": r.info().days_left(SystemTime::now()),
            })).collect::<Vec<_>>(),
            "reloads": {
                "ok": self.shared.reloads_ok.load(Ordering::Relaxed),
                "failed": self.shared.reloads_failed.load(Ordering::Relaxed),
            },
        })
    }

    fn audit(&self, snapshot: &Snapshot, mut record: AuditRecord) {
        if record.result.is_empty() {
            record.result = "ok".into();
        }
        if let Err(e) = audit::append(&snapshot.config.keystore.state_dir, &record) {
            tracing::error!(error = %e, action = %record.action, "cannot write the audit log");
        }
    }

    /// Write a route's pause state to disk (blocking work off the async threads).
    async fn persist_pause(&self, route: &str, paused: Option<PausedBy>) -> Result<(), String> {
        let file = self.pause_file.clone();
        let route = route.to_string();
        match tokio::task::spawn_blocking(move || file.set(&route, paused)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    }

    async fn pause(
        &self,
        snapshot: &Snapshot,
        name: &str,
        actor: &str,
        wait: Option<f64>,
    ) -> Result<Response<ProxyBody>, ApiError> {
        self.known_route(snapshot, name)?;
        let gate = self.gates.get(name);
        gate.pause().await;
        let by = PausedBy {
            by: actor.to_string(),
            since: rfc3339(SystemTime::now()),
        };
        let mut record = AuditRecord::new(actor, "pause", SystemTime::now());
        record.detail = Some(json!({"route": name}));
        if let Err(e) = self.persist_pause(name, Some(by)).await {
            record.result = format!("failed: pause state not saved: {e}");
            self.audit(snapshot, record);
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("paused, but the pause state could not be saved: {e}"),
            ));
        }
        self.audit(snapshot, record);
        tracing::info!(route = %name, by = %actor, "route paused");
        let drained = match wait {
            Some(secs) => gate.wait_drained(Duration::from_secs_f64(secs)).await,
            None => gate.in_flight() == 0,
        };
        let status = if wait.is_some() && !drained {
            StatusCode::ACCEPTED
        } else {
            StatusCode::OK
        };
        let mut view = self.route_view(snapshot, name);
        view["drained"] = json!(drained);
        Ok(json_response(status, &view))
    }

    async fn resume(
        &self,
        snapshot: &Snapshot,
        name: &str,
        actor: &str,
    ) -> Result<Response<ProxyBody>, ApiError> {
        self.known_route(snapshot, name)?;
        let mut record = AuditRecord::new(actor, "resume", SystemTime::now());
        let held = self.gates.get(name).held();
        record.detail = Some(json!({"route": name, "held": held}));
        // A certificate staged for this moment becomes active before anything held
        // is released, once no other route using the alias is still paused.
        let alias = snapshot
            .route(name)
            .map(|r| r.config.alias.clone())
            .unwrap_or_default();
        let others_paused = snapshot
            .config
            .routes_for_alias(&alias)
            .any(|r| r.name != name && self.gates.get(&r.name).is_paused());
        let store = Keystore::new(snapshot.config.keystore.clone());
        if !others_paused
            && let Ok(Some(p)) = store.pending(&alias)
            && p.activation == keystore::Activation::OnResume
        {
            let admin_alias = alias.clone();
            let actor_owned = actor.to_string();
            let activated =
                tokio::task::block_in_place(|| self.activate(&admin_alias, &actor_owned));
            if let Err(e) = activated {
                record.result = format!("failed: staged certificate not activated: {e}");
                self.audit(snapshot, record);
                return Err(ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("not resumed: the staged certificate could not be activated: {e}"),
                ));
            }
            record.detail = Some(json!({"route": name, "held": held, "activated": p.certificate}));
        }
        // Recorded as active on disk only once nothing can stop the resume.
        if let Err(e) = self.persist_pause(name, None).await {
            record.result = format!("failed: pause state not saved: {e}");
            self.audit(snapshot, record);
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("not resumed: the pause state could not be saved: {e}"),
            ));
        }
        self.gates.get(name).resume();
        self.audit(snapshot, record);
        tracing::info!(route = %name, by = %actor, released = held, "route resumed");
        let mut view = self.route_view(snapshot, name);
        view["released"] = json!(held);
        Ok(json_response(StatusCode::OK, &view))
    }

    async fn reload(&self, actor: &str) -> Result<Response<ProxyBody>, ApiError> {
        let shared = self.shared.clone();
        let result = tokio::task::spawn_blocking(move || shared.reload(ReloadTrigger::Api))
            .await
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        let snapshot = self.shared.load();
        let mut record = AuditRecord::new(actor, "reload", SystemTime::now());
        match result {
            Ok(outcome) => {
                record.detail =
                    Some(json!({"generation": outcome.generation, "changed": outcome.changed}));
                self.audit(&snapshot, record);
                Ok(json_response(
                    StatusCode::OK,
                    &json!({"generation": outcome.generation, "changed": outcome.changed}),
                ))
            }
            Err(e) => {
                record.result = format!("refused: {e}");
                self.audit(&snapshot, record);
                Ok(json_response(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    &json!({"error": e.to_string(), "generation": snapshot.generation, "kept": "the running configuration is unchanged"}),
                ))
            }
        }
    }

    fn keystore_list(&self, snapshot: &Snapshot) -> Result<Response<ProxyBody>, ApiError> {
        let store = Keystore::new(snapshot.config.keystore.clone());
        let entries = store
            .load()
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        let list: Vec<Value> = entries
            .values()
            .map(|e| {
                let routes: Vec<&str> = snapshot.config.routes_for_alias(&e.alias).map(|r| r.name.as_str()).collect();
                match &e.certificate {
                    Ok(r) => json!({
                        "alias": e.alias,
                        "certificate": CertificateSummary::of(r.info()),
                        "days_left": r.info().days_left(SystemTime::now()),
                        "routes": routes,
                        "live": snapshot.aliases.get(&e.alias).map(|live| live.info().sha256 == r.info().sha256),
                    }),
                    Err(reason) => json!({"alias": e.alias, "error": reason, "routes": routes}),
                }
            })
            .collect();
        Ok(json_response(StatusCode::OK, &Value::Array(list)))
    }

    fn keystore_show(
        &self,
        snapshot: &Snapshot,
        alias: &str,
    ) -> Result<Response<ProxyBody>, ApiError> {
        let store = Keystore::new(snapshot.config.keystore.clone());
        let history = store.history(alias).map_err(|e| match e {
            keystore::KeystoreError::UnknownAlias(_) | keystore::KeystoreError::InvalidAlias(_) => {
                ApiError::new(StatusCode::NOT_FOUND, e.to_string())
            }
            other => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
        })?;
        let archived = store
            .archived(alias)
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        let live = snapshot
            .aliases
            .get(alias)
            .map(|r| CertificateSummary::of(r.info()));
        let pending = store
            .pending(alias)
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        Ok(json_response(
            StatusCode::OK,
            &json!({"alias": alias, "live": live, "pending": pending, "history": history, "archive": archived}),
        ))
    }

    /// The keystore and the certificate policy for `alias` under the running
    /// configuration (SKI required when a route uses `ski`).
    fn keystore_for(&self, alias: &str) -> (Keystore, crate::wss::CertificatePolicy) {
        let config = self.shared.load().config.clone();
        let needs_ski = config.aliases_needing_ski().iter().any(|a| a == alias);
        (
            Keystore::new(config.keystore.clone()),
            keystore::policy(&config.keystore, needs_ski),
        )
    }

    /// The PEM certificate in a request body: a PEM-ish content type, under 1 MiB.
    async fn certificate_body(request: Request<Incoming>) -> Result<Bytes, ApiError> {
        let content_type = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            });
        if let Some(ct) = &content_type
            && !matches!(
                ct.as_str(),
                "application/x-pem-file"
                    | "application/pem-certificate-chain"
                    | "text/plain"
                    | "application/pkix-cert"
                    | ""
            )
        {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("content type {ct:?} is not a PEM certificate"),
            ));
        }
        Ok(Limited::new(request.into_body(), MAX_CERTIFICATE_BYTES)
            .collect()
            .await
            .map_err(|_| {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "the certificate must be under 1 MiB",
                )
            })?
            .to_bytes())
    }

    /// Apply the paused-routes file (`admin.paused_routes_file`): pause the routes it
    /// lists, resume those it paused and no longer lists. `by_file` is the set this
    /// file has paused so far; routes paused through the API are left alone.
    pub async fn apply_paused_routes_file(&self, by_file: &mut std::collections::BTreeSet<String>) {
        let snapshot = self.shared.load();
        let Some(path) = snapshot.config.admin.paused_routes_file.clone() else {
            return;
        };
        let listed: std::collections::BTreeSet<String> = match std::fs::read_to_string(&path) {
            Ok(text) => text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .filter(|name| {
                    let known = snapshot.route(name).is_some();
                    if !known {
                        tracing::warn!(route = %name, file = %path.display(), "paused_routes_file names no such route");
                    }
                    known
                })
                .map(str::to_string)
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Default::default(),
            Err(e) => {
                tracing::error!(error = %e, file = %path.display(), "cannot read paused_routes_file; nothing changed");
                return;
            }
        };
        let actor = format!("file:{}", path.display());
        for name in listed.difference(by_file).cloned().collect::<Vec<_>>() {
            if self.pause(&snapshot, &name, &actor, None).await.is_ok() {
                by_file.insert(name);
            }
        }
        for name in by_file.difference(&listed).cloned().collect::<Vec<_>>() {
            if self.resume(&snapshot, &name, &actor).await.is_ok() {
                by_file.remove(&name);
            }
        }
    }

    /// Stage a validated certificate to become active later.
    async fn stage(
        &self,
        request: Request<Incoming>,
        alias: &str,
        actor: &str,
        activation: keystore::Activation,
    ) -> Result<Response<ProxyBody>, ApiError> {
        let body = Self::certificate_body(request).await?;
        let (store, policy) = self.keystore_for(alias);
        let (alias, actor) = (alias.to_string(), actor.to_string());
        let staged = tokio::task::spawn_blocking(move || {
            store.stage(
                &alias,
                &body,
                activation,
                &actor,
                &policy,
                SystemTime::now(),
            )
        })
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| {
            let status = match e {
                keystore::KeystoreError::UnknownAlias(_) => StatusCode::NOT_FOUND,
                ref e if e.is_invalid_input() => StatusCode::UNPROCESSABLE_ENTITY,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            ApiError::new(status, e.to_string())
        })?;
        tracing::info!(alias = %staged.alias, serial = %staged.certificate.serial, activation = ?staged.activation, "certificate staged");
        Ok(json_response(
            StatusCode::ACCEPTED,
            &json!({"pending": staged}),
        ))
    }

    /// Activate the staged certificate of `alias` and make it live (blocking).
    fn activate(
        &self,
        alias: &str,
        actor: &str,
    ) -> Result<(keystore::ExchangeOutcome, u64), String> {
        let (store, policy) = self.keystore_for(alias);
        let outcome = store
            .activate_pending(alias, actor, &policy, SystemTime::now())
            .map_err(|e| e.to_string())?;
        let reloaded = self
            .shared
            .reload(ReloadTrigger::Exchange)
            .map_err(|e| format!("activated on disk but the reload failed: {e}"))?;
        tracing::info!(alias = %alias, serial = %outcome.current.serial, generation = reloaded.generation, "staged certificate activated");
        Ok((outcome, reloaded.generation))
    }

    /// Activate staged certificates whose time has come. Run every second.
    pub async fn activate_due(self: &Arc<Self>) {
        let store = Keystore::new(self.shared.load().config.keystore.clone());
        let Ok(pending) = store.all_pending() else {
            return;
        };
        let now = SystemTime::now();
        for p in pending {
            let keystore::Activation::At { at } = &p.activation else {
                continue;
            };
            if humantime::parse_rfc3339(at).is_ok_and(|t| t <= now) {
                let admin = self.clone();
                let actor = format!("{} (activate_at)", p.staged_by);
                let result =
                    tokio::task::spawn_blocking(move || admin.activate(&p.alias, &actor)).await;
                if let Ok(Err(e)) = result {
                    tracing::error!(error = %e, "scheduled activation failed; the staged certificate stays pending");
                }
            }
        }
    }

    /// Exchange the certificate under the same alias, then make it live: the call
    /// returns once every new message uses the new certificate.
    async fn exchange(
        &self,
        request: Request<Incoming>,
        alias: &str,
        actor: &str,
    ) -> Result<Response<ProxyBody>, ApiError> {
        let body = Self::certificate_body(request).await?;
        let (store, policy) = self.keystore_for(alias);
        let (alias_owned, actor_owned) = (alias.to_string(), actor.to_string());
        let shared = self.shared.clone();
        // Exchange on disk (archive, audit, crash safety), then the same reload
        // path as SIGHUP; both blocking, neither on the request path.
        let result = tokio::task::spawn_blocking(move || {
            let outcome = store.exchange(
                &alias_owned,
                &body,
                &actor_owned,
                &policy,
                SystemTime::now(),
            )?;
            Ok::<_, keystore::KeystoreError>((outcome, shared.reload(ReloadTrigger::Exchange)))
        })
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        match result {
            Err(e) if e.is_invalid_input() => {
                let status = if matches!(e, keystore::KeystoreError::UnknownAlias(_)) {
                    StatusCode::NOT_FOUND
                } else {
                    StatusCode::UNPROCESSABLE_ENTITY
                };
                Err(ApiError::new(status, e.to_string()))
            }
            Err(e) => Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                e.to_string(),
            )),
            Ok((outcome, Ok(reloaded))) => {
                tracing::info!(alias = %alias, by = %actor, serial = %outcome.current.serial, sha256 = %outcome.current.sha256, generation = reloaded.generation, "certificate exchanged and live");
                Ok(json_response(
                    StatusCode::OK,
                    &json!({
                        "alias": alias,
                        "previous": outcome.previous,
                        "current": outcome.current,
                        "generation": reloaded.generation,
                        "live": true,
                    }),
                ))
            }
            Ok((outcome, Err(e))) => Ok(json_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                &json!({
                    "error": format!("the certificate was exchanged on disk but the reload failed: {e}"),
                    "alias": alias,
                    "previous": outcome.previous,
                    "current": outcome.current,
                    "live": false,
                }),
            )),
        }
    }

    fn metrics(&self, snapshot: &Snapshot) -> Response<ProxyBody> {
        let m = &self.shared.metrics;
        m.generation.set(snapshot.generation as i64);
        for r in &snapshot.routes {
            let gate = self.gates.get(&r.config.name);
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

/// Serve the admin API on `listener` (with TLS when `tls` is given) until
/// `shutdown` completes.
pub async fn run(
    admin: Arc<Admin>,
    listener: TcpListener,
    tls: Option<openssl::ssl::SslAcceptor>,
    shutdown: impl Future<Output = ()>,
) {
    let tls = tls.map(Arc::new);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let admin = admin.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let admin = admin.clone();
                        async move { Ok::<_, Infallible>(admin.handle(req).await) }
                    });
                    let builder = hyper::server::conn::http1::Builder::new();
                    match tls {
                        Some(acceptor) => {
                            let Ok(ssl) = openssl::ssl::Ssl::new(acceptor.context()) else { return };
                            let Ok(mut stream) = tokio_openssl::SslStream::new(ssl, stream) else { return };
                            if std::pin::Pin::new(&mut stream).accept().await.is_err() {
                                return;
                            }
                            let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                        }
                        None => {
                            let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                        }
                    }
                });
            }
            () = &mut shutdown => return,
        }
    }
}

/// The TLS acceptor for a non-loopback admin listener.
pub fn tls_acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<openssl::ssl::SslAcceptor, String> {
    use openssl::ssl::{SslAcceptor, SslFiletype, SslMethod};
    let mut b =
        SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server()).map_err(|e| e.to_string())?;
    b.set_certificate_chain_file(cert)
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    b.set_private_key_file(key, SslFiletype::PEM)
        .map_err(|e| format!("{}: {e}", key.display()))?;
    b.check_private_key().map_err(|e| e.to_string())?;
    Ok(b.build())
}
