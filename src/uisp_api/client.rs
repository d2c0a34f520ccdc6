//! A UISP NMS API client on reqwest with rustls: the `x-auth-token` header, TLS verified
//! (system roots, or a CA file), a long timeout for the unpaginated `GET /devices`, retries with
//! jittered backoff (the `backon` crate) on 429 and 5xx for reads only (a write is never
//! repeated blindly), and a clear error when the key is not an NMS API token (a CRM app key
//! answers with an object, not a list).
//!
//! Every object it hands out has an id UISP can be asked about again: an answer listing a
//! device or site without one (or with one that is not a plain identifier) is refused as
//! malformed, and no method sends a request for an empty id. What it does not do: decide what
//! to change (the `uisp` kind does) or keep state between calls.
//!
//! # Warning
//! The token travels only in a header; no error, log line or URL here carries it.

use std::future::Future;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::{Endpoint, Server};
use crate::mac::normalise_mac;

/// How many times a read is tried, the first one included.
const READ_TRIES: usize = 4;
/// The wait before the second try of a read; it doubles for each try after (plus jitter).
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// The longest `Retry-After` honoured: a server asking for more is asked again after this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

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
        /// What was wrong, and where in the answer.
        message: String,
    },
    /// A request for an object without a usable id: refused before anything is sent.
    #[error("no request sent for {what} id {id:?}: not a UISP id")]
    InvalidId {
        /// `device` or `site`.
        what: &'static str,
        /// The id given.
        id: String,
    },
}

/// A device as UISP lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveDevice {
    /// UISP's id: never empty (see [`is_uisp_id`]).
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
    /// UISP's id: never empty (see [`is_uisp_id`]).
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

/// Whether `id` can name an object in a request path: non-empty, letters, digits, `-` and `_`
/// only (UISP's ids are GUIDs). Anything else could address another path (`/devices//refresh`,
/// `..`).
pub fn is_uisp_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A connection to one UISP server.
pub struct UispClient {
    http: reqwest::Client,
    api: String,
    token: crate::secret::Secret,
}

/// Why one try of a request failed, and whether a read may try again.
struct Failed {
    error: UispError,
    /// No answer, a 429 or a 5xx: the same read may succeed later.
    transient: bool,
    /// The server's `Retry-After`, in seconds.
    retry_after: Option<Duration>,
}

impl Failed {
    fn permanent(error: UispError) -> Self {
        Failed {
            error,
            transient: false,
            retry_after: None,
        }
    }
}

/// The waits between the tries of a read: 0.5 s, 1 s, 2 s, each plus up to as much again of
/// jitter (clients that failed together do not come back together).
fn read_backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(FIRST_BACKOFF)
        .with_factor(2.0)
        .with_jitter()
        .with_max_times(READ_TRIES - 1)
}

/// Tries a read until it succeeds, fails for good, or [`READ_TRIES`] tries are spent. A
/// `Retry-After` replaces the backoff's wait (capped at [`MAX_RETRY_AFTER`]) but never adds a
/// try. Waits on tokio's clock.
///
/// # Warning
/// Only for reads: a write that failed may have been done, and repeating it blindly could do
/// it twice.
async fn retried<T, F, Fut>(path: &str, once: F) -> Result<T, UispError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Failed>>,
{
    once.retry(read_backoff())
        .sleep(tokio::time::sleep)
        .when(|f: &Failed| f.transient)
        .adjust(|f: &Failed, next: Option<Duration>| {
            next.map(|wait| f.retry_after.map_or(wait, |r| r.min(MAX_RETRY_AFTER)))
        })
        .notify(|f: &Failed, wait: Duration| {
            tracing::debug!(path, ?wait, "UISP read failed, retrying: {}", f.error);
        })
        .await
        .map_err(|f| f.error)
}

/// An answer's JSON: `null` when empty, the text as a string when it is not JSON.
fn json_of(bytes: &[u8]) -> Value {
    if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
    }
}

/// The items of a list answer; anything else means the key is not an NMS token.
fn list_of(answer: Value, path: &str) -> Result<Vec<Value>, UispError> {
    match answer {
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

/// The parts of a `GET /devices` item a device is read for; the rest of the item (most of
/// it: interfaces, statistics, firmware) is skipped while decoding.
#[derive(serde::Deserialize)]
#[allow(non_snake_case)]
struct DeviceFields {
    #[serde(default)]
    identification: Option<Value>,
    #[serde(default)]
    ipAddress: Option<Value>,
    #[serde(default)]
    overview: Option<StatusField>,
    #[serde(default)]
    meta: Option<MetaFields>,
}

#[derive(serde::Deserialize)]
struct StatusField {
    #[serde(default)]
    status: Option<Value>,
}

#[derive(serde::Deserialize)]
#[allow(non_snake_case)]
struct MetaFields {
    #[serde(default)]
    failedMessageDecryption: Option<Value>,
}

impl DeviceFields {
    /// The item as a small JSON object with only those parts, for [`device_from`].
    fn into_value(self) -> Value {
        let mut v = serde_json::Map::new();
        if let Some(i) = self.identification {
            v.insert("identification".into(), i);
        }
        if let Some(ip) = self.ipAddress {
            v.insert("ipAddress".into(), ip);
        }
        if let Some(s) = self.overview.and_then(|o| o.status) {
            v.insert("overview".into(), serde_json::json!({ "status": s }));
        }
        if let Some(f) = self.meta.and_then(|m| m.failedMessageDecryption) {
            v.insert(
                "meta".into(),
                serde_json::json!({ "failedMessageDecryption": f }),
            );
        }
        Value::Object(v)
    }
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
        })
    }

    async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, UispError> {
        Ok(json_of(&self.request_bytes(method, path, body).await?))
    }

    /// A request whose successful answer is returned as it came (bounded in size), for a
    /// caller that decodes it itself.
    async fn request_bytes(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Vec<u8>, UispError> {
        if method == Method::GET {
            let method = &method;
            retried(path, move || self.once(method, path, body)).await
        } else {
            self.once(&method, path, body).await.map_err(|f| f.error)
        }
    }

    /// One try of a request: the answer's bytes when it succeeded.
    async fn once(
        &self,
        method: &Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Vec<u8>, Failed> {
        let mut token =
            reqwest::header::HeaderValue::from_str(self.token.expose()).map_err(|_| {
                Failed::permanent(UispError::NotNms(
                    "the UISP token holds characters a header cannot carry".into(),
                ))
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
        let resp = req.send().await.map_err(|e| Failed {
            error: transport(e),
            transient: true,
            retry_after: None,
        })?;
        let status = resp.status();
        let retry_after = retry_after(resp.headers());
        let bytes = read_bounded(resp, MAX_ANSWER_BYTES)
            .await
            .map_err(|e| match e {
                Bounded::Transport(e) => Failed::permanent(transport(e)),
                Bounded::TooLarge => Failed::permanent(UispError::Decode {
                    path: path.to_string(),
                    message: format!(
                        "the answer is larger than {} MiB; refused",
                        MAX_ANSWER_BYTES / (1024 * 1024)
                    ),
                }),
            })?;
        if status.is_success() {
            return Ok(bytes);
        }
        let value = json_of(&bytes);
        let error = self.status_error(method, path, status, &value);
        Err(Failed {
            error,
            transient: status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error(),
            retry_after,
        })
    }

    /// What an error status means, in the operator's words.
    fn status_error(
        &self,
        method: &Method,
        path: &str,
        status: StatusCode,
        value: &Value,
    ) -> UispError {
        let message = text(value, "/message")
            .or_else(|| text(value, "/error"))
            .map(|m| self.scrubbed(m))
            .unwrap_or_else(|| status.canonical_reason().unwrap_or("").to_string());
        let http = |message: String| UispError::Http {
            method: method.to_string(),
            path: path.to_string(),
            status: status.as_u16(),
            message,
        };
        if status == StatusCode::UNAUTHORIZED {
            UispError::NotNms(format!(
                "UISP refused the token (401 {message}): it must be an NMS API token (Settings > Users > API tokens), not a CRM app key"
            ))
        } else if status == StatusCode::FORBIDDEN {
            http(format!(
                "{message} (the token lacks permission for this: a read-only token?)"
            ))
        } else if status.is_redirection() {
            http("UISP answered with a redirect, which wispctl does not follow (the token would go along): set url to the address it redirects to".into())
        } else {
            http(message)
        }
    }

    /// A server's message with the token masked, should a server ever echo it.
    fn scrubbed(&self, message: String) -> String {
        let token = self.token.expose();
        if token.is_empty() || !message.contains(token) {
            message
        } else {
            message.replace(token, "(sensitive)")
        }
    }

    async fn list(&self, path: &str) -> Result<Vec<Value>, UispError> {
        list_of(self.request(Method::GET, path, None).await?, path)
    }

    /// One device, read now.
    pub async fn device(&self, id: &str) -> Result<LiveDevice, UispError> {
        let path = object_path("device", "/devices", id, "")?;
        let v = self.request(Method::GET, &path, None).await?;
        device_from(&v, &path, None)
    }

    /// Every device, in one request.
    ///
    /// `GET /devices` is one unpaginated list (about 2 KiB of JSON a device): it is decoded
    /// straight into the few fields a device is read for, not into a whole JSON tree first
    /// (which took about 16 KiB a device). An answer that does not fit that shape is decoded
    /// the general way, for the same errors.
    pub async fn devices(&self) -> Result<Vec<LiveDevice>, UispError> {
        let bytes = self.request_bytes(Method::GET, "/devices", None).await?;
        if let Ok(items) = serde_json::from_slice::<Vec<DeviceFields>>(&bytes) {
            return items
                .into_iter()
                .enumerate()
                .map(|(i, d)| device_from(&d.into_value(), "/devices", Some(i)))
                .collect();
        }
        let items = list_of(json_of(&bytes), "/devices")?;
        items
            .iter()
            .enumerate()
            .map(|(i, d)| device_from(d, "/devices", Some(i)))
            .collect()
    }

    /// Every site, in one request.
    pub async fn sites(&self) -> Result<Vec<LiveSite>, UispError> {
        let items = self.list("/sites").await?;
        items
            .into_iter()
            .enumerate()
            .map(|(i, s)| site_from(s, "/sites", Some(i)))
            .collect()
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

    /// Creates a site; the answer must name the new site's id (children and devices need it).
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
            check_id("site", p)?;
            body["parentSiteId"] = json!(p);
        }
        let answer = self.request(Method::POST, "/sites", Some(&body)).await?;
        site_from(answer, "/sites", None)
    }

    /// Updates a site: the object as read, with these fields replaced. The answer is not
    /// relied on (apply reads the sites again to verify).
    pub async fn update_site(
        &self,
        site: &LiveSite,
        name: &str,
        parent: Option<&str>,
        address: &str,
        note: &str,
    ) -> Result<(), UispError> {
        let path = object_path("site", "/sites", &site.id, "")?;
        let mut body = site.raw.clone();
        body["identification"]["name"] = json!(name);
        body["identification"]["parent"] = match parent {
            Some(p) => {
                check_id("site", p)?;
                json!({ "id": p })
            }
            None => Value::Null,
        };
        if !body["description"].is_object() {
            body["description"] = json!({});
        }
        body["description"]["address"] = json!(address);
        body["description"]["note"] = json!(note);
        self.request(Method::PUT, &path, Some(&body))
            .await
            .map(drop)
    }

    /// Deletes an (empty) site.
    pub async fn delete_site(&self, id: &str) -> Result<(), UispError> {
        let path = object_path("site", "/sites", id, "")?;
        self.request(Method::DELETE, &path, None).await.map(drop)
    }

    /// Authorizes devices into a site (moving them when already authorized): one call.
    pub async fn authorize(&self, site_id: &str, device_ids: &[String]) -> Result<(), UispError> {
        check_id("site", site_id)?;
        for id in device_ids {
            check_id("device", id)?;
        }
        let body = json!({ "siteId": site_id, "deviceIds": device_ids });
        self.request(Method::POST, "/devices/authorize", Some(&body))
            .await
            .map(drop)
    }

    /// Takes a device out of its site.
    pub async fn unassign(&self, id: &str) -> Result<(), UispError> {
        let path = object_path("device", "/devices", id, "/unassign")?;
        self.request(Method::POST, &path, None).await.map(drop)
    }

    /// Resets a device's key to the universal one (before deleting a ghost).
    pub async fn refresh(&self, id: &str) -> Result<(), UispError> {
        let path = object_path("device", "/devices", id, "/refresh")?;
        self.request(Method::POST, &path, None).await.map(drop)
    }

    /// Deletes a device.
    pub async fn delete_device(&self, id: &str) -> Result<(), UispError> {
        let path = object_path("device", "/devices", id, "")?;
        self.request(Method::DELETE, &path, None).await.map(drop)
    }
}

/// Refuses an id that [`is_uisp_id`] rejects, before any request.
fn check_id(what: &'static str, id: &str) -> Result<(), UispError> {
    if is_uisp_id(id) {
        Ok(())
    } else {
        Err(UispError::InvalidId {
            what,
            id: id.to_string(),
        })
    }
}

/// `{collection}/{id}{suffix}`, for an id [`is_uisp_id`] accepts.
fn object_path(
    what: &'static str,
    collection: &str,
    id: &str,
    suffix: &str,
) -> Result<String, UispError> {
    check_id(what, id)?;
    Ok(format!("{collection}/{id}{suffix}"))
}

/// "the device at index 3" in a list, "the device" alone.
fn which(what: &str, index: Option<usize>) -> String {
    match index {
        Some(i) => format!("the {what} at index {i}"),
        None => format!("the {what}"),
    }
}

/// The id of an object UISP sent, or why the answer is malformed.
fn id_of(
    v: &Value,
    pointers: &[&str],
    path: &str,
    object: impl FnOnce() -> String,
) -> Result<String, UispError> {
    let found = pointers.iter().find_map(|p| text(v, p));
    match found {
        Some(id) if is_uisp_id(&id) => Ok(id),
        Some(id) => Err(UispError::Decode {
            path: path.into(),
            message: format!("{} has an id that is not a UISP id: {id:?}", object()),
        }),
        None => Err(UispError::Decode {
            path: path.into(),
            message: format!("{} has no id", object()),
        }),
    }
}

fn device_from(d: &Value, path: &str, index: Option<usize>) -> Result<LiveDevice, UispError> {
    let mac = text(d, "/identification/mac")
        .and_then(|m| normalise_mac(&m))
        .ok_or_else(|| UispError::Decode {
            path: path.into(),
            message: format!("{} has no MAC address", which("device", index)),
        })?;
    let id = id_of(d, &["/identification/id"], path, || {
        format!("{} (MAC {mac})", which("device", index))
    })?;
    Ok(LiveDevice {
        id,
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

fn site_from(v: Value, path: &str, index: Option<usize>) -> Result<LiveSite, UispError> {
    let name = text(&v, "/identification/name").unwrap_or_default();
    let id = id_of(&v, &["/id", "/identification/id"], path, || {
        format!("{} ({name:?})", which("site", index))
    })?;
    Ok(LiveSite {
        id,
        name,
        kind: text(&v, "/identification/type").unwrap_or_else(|| "site".into()),
        parent_id: text(&v, "/identification/parent/id"),
        address: text(&v, "/description/address").unwrap_or_default(),
        note: text(&v, "/description/note").unwrap_or_default(),
        raw: v,
    })
}

/// The most an answer may hold. `GET /devices` is one unpaginated list: 20,000 devices are
/// about 40 MiB of JSON; a server that sends more is refused, not buffered without end.
pub const MAX_ANSWER_BYTES: usize = 128 * 1024 * 1024;

/// An answer's body could not be read whole.
enum Bounded {
    Transport(reqwest::Error),
    TooLarge,
}

/// Reads a body chunk by chunk, refusing one longer than `max` (the declared length is checked
/// first, the bytes as they arrive second: a server may lie about either).
async fn read_bounded(mut resp: reqwest::Response, max: usize) -> Result<Vec<u8>, Bounded> {
    if resp.content_length().is_some_and(|n| n > max as u64) {
        return Err(Bounded::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(Bounded::Transport)? {
        if body.len() + chunk.len() > max {
            return Err(Bounded::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The wait a `Retry-After` header asks for, in seconds (the HTTP-date form is not honoured:
/// the backoff's own wait applies then).
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::time::Instant;

    use super::*;

    fn busy(status: u16, retry_after: Option<u64>) -> Failed {
        Failed {
            error: UispError::Http {
                method: "GET".into(),
                path: "/sites".into(),
                status,
                message: "busy".into(),
            },
            transient: true,
            retry_after: retry_after.map(Duration::from_secs),
        }
    }

    /// Runs `retried` over `answers` (one per try; `Ok` ends it), returning the result, the
    /// number of tries and the time waited on the (paused) clock.
    async fn run(answers: Vec<Result<u32, Failed>>) -> (Result<u32, UispError>, usize, Duration) {
        let answers = std::sync::Mutex::new(answers.into_iter());
        let tries = AtomicUsize::new(0);
        let start = Instant::now();
        let result = retried("/sites", || {
            tries.fetch_add(1, Ordering::SeqCst);
            let next = answers.lock().unwrap().next().expect("a try too many");
            async move { next }
        })
        .await;
        (result, tries.load(Ordering::SeqCst), start.elapsed())
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_waits_its_retry_after_exactly_then_reads_again() {
        let (result, tries, waited) = run(vec![Err(busy(429, Some(7))), Ok(1)]).await;
        assert_eq!(result.unwrap(), 1);
        assert_eq!(tries, 2);
        // No jitter on the server's own word.
        assert!(
            waited >= Duration::from_secs(7) && waited < Duration::from_millis(7_010),
            "{waited:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_retry_after_is_capped() {
        let (result, tries, waited) = run(vec![Err(busy(503, Some(3600))), Ok(1)]).await;
        assert_eq!(result.unwrap(), 1);
        assert_eq!(tries, 2);
        assert!(
            waited >= MAX_RETRY_AFTER && waited < MAX_RETRY_AFTER + Duration::from_millis(10),
            "{waited:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_server_that_stays_busy_gets_four_tries_with_growing_waits() {
        let answers = (0..READ_TRIES).map(|_| Err(busy(500, None))).collect();
        let (result, tries, waited) = run(answers).await;
        assert_eq!(tries, READ_TRIES);
        assert!(
            matches!(result, Err(UispError::Http { status: 500, .. })),
            "{result:?}"
        );
        // 0.5 s + 1 s + 2 s, each with up to as much again of jitter.
        assert!(
            waited >= Duration::from_millis(3_500) && waited < Duration::from_secs(7),
            "{waited:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_after_never_adds_a_try() {
        let answers = (0..READ_TRIES).map(|_| Err(busy(429, Some(1)))).collect();
        let (result, tries, waited) = run(answers).await;
        assert!(result.is_err());
        assert_eq!(tries, READ_TRIES);
        assert_eq!(waited.as_secs(), 3, "{waited:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusal_that_will_not_change_is_tried_once() {
        let refused = Failed::permanent(UispError::Http {
            method: "GET".into(),
            path: "/sites".into(),
            status: 404,
            message: "Not Found".into(),
        });
        let (result, tries, waited) = run(vec![Err(refused)]).await;
        assert!(result.is_err());
        assert_eq!(tries, 1);
        assert_eq!(waited, Duration::ZERO);
    }

    fn device_json(id: Option<&str>) -> Value {
        let mut v = json!({
            "identification": { "mac": "28:70:4e:a8:16:99", "name": "cpe", "authorized": false },
            "ipAddress": "10.10.1.45/24",
        });
        if let Some(id) = id {
            v["identification"]["id"] = json!(id);
        }
        v
    }

    #[test]
    fn a_device_or_site_without_an_id_is_a_malformed_answer_naming_where() {
        let err = device_from(&device_json(None), "/devices", Some(3)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "/devices: unexpected answer: the device at index 3 (MAC 28:70:4E:A8:16:99) has no id"
        );
        for bad in ["", "../sites", "a/b", "x y"] {
            let err = device_from(&device_json(Some(bad)), "/devices", Some(0)).unwrap_err();
            assert!(
                matches!(&err, UispError::Decode { message, .. } if message.contains("not a UISP id")),
                "{bad:?}: {err}"
            );
        }
        let d = device_from(
            &device_json(Some("d0000000-0000-4000-8000-000000000001")),
            "/devices",
            Some(0),
        )
        .unwrap();
        assert_eq!(d.ip.as_deref(), Some("10.10.1.45"));

        let site = json!({ "identification": { "name": "Torre", "type": "site" } });
        let err = site_from(site, "/sites", Some(1)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "/sites: unexpected answer: the site at index 1 (\"Torre\") has no id"
        );
        let created = json!({ "id": "", "identification": { "name": "Nueva" } });
        let err = site_from(created, "/sites", None).unwrap_err();
        assert!(err.to_string().contains("the site (\"Nueva\")"), "{err}");
        let err = device_from(&json!({ "identification": {} }), "/devices", Some(2)).unwrap_err();
        assert!(
            err.to_string().contains("the device at index 2 has no MAC"),
            "{err}"
        );
    }

    const TOKEN: &str = "Zq9x-nms-token";

    /// Nothing listens on port 9 of 127.0.0.1: a request would fail as `Transport`.
    fn unreachable_client() -> UispClient {
        let server = Server {
            api: "https://127.0.0.1:9/nms/api/v2.1".into(),
            token: crate::secret::Secret::new(TOKEN),
            tls: None,
            timeout: Duration::from_secs(1),
            deadline: crate::uisp_api::DEADLINE,
        };
        UispClient::new(&server, None).unwrap()
    }

    #[tokio::test]
    async fn no_request_is_sent_for_an_empty_id() {
        let client = unreachable_client();
        let site = LiveSite {
            id: String::new(),
            name: "x".into(),
            kind: "site".into(),
            parent_id: None,
            address: String::new(),
            note: String::new(),
            raw: json!({}),
        };
        let results = [
            client.unassign("").await.err(),
            client.refresh("").await.err(),
            client.delete_device("").await.err(),
            client.delete_site("").await.err(),
            client.device("").await.err(),
            client.authorize("", &[]).await.err(),
            client.authorize("s1", &[String::new()]).await.err(),
            client.update_site(&site, "x", None, "", "").await.err(),
            client
                .create_site("x", "site", Some(""), "", "")
                .await
                .err(),
        ];
        for r in results {
            assert!(matches!(r, Some(UispError::InvalidId { .. })), "{r:?}");
        }
        // A plain id does go out (and fails as nothing listens).
        assert!(matches!(
            client.unassign("d1").await,
            Err(UispError::Transport { .. })
        ));
    }

    #[test]
    fn a_server_echoing_the_token_never_shows_it() {
        let client = unreachable_client();
        let err = client.status_error(
            &Method::GET,
            "/sites",
            StatusCode::UNAUTHORIZED,
            &json!({ "message": format!("token {TOKEN} is not valid") }),
        );
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains(TOKEN), "{shown}");
        assert!(shown.contains("token (sensitive) is not valid"), "{shown}");
    }

    #[test]
    fn retry_after_is_read_in_seconds_and_anything_else_is_ignored() {
        use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(RETRY_AFTER, HeaderValue::from_str(v).unwrap());
            retry_after(&h)
        };
        assert_eq!(with("2"), Some(Duration::from_secs(2)));
        assert_eq!(with(" 30 "), Some(Duration::from_secs(30)));
        assert_eq!(with("Wed, 21 Oct 2026 07:28:00 GMT"), None);
        assert_eq!(with("-1"), None);
        assert_eq!(retry_after(&HeaderMap::new()), None);
    }

    #[tokio::test]
    async fn an_answer_over_the_bound_is_refused_whatever_its_declared_length() {
        let answer = |body: &'static str| reqwest::Response::from(http::Response::new(body));
        assert_eq!(
            read_bounded(answer("[1,2,3]"), 7).await.ok(),
            Some(b"[1,2,3]".to_vec())
        );
        assert!(matches!(
            read_bounded(answer("[1,2,3,4]"), 7).await,
            Err(Bounded::TooLarge)
        ));
    }
}

#[cfg(test)]
mod device_fields_tests {
    use serde_json::{Value, json};

    use super::{DeviceFields, device_from};

    /// Decoding `GET /devices` straight into the fields read gives what decoding the whole
    /// tree gives, device by device, for complete, partial and odd items alike.
    #[test]
    fn typed_decoding_reads_devices_as_the_whole_tree_does() {
        let items = json!([
            {
                "identification": {
                    "id": "d1", "mac": "28:70:4e:a8:16:99", "name": "Juan LB5",
                    "authorized": true, "site": { "id": "s1", "name": "x" },
                    "status": "active", "model": "LB5", "firmwareVersion": "6.2.0"
                },
                "ipAddress": "10.10.1.45/24",
                "overview": { "status": "active", "signal": -61, "cpu": 3 },
                "meta": { "failedMessageDecryption": false, "alias": null },
                "interfaces": [ { "id": "eth0", "statistics": { "rxbytes": 1 } } ]
            },
            {
                "identification": { "id": "d2", "mac": "287004EA8170", "authorized": false,
                                    "site": null, "name": null },
                "overview": { "status": "unauthorized" },
                "meta": { "failedMessageDecryption": true }
            },
            { "identification": { "id": "d3", "mac": "28:70:4E:A8:17:02", "name": 5 },
              "ipAddress": null, "overview": null }
        ]);
        let bytes = serde_json::to_vec(&items).unwrap();
        let typed: Vec<DeviceFields> = serde_json::from_slice(&bytes).unwrap();
        let whole: Vec<Value> = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(typed.len(), whole.len());
        for (i, (t, w)) in typed.into_iter().zip(&whole).enumerate() {
            let a = device_from(&t.into_value(), "/devices", Some(i)).map_err(|e| e.to_string());
            let b = device_from(w, "/devices", Some(i)).map_err(|e| e.to_string());
            assert_eq!(a, b, "device {i}");
        }
        // An item that is not an object does not fit: the general decoding takes over.
        assert!(serde_json::from_slice::<Vec<DeviceFields>>(br#"[1, "x"]"#).is_err());
    }
}
