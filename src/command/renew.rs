//! The admin API's client: `wssgate ctl` for each endpoint, and `wssgate renew`,
//! which walks an operator through an overlap or exclusive renewal, says who must
//! do what next, and stops safely (routes left paused, nothing half-exchanged) if
//! a step fails.

use std::io::{BufRead, Write};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_openssl::client::legacy::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// Why an admin call failed.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    #[error("cannot reach the admin API at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("{status}: {message}")]
    Refused { status: u16, message: String },
    #[error("{0}")]
    Stopped(String),
}

impl CtlError {
    /// Whether the request itself was refused as invalid (4xx other than auth).
    pub fn is_invalid_input(&self) -> bool {
        matches!(self, CtlError::Refused { status, .. } if matches!(status, 400 | 404 | 413 | 415 | 422))
    }
}

/// A client for one admin API.
pub struct AdminClient {
    base: String,
    token: String,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl AdminClient {
    pub fn new(
        base: &str,
        token: &str,
        ca_file: Option<&std::path::Path>,
    ) -> Result<AdminClient, CtlError> {
        let fail = |e: openssl::error::ErrorStack| CtlError::Unreachable {
            url: base.to_string(),
            reason: e.to_string(),
        };
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(Duration::from_secs(5)));
        let mut ssl = openssl::ssl::SslConnector::builder(openssl::ssl::SslMethod::tls_client())
            .map_err(fail)?;
        match ca_file {
            Some(ca) => ssl.set_ca_file(ca).map_err(fail)?,
            None => ssl.set_default_verify_paths().map_err(fail)?,
        }
        let https = HttpsConnector::with_connector(http, ssl).map_err(fail)?;
        Ok(AdminClient {
            base: base.trim_end_matches('/').to_string(),
            token: token.trim().to_string(),
            client: Client::builder(TokioExecutor::new()).build(https),
        })
    }

    /// Call an endpoint; returns the status and the JSON answer.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(u16, Value), CtlError> {
        let url = format!("{}{path}", self.base);
        let mut req = Request::builder()
            .method(method)
            .uri(&url)
            .header("authorization", format!("Bearer {}", self.token));
        if body.is_some() {
            req = req.header("content-type", "application/x-pem-file");
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| CtlError::Unreachable {
                url: url.clone(),
                reason: e.to_string(),
            })?;
        let resp = tokio::time::timeout(Duration::from_secs(3700), self.client.request(req))
            .await
            .map_err(|_| CtlError::Unreachable {
                url: url.clone(),
                reason: "no answer".into(),
            })?
            .map_err(|e| CtlError::Unreachable {
                url: url.clone(),
                reason: e.to_string(),
            })?;
        let status = resp.status().as_u16();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| CtlError::Unreachable {
                url: url.clone(),
                reason: e.to_string(),
            })?
            .to_bytes();
        let value: Value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        if status >= 400 {
            let message = value["error"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| value.to_string());
            return Err(CtlError::Refused { status, message });
        }
        Ok((status, value))
    }

    pub async fn get(&self, path: &str) -> Result<Value, CtlError> {
        Ok(self.call(Method::GET, path, None).await?.1)
    }

    /// GET with the status.
    pub async fn get_value(&self, path: &str) -> Result<(u16, Value), CtlError> {
        self.call(Method::GET, path, None).await
    }
}

/// One line per route, for people.
pub fn routes_table(routes: &Value) -> String {
    let mut out = format!(
        "{:<16} {:<7} {:>9} {:>5}  {:<20} {:<24} {}\n",
        "ROUTE", "STATE", "IN-FLIGHT", "HELD", "ALIAS", "SERIAL", "NOT AFTER"
    );
    for r in routes.as_array().into_iter().flatten() {
        out.push_str(&format!(
            "{:<16} {:<7} {:>9} {:>5}  {:<20} {:<24} {}\n",
            r["name"].as_str().unwrap_or("-"),
            r["state"].as_str().unwrap_or("-"),
            r["in_flight"].to_string(),
            r["held"].to_string(),
            r["alias"].as_str().unwrap_or("-"),
            r["certificate"]["serial"].as_str().unwrap_or("-"),
            r["certificate"]["not_after"].as_str().unwrap_or("-"),
        ));
    }
    out
}

/// Which renewal procedure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Procedure {
    Overlap,
    Exclusive,
}

/// How `renew` learns that the receiver is ready.
pub enum Confirmation {
    /// `--receiver-ready`: already confirmed out of band.
    Given,
    /// Ask on the terminal.
    Prompt,
}

fn confirm(how: &Confirmation, question: &str, out: &mut dyn Write) -> Result<(), CtlError> {
    match how {
        Confirmation::Given => {
            let _ = writeln!(out, "    {question} yes (--receiver-ready)");
            Ok(())
        }
        Confirmation::Prompt => {
            let _ = write!(out, "    {question} [type yes] ");
            let _ = out.flush();
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .map_err(|e| CtlError::Stopped(format!("no answer: {e}")))?;
            if line.trim().eq_ignore_ascii_case("yes") {
                Ok(())
            } else {
                Err(CtlError::Stopped(
                    "the receiver is not confirmed ready".into(),
                ))
            }
        }
    }
}

/// Walk a renewal procedure against the running daemon, printing each step.
pub async fn renew(
    admin: &AdminClient,
    procedure: Procedure,
    alias: &str,
    certificate: Vec<u8>,
    wait: Duration,
    confirmation: Confirmation,
    out: &mut dyn Write,
) -> Result<(), CtlError> {
    let routes = admin.get("/v1/routes").await?;
    let using: Vec<String> = routes
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["alias"] == alias)
        .filter_map(|r| r["name"].as_str().map(str::to_string))
        .collect();
    let _ = writeln!(
        out,
        "renewal ({}) of alias {alias}: routes {}",
        if procedure == Procedure::Overlap {
            "overlap"
        } else {
            "exclusive"
        },
        if using.is_empty() {
            "(none)".to_string()
        } else {
            using.join(", ")
        }
    );
    let exchange_path = format!("/v1/keystore/{alias}");
    match procedure {
        Procedure::Overlap => {
            let _ = writeln!(
                out,
                "1.  receiver administrator: configure the receiver to accept the old and the new key"
            );
            confirm(
                &confirmation,
                "Does the receiver accept both keys now?",
                out,
            )?;
            let _ = writeln!(
                out,
                "2.  keystore administrator: exchanging the certificate under {alias}"
            );
            let (_, result) = admin
                .call(Method::PUT, &exchange_path, Some(certificate))
                .await?;
            let _ = writeln!(
                out,
                "    live: serial {} replaces serial {} (generation {})",
                result["current"]["serial"].as_str().unwrap_or("?"),
                result["previous"]["serial"].as_str().unwrap_or("?"),
                result["generation"]
            );
            let _ = writeln!(
                out,
                "3.  receiver administrator: every new message uses the new key; remove the old key once no message under it can still arrive"
            );
        }
        Procedure::Exclusive => {
            let mut paused = Vec::new();
            for route in &using {
                let _ = writeln!(
                    out,
                    "1.  operator: pausing route {route} (waiting up to {}s for in-flight requests)",
                    wait.as_secs()
                );
                let (status, view) = admin
                    .call(
                        Method::POST,
                        &format!("/v1/routes/{route}/pause?wait={}", wait.as_secs()),
                        None,
                    )
                    .await
                    .map_err(|e| stopped(&paused, &format!("pausing {route} failed: {e}")))?;
                paused.push(route.clone());
                if status == 202 {
                    return Err(stopped(
                        &paused,
                        &format!(
                            "route {route} still has {} requests in flight after {}s",
                            view["in_flight"],
                            wait.as_secs()
                        ),
                    ));
                }
                let _ = writeln!(
                    out,
                    "    paused; nothing is sent to the receiver now ({} held so far)",
                    view["held"]
                );
            }
            let _ = writeln!(
                out,
                "2.  keystore administrator: exchanging the certificate under {alias}"
            );
            let (_, result) = admin
                .call(Method::PUT, &exchange_path, Some(certificate))
                .await
                .map_err(|e| {
                    stopped(
                        &paused,
                        &format!("the exchange failed, the old certificate stays: {e}"),
                    )
                })?;
            let _ = writeln!(
                out,
                "    exchanged: serial {} replaces serial {}",
                result["current"]["serial"].as_str().unwrap_or("?"),
                result["previous"]["serial"].as_str().unwrap_or("?"),
            );
            let _ = writeln!(
                out,
                "3.  receiver administrator: swap the receiver's key pair now"
            );
            confirm(&confirmation, "Does the receiver hold the new key?", out)
                .map_err(|e| stopped(&paused, &e.to_string()))?;
            for route in &paused {
                let (_, view) = admin
                    .call(Method::POST, &format!("/v1/routes/{route}/resume"), None)
                    .await
                    .map_err(|e| stopped(&paused, &format!("resuming {route} failed: {e}")))?;
                let _ = writeln!(
                    out,
                    "4.  operator: resumed route {route}; {} held requests released in arrival order under the new certificate",
                    view["released"]
                );
            }
        }
    }
    let _ = writeln!(out, "done");
    Ok(())
}

fn stopped(paused: &[String], why: &str) -> CtlError {
    if paused.is_empty() {
        return CtlError::Stopped(format!("{why}; nothing was changed"));
    }
    CtlError::Stopped(format!(
        "{why}; stopped safely: routes {} are left paused (resume with: wssgate ctl resume ROUTE)",
        paused.join(", ")
    ))
}
