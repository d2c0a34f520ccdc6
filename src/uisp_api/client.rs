//! A UISP NMS API client on reqwest with rustls: the `x-auth-token` header, TLS verified
//! (system roots, or a CA file), a long timeout for the unpaginated `GET /devices`, retries with
//! backoff on 429 and 5xx for reads only (a write is never repeated blindly), and a clear error
//! when the key is not an NMS API token (a CRM app key answers with an object, not a list).
//!
//! # Warning
//! The token travels only in a header; no error, log line or URL here carries it.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::{Endpoint, Server};
use crate::mac::normalise_mac;

/// A UISP request failed.
#[derive(Debug, thiserror::Error)]
pub enum UispError {
    /// The server answered with an error status.
    #[error("{method} {path}: {status} {message}")]
    Http {
        /// Method.
        method: String,
        /// Path below the API base.
        path: String,
        /// Status code.
        status: u16,
        /// The server's `message` (or `error`).
        message: String,
    },
    /// The key is not an NMS API token.
    #[error("{0}")]
    NotNms(String),
    /// No answer (connection, TLS, timeout).
    #[error("{method} {path}: {message}")]
    Transport {
        /// Method.
        method: String,
        /// Path.
        path: String,
        /// What failed.
        message: String,
    },
    /// The client could not be set up (TLS settings, or a lab without this server).
    #[error("{0}")]
    Setup(String),
    /// An answer that is not the JSON expected.
    #[error("{path}: unexpected answer: {message}")]
    Decode {
        /// Path.
        path: String,
        /// What was wrong.
        message: String,
    },
}

/// A device as UISP lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveDevice {
    /// UISP's id.
    pub id: String,
    /// Normalised MAC.
    pub mac: String,
    /// Name, when it has one.
    pub name: Option<String>,
    /// IP address without a prefix length.
    pub ip: Option<String>,
    /// Authorized.
    pub authorized: bool,
    /// Its site's id (none when unauthorized).
    pub site_id: Option<String>,
    /// Status word (`active`, `disconnected`, ...).
    pub status: String,
    /// `meta.failedMessageDecryption`: its key is out of step.
    pub failed_decryption: bool,
}

impl LiveDevice {
    /// A ghost: no name, no IP, not authorized.
    pub fn is_ghost(&self) -> bool {
        self.name.as_deref().is_none_or(str::is_empty)
            && self.ip.as_deref().is_none_or(str::is_empty)
            && !self.authorized
    }
}

/// A site as UISP lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveSite {
    /// UISP's id.
    pub id: String,
    /// Name.
    pub name: String,
    /// `site` or `endpoint`.
    pub kind: String,
    /// Parent's id.
    pub parent_id: Option<String>,
    /// Address.
    pub address: String,
    /// Note.
    pub note: String,
    /// The object as read, for read-modify-write updates.
    pub raw: Value,
}

/// A connection to one UISP server.
pub struct UispClient {
    http: reqwest::Client,
    api: String,
    token: crate::secret::Secret,
    /// Tries of a read (the first one included).
    read_tries: u32,
}

fn text(v: &Value, ptr: &str) -> Option<String> {
    v.pointer(ptr).and_then(Value::as_str).map(str::to_string)
}

impl UispClient {
    /// A client for `server`, reached at `endpoint` instead of its URL when given (a lab
    /// twin, with its own certificate to trust).
    pub fn new(server: &Server, endpoint: Option<&Endpoint>) -> Result<Self, String> {
        let tls = match endpoint {
            Some(e) => crate::tls::client_config_with_ca_pem(&e.ca_pem)?,
            None => crate::tls::client_config(server.tls.as_ref())?,
        };
        // Redirects are not followed: reqwest would carry the token header along, even to a
        // plain http:// address.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .tls_backend_preconfigured(tls)
            .timeout(server.timeout)
            .connect_timeout(Duration::from_secs(15))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(UispClient {
            http,
            api: endpoint.map_or_else(|| server.api.clone(), |e| e.api.clone()),
            token: server.token.clone(),
            read_tries: 4,
        })
    }

    async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, UispError> {
        let read = method == Method::GET;
        let tries = if read { self.read_tries } else { 1 };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut token =
                reqwest::header::HeaderValue::from_str(self.token.expose()).map_err(|_| {
                    UispError::NotNms(
                        "the UISP token holds characters a header cannot carry".into(),
                    )
                })?;
            token.set_sensitive(true);
            let mut req = self
                .http
                .request(method.clone(), format!("{}{path}", self.api))
                .header("x-auth-token", token)
                .header("accept", "application/json");
            if let Some(b) = body {
                req = req.json(b);
            }
            let transport = |e: reqwest::Error| UispError::Transport {
                method: method.to_string(),
                path: path.to_string(),
                // Without the URL: it is safe, but the message is shorter.
                message: e.without_url().to_string(),
            };
            let result = req.send().await;
            let resp = match result {
                Ok(r) => r,
                Err(e) if read && attempt < tries => {
                    tracing::debug!(
                        path,
                        attempt,
                        "UISP read failed, retrying: {}",
                        transport(e)
                    );
                    tokio::time::sleep(backoff(attempt, None)).await;
                    continue;
                }
                Err(e) => return Err(transport(e)),
            };
            let status = resp.status();
            let retry_after = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            let bytes = resp.bytes().await.map_err(transport)?;
            let value: Value = if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes)
                    .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
            };
            if status.is_success() {
                return Ok(value);
            }
            let retryable = status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error();
            if read && retryable && attempt < tries {
                tracing::debug!(
                    path,
                    attempt,
                    status = status.as_u16(),
                    "UISP read refused, retrying"
                );
                tokio::time::sleep(backoff(attempt, retry_after)).await;
                continue;
            }
            let message = text(&value, "/message")
                .or_else(|| text(&value, "/error"))
                .unwrap_or_else(|| status.canonical_reason().unwrap_or("").to_string());
            if status == StatusCode::UNAUTHORIZED {
                return Err(UispError::NotNms(format!(
                    "UISP refused the token (401 {message}): it must be an NMS API token (Settings > Users > API tokens), not a CRM app key"
                )));
            }
            if status == StatusCode::FORBIDDEN {
                return Err(UispError::Http {
                    method: method.to_string(),
                    path: path.to_string(),
                    status: 403,
                    message: format!(
                        "{message} (the token lacks permission for this: a read-only token?)"
                    ),
                });
            }
            if status.is_redirection() {
                return Err(UispError::Http {
                    method: method.to_string(),
                    path: path.to_string(),
                    status: status.as_u16(),
                    message: "UISP answered with a redirect, which wispctl does not follow (the token would go along): set url to the address it redirects to".into(),
                });
            }
            return Err(UispError::Http {
                method: method.to_string(),
                path: path.to_string(),
                status: status.as_u16(),
                message,
            });
        }
    }

    async fn list(&self, path: &str) -> Result<Vec<Value>, UispError> {
        match self.request(Method::GET, path, None).await? {
            Value::Array(items) => Ok(items),
            other => Err(UispError::NotNms(format!(
                "GET {path} answered {} instead of a list: the key is not an NMS API token (a CRM app key?)",
                match other {
                    Value::Object(_) => "an object",
                    _ => "something else",
                }
            ))),
        }
    }

    /// One device, read now.
    pub async fn device(&self, id: &str) -> Result<LiveDevice, UispError> {
        let path = format!("/devices/{id}");
        let v = self.request(Method::GET, &path, None).await?;
        device_from(&v, &path)
    }

    /// Every device, in one request.
    pub async fn devices(&self) -> Result<Vec<LiveDevice>, UispError> {
        let items = self.list("/devices").await?;
        items.iter().map(|d| device_from(d, "/devices")).collect()
    }

    /// Every site, in one request.
    pub async fn sites(&self) -> Result<Vec<LiveSite>, UispError> {
        let items = self.list("/sites").await?;
        Ok(items.into_iter().map(site_from).collect())
    }

    /// The server's current connection string (a secret).
    pub async fn connection_string(&self) -> Result<crate::secret::Secret, UispError> {
        match self.request(Method::GET, "/nms/connection", None).await? {
            Value::String(s) => Ok(crate::secret::Secret::new(s)),
            _ => Err(UispError::Decode {
                path: "/nms/connection".into(),
                message: "not a string".into(),
            }),
        }
    }

    /// Creates a site.
    pub async fn create_site(
        &self,
        name: &str,
        kind: &str,
        parent: Option<&str>,
        address: &str,
        note: &str,
    ) -> Result<LiveSite, UispError> {
        let mut body = json!({ "name": name, "type": kind, "address": address, "note": note });
        if let Some(p) = parent {
            body["parentSiteId"] = json!(p);
        }
        Ok(site_from(
            self.request(Method::POST, "/sites", Some(&body)).await?,
        ))
    }

    /// Updates a site: the object as read, with these fields replaced.
    pub async fn update_site(
        &self,
        site: &LiveSite,
        name: &str,
        parent: Option<&str>,
        address: &str,
        note: &str,
    ) -> Result<LiveSite, UispError> {
        let mut body = site.raw.clone();
        body["identification"]["name"] = json!(name);
        body["identification"]["parent"] = match parent {
            Some(p) => json!({ "id": p }),
            None => Value::Null,
        };
        if !body["description"].is_object() {
            body["description"] = json!({});
        }
        body["description"]["address"] = json!(address);
        body["description"]["note"] = json!(note);
        let path = format!("/sites/{}", site.id);
        Ok(site_from(
            self.request(Method::PUT, &path, Some(&body)).await?,
        ))
    }

    /// Deletes an (empty) site.
    pub async fn delete_site(&self, id: &str) -> Result<(), UispError> {
        self.request(Method::DELETE, &format!("/sites/{id}"), None)
            .await
            .map(drop)
    }

    /// Authorizes devices into a site (moving them when already authorized): one call.
    pub async fn authorize(&self, site_id: &str, device_ids: &[String]) -> Result<(), UispError> {
        let body = json!({ "siteId": site_id, "deviceIds": device_ids });
        self.request(Method::POST, "/devices/authorize", Some(&body))
            .await
            .map(drop)
    }

    /// Takes a device out of its site.
    pub async fn unassign(&self, id: &str) -> Result<(), UispError> {
        self.request(Method::POST, &format!("/devices/{id}/unassign"), None)
            .await
            .map(drop)
    }

    /// Resets a device's key to the universal one (before deleting a ghost).
    pub async fn refresh(&self, id: &str) -> Result<(), UispError> {
        self.request(Method::POST, &format!("/devices/{id}/refresh"), None)
            .await
            .map(drop)
    }

    /// Deletes a device.
    pub async fn delete_device(&self, id: &str) -> Result<(), UispError> {
        self.request(Method::DELETE, &format!("/devices/{id}"), None)
            .await
            .map(drop)
    }
}

fn device_from(d: &Value, path: &str) -> Result<LiveDevice, UispError> {
    let mac = text(d, "/identification/mac")
        .and_then(|m| normalise_mac(&m))
        .ok_or_else(|| UispError::Decode {
            path: path.into(),
            message: "a device without a MAC address".into(),
        })?;
    Ok(LiveDevice {
        id: text(d, "/identification/id").unwrap_or_default(),
        mac,
        name: text(d, "/identification/name").filter(|n| !n.is_empty()),
        ip: text(d, "/ipAddress")
            .map(|ip| ip.split('/').next().unwrap_or_default().to_string())
            .filter(|ip| !ip.is_empty()),
        authorized: d
            .pointer("/identification/authorized")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        site_id: text(d, "/identification/site/id"),
        status: text(d, "/identification/status")
            .or_else(|| text(d, "/overview/status"))
            .unwrap_or_default(),
        failed_decryption: d
            .pointer("/meta/failedMessageDecryption")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    })
}

fn site_from(v: Value) -> LiveSite {
    LiveSite {
        id: text(&v, "/id")
            .or_else(|| text(&v, "/identification/id"))
            .unwrap_or_default(),
        name: text(&v, "/identification/name").unwrap_or_default(),
        kind: text(&v, "/identification/type").unwrap_or_else(|| "site".into()),
        parent_id: text(&v, "/identification/parent/id"),
        address: text(&v, "/description/address").unwrap_or_default(),
        note: text(&v, "/description/note").unwrap_or_default(),
        raw: v,
    }
}

fn backoff(attempt: u32, retry_after: Option<u64>) -> Duration {
    match retry_after {
        Some(s) => Duration::from_secs(s.min(30)),
        None => Duration::from_millis(250 * 2u64.pow(attempt.min(6))),
    }
}
