//! The lab's UISP NMS server: an in-memory UISP (UNMS) that answers the NMS API v2.1 over
//! HTTPS on a loopback port, for the UISP provider's tests, the demo and the benchmarks.
//!
//! What it simulates, after the UISP reference notes and the Swagger 2.0 description vendored
//! in `tests/fixtures/uisp/nms-api-v2.1.swagger.json` (paths, bodies and response shapes;
//! every path below is under [`BASE_PATH`], `/nms/api/v2.1`):
//! - HTTPS only, on 127.0.0.1 with a fresh self-signed certificate for the IP 127.0.0.1
//!   ([`UispLab::ca_pem`]); HTTP/1.1 (ALPN `http/1.1`), keep-alive;
//! - the `x-auth-token` header against [`UispConfig::tokens`];
//! - `GET /devices` (query `siteId`, `authorized`, `type`, `role`, `withInterfaces`): one array
//!   of `DeviceStatusOverview`, no pagination; `GET /devices/{id}` (`DeviceSchema`);
//!   `GET /devices/mac/{mac}` (`{id, type, series}`);
//! - `POST /devices/authorize` `{siteId, deviceIds}` (authorizes and assigns, or moves, every
//!   listed device), `POST /devices/{id}/authorize` `{siteId}` (the older single form),
//!   `POST /devices/{id}/unassign`, `POST /devices/{id}/refresh` (resets the device's key),
//!   `DELETE /devices/{id}`, `POST /devices/bulkdelete` `{ids}`;
//! - `GET /sites` (query `id`, `ip`, `deviceId`, `type`, `ucrm`, `ucrmDetails`),
//!   `GET /sites/{id}`, `POST /sites` (`CreateSite`), `PUT /sites/{id}` (`SiteUpdate`, the whole
//!   object: read, modify, write), `DELETE /sites/{id}` (only an empty site);
//! - `GET /nms/connection`: the connection string, as the Swagger has it, a JSON string;
//! - errors as hapi (the framework UISP runs on) shapes them, the Swagger's `Error`:
//!   `{statusCode, error, message, validation?}`; actions answer the Swagger's `Status`,
//!   `{result: true, message}`;
//! - faults: a delay on every answer ([`UispConfig::latency`]) and injected error statuses
//!   ([`HttpFault`]: one operation, optionally one `siteId`, optionally N times, `Retry-After`);
//! - a log of every request received, in the order the lab ran them ([`UispLab::calls`]).
//!
//! What it does not: the other 270-odd paths (CRM binding, user login, firmware, outages,
//! interfaces, statistics...), the CRM API (`/crm/api/v1.0`), WebSocket device connections,
//! `client` sites, read-only tokens, users, pagination, compression, HTTP/2.
//!
//! Choices where the reference and the Swagger are silent (each one here, so a test can pin
//! it):
//! - Order of checks, as in hapi's request lifecycle: route (`404`), then authentication
//!   (`401`), then the injected faults, then the payload (invalid JSON: `400`), then the
//!   validation of params, query and payload (`400` with `validation`), then the handler
//!   (unknown ids: `404`; a refused action: `400`). A known path with another method is `404`,
//!   as hapi answers it. The latency is waited before any of it, for every request.
//! - Authentication: no `x-auth-token` header is `401` `Missing authentication`; a token that
//!   is not one of [`UispConfig::tokens`] is `401` `Invalid token`. A CRM app key
//!   ([`UispConfig::crm_keys`]) sent as an NMS token is answered exactly like any wrong token
//!   (UISP's NMS does not know CRM keys): a JSON object, never a list, which is what lets a
//!   client tell that the key is not an NMS token.
//! - Validation follows the Swagger's schemas for the bodies and parameters the lab serves:
//!   required keys, types, enums, GUIDs (`8-4-4-4-12` hex) for every `x-format: guid` (path ids
//!   included), the MAC pattern; a key the schema does not list is refused (`"key" is not
//!   allowed`, as Joi says it). A JSON `null` for an optional key counts as absent; an empty
//!   string for `address` or `note` clears it. Messages are Joi's (`"siteId" is required`,
//!   `"siteId" must be a valid GUID`) and `validation` is `{source: "payload"|"query"|"params",
//!   keys: [...]}`. Payload keys that the lab does not model (location, contact, height, qos,
//!   notifications, ...) are checked for their type and then ignored.
//! - `POST /sites` answers `200` with the created site (the Swagger's only success status);
//!   `type: client` is refused with `400` (the lab has no client sites); an unknown
//!   `parentSiteId` is `404`. `PUT /sites/{id}` takes `identification.name`, `.type` and
//!   `.parent` (`{id}`: moved; `null`: top level; absent: unchanged) and `description.address`
//!   and `.note` (absent: unchanged); a parent that is the site itself or below it is `400`.
//! - `DELETE /sites/{id}` of a site that holds a device or a child site is `400` (the only 4xx
//!   besides 401/403/404 the Swagger lists there), message `Site NAME is not empty: N
//!   device(s), M site(s)`. Unknown ids where the Swagger lists no 404 (`GET /devices/{id}`,
//!   `DELETE /devices/{id}`, authorize, refresh) are `404` all the same.
//! - Authorize: every listed device must exist, or nothing changes and the answer is `404`
//!   (bulk or single); a device that was `unauthorized` becomes `active`, or `disconnected`
//!   when its key is out of sync (`failedMessageDecryption`); other statuses stay. Moving an
//!   authorized device is the same call. A missing `deviceIds` is an empty list.
//! - Unassign takes the device out of its site and makes it unauthorized again (`site` is
//!   `null` only for unauthorized devices in the reference), status `unauthorized`.
//! - Refresh increments [`LabDevice::key_resets`] and clears `failedMessageDecryption`; the
//!   status stays.
//! - `POST /devices/bulkdelete` deletes the ids it knows (`deletedIds`) and lists the others
//!   in `undeletedIds`, never `404`.
//! - Rendering: every device is `type: airMax`, `category: wireless`, `role: station`,
//!   `enabled: true`, with `attributes.series` `AC` when its model names AC, else `M`, and
//!   `interfaces: []` when asked `withInterfaces=true`. `identification.name`, `hostname` and
//!   `displayName` are the name (`null` for a device without one); `ipAddress` is the lab's
//!   `ip` as stored (a `/24` suffix kept) or `null`; `identification.site` is `null` unless
//!   the device is authorized and in a site; `meta.alias`, `customIpAddress`, `note` and
//!   `restartTimestamp` are `null`. A site's (and a
//!   device's site's) `parent` is `{id, name, type}` or `null`. A site's `status` is `inactive`
//!   when it holds no device, `active` when all its devices are active, else `disconnected`;
//!   `description.address`/`note` are `null` when unset; `endpoints` lists its endpoint
//!   children; `notifications` is `system` with no user, `qos` disabled. Timestamps
//!   (`updated`) are the lab's start time. MACs are shown as stored (seed lower case to test a
//!   client's normalisation); ids are lower-case UUIDs.
//! - Faults match a request by method (any case) and by path, either literally (`/devices/
//!   1f0e.../refresh`) or as the route's template (`/devices/{id}/refresh`), a leading
//!   `/nms/api/v2.1` being optional; the first matching fault with `times` left applies and
//!   spends one. Its body is the `Error` object with the status's reason phrase (`500`:
//!   `An internal server error occurred`, hapi's text); `Retry-After` is sent whenever
//!   `retry_after_secs` is given. Unauthenticated requests never reach the faults.
//! - The call log holds every request: the method, the path below the base path with its
//!   query string (`/devices?siteId=...`; a path outside the base path whole), the body as
//!   JSON (`null` when empty, a JSON string holding the text when it is not JSON) and the status
//!   answered.
//! - A state that breaks UISP's rules is refused: [`UispLab::start`] fails with
//!   `InvalidInput`, [`UispLab::set_state`], [`UispLab::add_site`] and
//!   [`UispLab::add_device`] panic (a broken test): ids not UUIDs or repeated, MACs not
//!   `XX:XX:XX:XX:XX:XX` or repeated, a `kind` other than `site`/`endpoint`, an unknown parent
//!   or site, a parent cycle, an unauthorized device with a site. An empty id is replaced by a
//!   new UUID.

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

/// The API's base path.
pub const BASE_PATH: &str = "/nms/api/v2.1";

pub use crate::lab::twin::LAB_CONNECTION_STRING;

/// Largest request body read (hapi's default `maxBytes`).
const MAX_BODY: usize = 1024 * 1024;

/// How long a TLS handshake may take before the connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// Configuration and the public model
// ---------------------------------------------------------------------------------------------

/// How the lab UISP behaves. `Debug` shows how many tokens and keys it holds, never them.
#[derive(Clone)]
pub struct UispConfig {
    /// Accepted NMS API tokens (header `x-auth-token`).
    pub tokens: Vec<String>,
    /// CRM app keys: sent to NMS, they are answered like any wrong token (`401`, an object).
    pub crm_keys: Vec<String>,
    /// Delay of every answer; also changeable at run time ([`UispLab::set_latency`]).
    pub latency: Duration,
    /// Injected faults; also changeable at run time ([`UispLab::set_faults`]).
    pub faults: Vec<HttpFault>,
    /// What `GET /nms/connection` answers.
    pub connection_string: String,
    /// Called with the state after every request that changed it (a write answered with
    /// success), before the answer is sent: the lab saves its files there, so a client killed
    /// mid-apply leaves a lab that shows what the server really did.
    pub on_write: Option<OnWrite>,
    /// Called with the state after a change no request made (a lab antenna's bridge
    /// connecting or disconnecting, see [`UispLab::bridge_hook`]): the lab saves its files
    /// there too, without a crash point.
    pub on_change: Option<OnWrite>,
}

/// See [`UispConfig::on_write`].
pub type OnWrite = Arc<dyn Fn(&UispState) + Send + Sync>;

impl Default for UispConfig {
    /// No token, no delay, no fault, [`LAB_CONNECTION_STRING`].
    fn default() -> Self {
        UispConfig {
            tokens: Vec::new(),
            crm_keys: Vec::new(),
            latency: Duration::ZERO,
            faults: Vec::new(),
            connection_string: LAB_CONNECTION_STRING.into(),
            on_write: None,
            on_change: None,
        }
    }
}

impl std::fmt::Debug for UispConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UispConfig")
            .field("tokens", &format_args!("{} (sensitive)", self.tokens.len()))
            .field(
                "crm_keys",
                &format_args!("{} (sensitive)", self.crm_keys.len()),
            )
            .field("latency", &self.latency)
            .field("faults", &self.faults)
            .field("connection_string", &format_args!("(sensitive)"))
            .finish()
    }
}

impl UispConfig {
    /// The default configuration accepting one token.
    pub fn with_token(token: &str) -> Self {
        UispConfig {
            tokens: vec![token.into()],
            ..UispConfig::default()
        }
    }
}

/// Answer `status` instead of running a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpFault {
    /// `GET`, `POST`, ... (any case).
    pub method: String,
    /// Below the base path: literal (`/devices/authorize`) or a route template
    /// (`/devices/{id}/refresh`).
    pub path: String,
    /// Only requests whose JSON body has this `siteId`.
    pub site_id: Option<String>,
    /// The status answered (500, 429, 503, ...).
    pub status: u16,
    /// How many requests it hits; `None`: every one.
    pub times: Option<u32>,
    /// Sent as `Retry-After` (seconds).
    pub retry_after_secs: Option<u64>,
}

impl HttpFault {
    /// A fault on every request of `method path`, without `Retry-After`.
    pub fn new(method: &str, path: &str, status: u16) -> Self {
        HttpFault {
            method: method.into(),
            path: path.into(),
            site_id: None,
            status,
            times: None,
            retry_after_secs: None,
        }
    }
}

/// A site (`type: site`) or an endpoint (a customer's site, `type: endpoint`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct LabSite {
    /// A UUID; empty when adding: the lab assigns one.
    pub id: String,
    /// Its name.
    pub name: String,
    /// `site` or `endpoint`.
    pub kind: String,
    /// The parent site, for an endpoint.
    pub parent_id: Option<String>,
    /// Street address, when set.
    pub address: Option<String>,
    /// Free text, when set.
    pub note: Option<String>,
}

/// A device as UISP knows it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct LabDevice {
    /// A UUID; empty when adding: the lab assigns one.
    pub id: String,
    /// `AA:BB:CC:DD:EE:FF` (shown as stored).
    pub mac: String,
    /// Its name.
    pub name: Option<String>,
    /// May carry a prefix length (`10.10.1.139/24`), shown as stored.
    pub ip: Option<String>,
    /// Short model, e.g. `LB5`.
    pub model: String,
    /// Full model name, e.g. `LiteBeam M5`.
    pub model_name: String,
    /// Authorized into a site.
    pub authorized: bool,
    /// Only for an authorized device.
    pub site_id: Option<String>,
    /// `active`, `disconnected`, `unauthorized`, ... (the Swagger's enum).
    pub status: String,
    /// The device's key is out of sync (`meta.failedMessageDecryption`).
    pub failed_message_decryption: bool,
    /// How many times `POST /devices/{id}/refresh` reset its key.
    pub key_resets: u32,
}

/// Everything the lab UISP holds.
#[derive(Clone, Debug, Serialize, Deserialize, Default)]
pub struct UispState {
    /// Every site.
    pub sites: Vec<LabSite>,
    /// Every device.
    pub devices: Vec<LabDevice>,
}

/// One request the lab received.
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    /// `GET`, `POST`, ...
    pub method: String,
    /// Below the base path, with the query string if any (`/devices?siteId=...`).
    pub path: String,
    /// The JSON body; `null` when empty, a string holding the text when it is not JSON.
    pub body: Value,
    /// The status answered.
    pub status: u16,
}

// ---------------------------------------------------------------------------------------------
// The server
// ---------------------------------------------------------------------------------------------

/// A running lab UISP. Dropping it (or [`UispLab::shutdown`]) stops the accept loop and every
/// connection.
pub struct UispLab {
    addr: SocketAddr,
    ca_pem: String,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    accept: Option<JoinHandle<()>>,
}

impl UispLab {
    /// Binds 127.0.0.1 on a free port and serves HTTPS in the current tokio runtime. A state
    /// that breaks UISP's rules is `InvalidInput`.
    pub async fn start(config: UispConfig, state: UispState) -> io::Result<UispLab> {
        let state = checked(state).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()])
            .map_err(io::Error::other)?;
        let ca_pem = certified.cert.pem();
        let key =
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(io::Error::other)?
            .with_no_client_auth()
            .with_single_cert(vec![certified.cert.der().clone()], key)
            .map_err(io::Error::other)?;
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(tls));

        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Shared::new(config, state);
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let (stop, stopped) = watch::channel(false);
        let accept = tokio::spawn(accept_loop(listener, acceptor, app, stopped));
        Ok(UispLab {
            addr,
            ca_pem,
            shared,
            stop,
            accept: Some(accept),
        })
    }

    /// The bound address (always on loopback).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https://127.0.0.1:PORT/nms/api/v2.1`.
    pub fn url(&self) -> String {
        format!("https://{}{BASE_PATH}", self.addr)
    }

    /// The PEM of the self-signed certificate served (IP SAN 127.0.0.1): trust it as a CA.
    pub fn ca_pem(&self) -> String {
        self.ca_pem.clone()
    }

    /// Sites and devices as they are now.
    pub fn state(&self) -> UispState {
        self.shared.lock().state.clone()
    }

    /// Replaces sites and devices; empty ids get new UUIDs.
    ///
    /// # Panics
    /// On a state that breaks UISP's rules (see the module documentation): a broken test.
    pub fn set_state(&self, state: UispState) {
        let state = checked(state).unwrap_or_else(|e| panic!("lab UISP state: {e}"));
        self.shared.lock().state = state;
    }

    /// Adds a site as if made in the UI, returning its id (a new UUID when `id` is empty).
    ///
    /// # Panics
    /// When the result breaks UISP's rules.
    pub fn add_site(&self, mut site: LabSite) -> String {
        if site.id.is_empty() {
            site.id = new_uuid();
        }
        let id = site.id.clone();
        let mut inner = self.shared.lock();
        let mut state = inner.state.clone();
        state.sites.push(site);
        inner.state = checked(state).unwrap_or_else(|e| panic!("lab UISP add_site: {e}"));
        id
    }

    /// Adds a device as if it had connected, returning its id (a new UUID when `id` is empty).
    ///
    /// # Panics
    /// When the result breaks UISP's rules.
    pub fn add_device(&self, mut device: LabDevice) -> String {
        if device.id.is_empty() {
            device.id = new_uuid();
        }
        let id = device.id.clone();
        let mut inner = self.shared.lock();
        let mut state = inner.state.clone();
        state.devices.push(device);
        inner.state = checked(state).unwrap_or_else(|e| panic!("lab UISP add_device: {e}"));
        id
    }

    /// Replaces the faults; the next request sees them.
    pub fn set_faults(&self, faults: Vec<HttpFault>) {
        self.shared.lock().faults = faults;
    }

    /// The faults now in force, with their remaining `times`.
    pub fn faults(&self) -> Vec<HttpFault> {
        self.shared.lock().faults.clone()
    }

    /// Changes the delay of every answer.
    pub fn set_latency(&self, latency: Duration) {
        self.shared.lock().latency = latency;
    }

    /// What the lab's antennas reporting to this server call when their `udapi-bridge`
    /// starts or stops: a bridge connecting with a connection string that names this
    /// server's host and port (any key) shows its device connected `delay` later (`active`
    /// when authorized, else `unauthorized`; a device not listed yet is added, unauthorized,
    /// as UISP lists a new device that connects); any other string, or no bridge, shows it
    /// `disconnected` at once. Holds the server weakly: once it stops, nothing happens.
    pub fn bridge_hook(&self, delay: Duration) -> crate::lab::twin::BridgeHook {
        let shared = Arc::downgrade(&self.shared);
        crate::lab::twin::BridgeHook(Arc::new(move |e: &crate::lab::twin::BridgeEvent<'_>| {
            let Some(s) = shared.upgrade() else { return };
            let Some(mac) = crate::mac::normalise_mac(e.mac) else {
                return;
            };
            let ours = server_part(&s.fixed.connection_string);
            let serves = e
                .uri
                .is_some_and(|u| server_part(u).eq_ignore_ascii_case(ours));
            // Only the latest event of a device counts: a delayed connection is dropped once
            // its bridge restarted again.
            let event = s.next_bridge_event(&mac);
            if !serves {
                s.bridge_down(&mac);
            } else if delay.is_zero() {
                s.bridge_up(&mac, e.ip, event);
            } else {
                let (weak, ip) = (Arc::downgrade(&s), e.ip.to_string());
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    if let Some(s) = weak.upgrade() {
                        s.bridge_up(&mac, &ip, event);
                    }
                });
            }
        }))
    }

    /// Every request received so far, in the order the lab ran them, faulted ones included.
    pub fn calls(&self) -> Vec<Call> {
        self.shared.lock().calls.clone()
    }

    /// Forgets the calls received so far.
    pub fn reset_calls(&self) {
        self.shared.lock().calls.clear();
    }

    /// Stops accepting, closes every connection and waits until all of it is gone. The state
    /// stays readable. Idempotent.
    pub async fn shutdown(&mut self) {
        let _ = self.stop.send(true);
        if let Some(accept) = self.accept.take() {
            let _ = accept.await;
        }
    }
}

impl Drop for UispLab {
    fn drop(&mut self) {
        // The accept loop sees the signal (or the sender gone), closes the listener and aborts
        // every connection task.
        let _ = self.stop.send(true);
    }
}

/// The `HOST:PORT` of a connection string (`wss://HOST:PORT+KEY...`).
fn server_part(uri: &str) -> &str {
    let rest = uri.split_once("://").map_or(uri, |(_, r)| r);
    rest.split('+').next().unwrap_or(rest)
}

impl Shared {
    /// Numbers a new bridge event of the device with this MAC.
    fn next_bridge_event(&self, mac: &str) -> u64 {
        let mut inner = self.lock();
        let n = inner.bridge_events.entry(mac.to_string()).or_default();
        *n += 1;
        *n
    }

    /// Saves after a change no request made.
    fn changed(&self, inner: &Inner) {
        if let Some(save) = &self.fixed.on_change {
            save(&inner.state);
        }
    }

    /// The device with this MAC shows connected (added, unauthorized, when not listed),
    /// unless a later bridge event of it came since event `event`.
    fn bridge_up(&self, mac: &str, ip: &str, event: u64) {
        let mut inner = self.lock();
        if inner.bridge_events.get(mac) != Some(&event) {
            return;
        }
        let state = &mut inner.state;
        let mut found = false;
        for d in state
            .devices
            .iter_mut()
            .filter(|d| crate::mac::normalise_mac(&d.mac).as_deref() == Some(mac))
        {
            found = true;
            d.failed_message_decryption = false;
            d.status = if d.authorized {
                "active".into()
            } else {
                "unauthorized".into()
            };
        }
        if !found {
            state.devices.push(LabDevice::new(
                &new_uuid(),
                mac,
                None,
                Some(&format!("{ip}/24")),
                None,
            ));
        }
        self.changed(&inner);
    }

    /// The device with this MAC, if listed, shows disconnected.
    fn bridge_down(&self, mac: &str) {
        let mut inner = self.lock();
        for d in inner
            .state
            .devices
            .iter_mut()
            .filter(|d| crate::mac::normalise_mac(&d.mac).as_deref() == Some(mac))
        {
            d.status = "disconnected".into();
        }
        self.changed(&inner);
    }
}

/// What never changes after start.
struct Fixed {
    tokens: Vec<String>,
    crm_keys: Vec<String>,
    connection_string: String,
    on_write: Option<OnWrite>,
    on_change: Option<OnWrite>,
    /// RFC 3339, for `updated` fields.
    started: String,
}

/// Shared by the accept loop, every connection and the test handle.
struct Shared {
    fixed: Fixed,
    inner: Mutex<Inner>,
}

impl Shared {
    /// The server's state and settings, for `state` already checked.
    fn new(config: UispConfig, state: UispState) -> Arc<Shared> {
        Arc::new(Shared {
            fixed: Fixed {
                tokens: config.tokens,
                crm_keys: config.crm_keys,
                connection_string: config.connection_string,
                on_write: config.on_write,
                on_change: config.on_change,
                started: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            },
            inner: Mutex::new(Inner {
                state,
                faults: config.faults,
                latency: config.latency,
                calls: Vec::new(),
                bridge_events: HashMap::new(),
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

struct Inner {
    state: UispState,
    faults: Vec<HttpFault>,
    latency: Duration,
    calls: Vec<Call>,
    /// The number of the latest bridge event, by MAC ([`UispLab::bridge_hook`]).
    bridge_events: HashMap<String, u64>,
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    app: Router,
    mut stop: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            // A signal, or the UispLab gone.
            _ = stop.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => {
                    connections.spawn(serve_connection(tcp, acceptor.clone(), app.clone()));
                }
                // Out of descriptors and the like: wait instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    connections.shutdown().await;
}

async fn serve_connection(tcp: TcpStream, acceptor: TlsAcceptor, app: Router) {
    let Ok(Ok(tls)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await else {
        return;
    };
    let _ = auto::Builder::new(TokioExecutor::new())
        .http1_only()
        .serve_connection(TokioIo::new(tls), TowerToHyperService::new(app))
        .await;
}

// ---------------------------------------------------------------------------------------------
// One request
// ---------------------------------------------------------------------------------------------

/// A request as the lab sees it.
struct Incoming {
    method: String,
    /// Below the base path, without the query; `None` outside the base path.
    path: Option<String>,
    /// What the call log says.
    logged_path: String,
    query: Vec<(String, String)>,
    token: Option<String>,
    payload: Payload,
}

enum Payload {
    Empty,
    Json(Value),
    Invalid(String),
    TooLarge,
}

impl Payload {
    fn logged(&self) -> Value {
        match self {
            Payload::Empty | Payload::TooLarge => Value::Null,
            Payload::Json(v) => v.clone(),
            Payload::Invalid(text) => Value::String(text.clone()),
        }
    }

    fn site_id(&self) -> Option<&str> {
        match self {
            Payload::Json(v) => v.get("siteId").and_then(Value::as_str),
            _ => None,
        }
    }
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let payload = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => Payload::Empty,
        Ok(bytes) => match serde_json::from_slice(&bytes) {
            Ok(v) => Payload::Json(v),
            Err(_) => Payload::Invalid(String::from_utf8_lossy(&bytes).into_owned()),
        },
        Err(_) => Payload::TooLarge,
    };
    let raw_path = parts.uri.path();
    let path = raw_path
        .strip_prefix(BASE_PATH)
        .filter(|p| p.starts_with('/'))
        .map(str::to_owned);
    let shown = path.clone().unwrap_or_else(|| raw_path.to_owned());
    let logged_path = match parts.uri.query() {
        Some(q) => format!("{shown}?{q}"),
        None => shown,
    };
    let req = Incoming {
        method: parts.method.as_str().to_owned(),
        path,
        logged_path,
        query: parse_query(parts.uri.query().unwrap_or("")),
        token: parts
            .headers
            .get("x-auth-token")
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
        payload,
    };

    let latency = shared.lock().latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let mut inner = shared.lock();
    let answer = answer(&shared.fixed, &mut inner, &req);
    inner.calls.push(Call {
        method: req.method.clone(),
        path: req.logged_path.clone(),
        body: req.payload.logged(),
        status: answer.status,
    });
    let wrote = req.method != "GET" && (200..300).contains(&answer.status);
    if let Some(on_write) = shared.fixed.on_write.as_ref().filter(|_| wrote) {
        // Under the lock: saves follow the order of the writes.
        on_write(&inner.state);
    }
    drop(inner);
    answer.into_response()
}

/// A response about to be sent.
struct Answer {
    status: u16,
    body: Value,
    retry_after: Option<u64>,
}

impl Answer {
    fn into_response(self) -> Response {
        let mut response = Response::new(Body::from(self.body.to_string()));
        *response.status_mut() =
            StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// An error answer: the Swagger's `Error`.
#[derive(Debug)]
struct Fail {
    status: u16,
    message: String,
    validation: Option<Value>,
    retry_after: Option<u64>,
}

impl Fail {
    fn new(status: u16, message: impl Into<String>) -> Fail {
        Fail {
            status,
            message: message.into(),
            validation: None,
            retry_after: None,
        }
    }

    /// `400` with `validation: {source, keys: [key]}`.
    fn invalid(source: &str, key: &str, message: impl Into<String>) -> Fail {
        let keys: Vec<&str> = if key.is_empty() { vec![] } else { vec![key] };
        Fail {
            validation: Some(json!({ "source": source, "keys": keys })),
            ..Fail::new(400, message)
        }
    }

    fn not_found(message: impl Into<String>) -> Fail {
        Fail::new(404, message)
    }

    fn into_answer(self) -> Answer {
        let mut body = json!({
            "statusCode": self.status,
            "error": reason(self.status),
            "message": self.message,
        });
        if let Some(v) = self.validation {
            body["validation"] = v;
        }
        Answer {
            status: self.status,
            body,
            retry_after: self.retry_after,
        }
    }
}

/// hapi's (Boom's) reason phrases.
fn reason(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Time-out",
        409 => "Conflict",
        413 => "Request Entity Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Time-out",
        s => StatusCode::from_u16(s)
            .ok()
            .and_then(|c| c.canonical_reason())
            .unwrap_or("Unknown"),
    }
}

/// Everything after the latency, under the lock.
fn answer(fixed: &Fixed, inner: &mut Inner, req: &Incoming) -> Answer {
    let routed = req.path.as_deref().and_then(|p| route(&req.method, p));
    let Some((route, params)) = routed else {
        return Fail::not_found("Not Found").into_answer();
    };
    match &req.token {
        None => return Fail::new(401, "Missing authentication").into_answer(),
        Some(t) if !fixed.tokens.contains(t) => {
            // A CRM key is just another wrong token to NMS.
            if fixed.crm_keys.contains(t) {
                tracing::debug!("lab UISP: a CRM app key was sent as an NMS token");
            }
            return Fail::new(401, "Invalid token").into_answer();
        }
        Some(_) => {}
    }
    let path = req.path.as_deref().unwrap_or_default();
    if let Some(fault) = take_fault(&mut inner.faults, req, path, route.template) {
        return fault.into_answer();
    }
    match &req.payload {
        Payload::Invalid(_) if req.method != "GET" => {
            return Fail::invalid("payload", "", "Invalid request payload JSON format")
                .into_answer();
        }
        Payload::TooLarge => {
            return Fail::new(
                413,
                format!("Payload content length greater than maximum allowed: {MAX_BODY}"),
            )
            .into_answer();
        }
        _ => {}
    }
    match run(route.op, &params, req, fixed, &mut inner.state) {
        Ok(body) => Answer {
            status: 200,
            body,
            retry_after: None,
        },
        Err(fail) => fail.into_answer(),
    }
}

/// The first fault matching `req` with `times` left, spending one.
fn take_fault(
    faults: &mut [HttpFault],
    req: &Incoming,
    path: &str,
    template: &str,
) -> Option<Fail> {
    let site_id = req.payload.site_id();
    let fault = faults.iter_mut().find(|f| {
        let fpath = f.path.strip_prefix(BASE_PATH).unwrap_or(&f.path);
        f.method.eq_ignore_ascii_case(&req.method)
            && (fpath == path || fpath == template)
            && f.times != Some(0)
            && f.site_id.as_deref().is_none_or(|s| Some(s) == site_id)
    })?;
    if let Some(t) = &mut fault.times {
        *t -= 1;
    }
    let message = match fault.status {
        500 => "An internal server error occurred".to_string(),
        429 => "Rate limit exceeded".to_string(),
        s => reason(s).to_string(),
    };
    Some(Fail {
        retry_after: fault.retry_after_secs,
        ..Fail::new(fault.status, message)
    })
}

// ---------------------------------------------------------------------------------------------
// Routes
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    ListDevices,
    AuthorizeDevices,
    BulkDelete,
    DeviceByMac,
    GetDevice,
    DeleteDevice,
    AuthorizeDevice,
    UnassignDevice,
    RefreshDevice,
    ListSites,
    CreateSite,
    GetSite,
    PutSite,
    DeleteSite,
    Connection,
}

struct Route {
    method: &'static str,
    template: &'static str,
    op: Op,
}

/// Literal routes before the ones with placeholders, as hapi prefers them.
const ROUTES: &[Route] = &[
    Route {
        method: "GET",
        template: "/devices",
        op: Op::ListDevices,
    },
    Route {
        method: "POST",
        template: "/devices/authorize",
        op: Op::AuthorizeDevices,
    },
    Route {
        method: "POST",
        template: "/devices/bulkdelete",
        op: Op::BulkDelete,
    },
    Route {
        method: "GET",
        template: "/devices/mac/{mac}",
        op: Op::DeviceByMac,
    },
    Route {
        method: "GET",
        template: "/devices/{id}",
        op: Op::GetDevice,
    },
    Route {
        method: "DELETE",
        template: "/devices/{id}",
        op: Op::DeleteDevice,
    },
    Route {
        method: "POST",
        template: "/devices/{id}/authorize",
        op: Op::AuthorizeDevice,
    },
    Route {
        method: "POST",
        template: "/devices/{id}/unassign",
        op: Op::UnassignDevice,
    },
    Route {
        method: "POST",
        template: "/devices/{id}/refresh",
        op: Op::RefreshDevice,
    },
    Route {
        method: "GET",
        template: "/sites",
        op: Op::ListSites,
    },
    Route {
        method: "POST",
        template: "/sites",
        op: Op::CreateSite,
    },
    Route {
        method: "GET",
        template: "/sites/{id}",
        op: Op::GetSite,
    },
    Route {
        method: "PUT",
        template: "/sites/{id}",
        op: Op::PutSite,
    },
    Route {
        method: "DELETE",
        template: "/sites/{id}",
        op: Op::DeleteSite,
    },
    Route {
        method: "GET",
        template: "/nms/connection",
        op: Op::Connection,
    },
];

/// The route of `method path` and its decoded placeholders.
fn route(method: &str, path: &str) -> Option<(&'static Route, Vec<String>)> {
    let segments: Vec<&str> = path.split('/').collect();
    'routes: for r in ROUTES.iter().filter(|r| r.method == method) {
        let template: Vec<&str> = r.template.split('/').collect();
        if template.len() != segments.len() {
            continue;
        }
        let mut params = Vec::new();
        for (t, s) in template.iter().zip(&segments) {
            if t.starts_with('{') {
                if s.is_empty() {
                    continue 'routes;
                }
                params.push(percent_decode(s, false));
            } else if t != s {
                continue 'routes;
            }
        }
        return Some((r, params));
    }
    None
}

fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k, true), percent_decode(v, true))
        })
        .collect()
}

/// `%XX` escapes (and `+` as a space in a query); a broken escape stays as it is.
fn percent_decode(s: &str, plus_is_space: bool) -> String {
    fn hex_digit(b: u8) -> Option<u8> {
        (b as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%' && i + 2 < bytes.len())
            .then(|| Some(hex_digit(bytes[i + 1])? * 16 + hex_digit(bytes[i + 2])?))
            .flatten();
        match (escaped, bytes[i]) {
            (Some(b), _) => {
                out.push(b);
                i += 3;
                continue;
            }
            (None, b'+') if plus_is_space => out.push(b' '),
            (None, b) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ---------------------------------------------------------------------------------------------
// Handlers
// ---------------------------------------------------------------------------------------------

const DEVICE_TYPES: &[&str] = &[
    "onu",
    "olt",
    "unmsr",
    "unmss",
    "erouter",
    "eswitch",
    "epower",
    "airCube",
    "airMax",
    "airFiber",
    "toughSwitch",
    "solarBeam",
    "wave",
    "blackBox",
];

const DEVICE_ROLES: &[&str] = &[
    "router",
    "switch",
    "gpon",
    "ap",
    "station",
    "other",
    "ups",
    "server",
    "wireless",
    "convertor",
    "gateway",
];

/// What every lab device is.
const DEVICE_TYPE: &str = "airMax";
const DEVICE_CATEGORY: &str = "wireless";
const DEVICE_ROLE: &str = "station";

/// `CreateSite`'s properties.
const CREATE_SITE_KEYS: &[&str] = &[
    "parentSiteId",
    "name",
    "location",
    "height",
    "elevation",
    "address",
    "contactName",
    "contactPhone",
    "contactEmail",
    "note",
    "type",
    "regulatoryDomain",
];

/// `SiteUpdate`'s properties.
const SITE_UPDATE_KEYS: &[&str] = &[
    "id",
    "identification",
    "description",
    "notifications",
    "qos",
    "ucrm",
];

/// `SiteIdentificationDetail 1`'s properties.
const SITE_IDENTIFICATION_KEYS: &[&str] = &[
    "id",
    "type",
    "name",
    "status",
    "parent",
    "updated",
    "suspended",
];

/// `SiteDescription 1`'s properties.
const SITE_DESCRIPTION_KEYS: &[&str] = &[
    "address",
    "note",
    "contact",
    "location",
    "height",
    "elevation",
    "endpoints",
    "deviceCount",
    "deviceListStatus",
    "regulatoryDomain",
    "ucrmId",
    "ipAddresses",
];

fn run(
    op: Op,
    params: &[String],
    req: &Incoming,
    fixed: &Fixed,
    state: &mut UispState,
) -> Result<Value, Fail> {
    let param = || params.first().map(String::as_str).unwrap_or_default();
    match op {
        Op::ListDevices => list_devices(req, fixed, state),
        Op::GetDevice => {
            let id = guid_param(param())?;
            let d = state.device(id)?;
            Ok(View::new(state, fixed).device(d, false))
        }
        Op::DeviceByMac => device_by_mac(param(), state),
        Op::AuthorizeDevices => {
            let body = payload_object(req, &["siteId", "deviceIds"])?;
            let site_id = required_guid(body, "siteId")?;
            let ids = guid_list(body, "deviceIds", false)?;
            authorize(state, site_id, &ids)?;
            Ok(status_ok("Devices authorized"))
        }
        Op::AuthorizeDevice => {
            let id = guid_param(param())?.to_owned();
            let body = payload_object(req, &["siteId"])?;
            let site_id = required_guid(body, "siteId")?;
            authorize(state, site_id, &[id])?;
            Ok(status_ok("Device authorized"))
        }
        Op::UnassignDevice => {
            let id = guid_param(param())?;
            let d = state.device_mut(id)?;
            d.site_id = None;
            d.authorized = false;
            d.status = "unauthorized".into();
            Ok(status_ok("Device unassigned"))
        }
        Op::RefreshDevice => {
            let id = guid_param(param())?;
            let d = state.device_mut(id)?;
            d.key_resets += 1;
            d.failed_message_decryption = false;
            Ok(status_ok("Device key reset to the universal key"))
        }
        Op::DeleteDevice => {
            let id = guid_param(param())?;
            state.device(id)?;
            state.devices.retain(|d| d.id != id);
            Ok(status_ok("Device deleted"))
        }
        Op::BulkDelete => {
            let body = payload_object(req, &["ids"])?;
            let ids = guid_list(body, "ids", true)?;
            let known: HashSet<&str> = state.devices.iter().map(|d| d.id.as_str()).collect();
            let (deleted, undeleted): (Vec<String>, Vec<String>) =
                ids.into_iter().partition(|id| known.contains(id.as_str()));
            let gone: HashSet<&str> = deleted.iter().map(String::as_str).collect();
            state.devices.retain(|d| !gone.contains(d.id.as_str()));
            let message = format!(
                "{} device(s) deleted, {} not deleted",
                deleted.len(),
                undeleted.len()
            );
            Ok(json!({ "deletedIds": deleted, "undeletedIds": undeleted, "message": message }))
        }
        Op::ListSites => list_sites(req, fixed, state),
        Op::GetSite => {
            let id = guid_param(param())?;
            let s = state.site(id)?;
            Ok(View::new(state, fixed).site(s))
        }
        Op::CreateSite => {
            let site = create_site(req, state)?;
            let id = site.id.clone();
            state.sites.push(site);
            Ok(View::new(state, fixed).site(state.site(&id)?))
        }
        Op::PutSite => {
            let id = guid_param(param())?.to_owned();
            put_site(req, state, &id)?;
            Ok(View::new(state, fixed).site(state.site(&id)?))
        }
        Op::DeleteSite => {
            let id = guid_param(param())?;
            let site = state.site(id)?;
            let devices = state
                .devices
                .iter()
                .filter(|d| d.site_id.as_deref() == Some(id))
                .count();
            let children = state
                .sites
                .iter()
                .filter(|s| s.parent_id.as_deref() == Some(id))
                .count();
            if devices + children > 0 {
                return Err(Fail::new(
                    400,
                    format!(
                        "Site {} is not empty: {devices} device(s), {children} site(s)",
                        site.name
                    ),
                ));
            }
            state.sites.retain(|s| s.id != id);
            Ok(status_ok("Site deleted"))
        }
        Op::Connection => Ok(Value::String(fixed.connection_string.clone())),
    }
}

fn status_ok(message: &str) -> Value {
    json!({ "result": true, "message": message })
}

fn list_devices(req: &Incoming, fixed: &Fixed, state: &UispState) -> Result<Value, Fail> {
    only_query_keys(
        &req.query,
        &["siteId", "withInterfaces", "authorized", "type", "role"],
    )?;
    let site_id = match single_query(&req.query, "siteId") {
        Some(s) if !is_guid(s) => {
            return Err(Fail::invalid(
                "query",
                "siteId",
                "\"siteId\" must be a valid GUID",
            ));
        }
        other => other,
    };
    let authorized = bool_query(&req.query, "authorized")?;
    let with_interfaces = bool_query(&req.query, "withInterfaces")?.unwrap_or(false);
    let types = enum_query(&req.query, "type", DEVICE_TYPES)?;
    let roles = enum_query(&req.query, "role", DEVICE_ROLES)?;
    let view = View::new(state, fixed);
    let list: Vec<Value> = state
        .devices
        .iter()
        .filter(|d| site_id.is_none_or(|s| d.authorized && d.site_id.as_deref() == Some(s)))
        .filter(|d| authorized.is_none_or(|a| d.authorized == a))
        .filter(|_| types.is_empty() || types.contains(&DEVICE_TYPE))
        .filter(|_| roles.is_empty() || roles.contains(&DEVICE_ROLE))
        .map(|d| view.device(d, with_interfaces))
        .collect();
    Ok(Value::Array(list))
}

fn device_by_mac(mac: &str, state: &UispState) -> Result<Value, Fail> {
    let Some(wanted) = mac_key(mac) else {
        return Err(Fail::invalid(
            "params",
            "mac",
            format!("\"mac\" with value \"{mac}\" fails to match the required pattern"),
        ));
    };
    let d = state
        .devices
        .iter()
        .find(|d| mac_key(&d.mac).as_deref() == Some(wanted.as_str()))
        .ok_or_else(|| Fail::not_found(format!("Device with MAC {mac} not found")))?;
    Ok(json!({ "id": d.id, "type": DEVICE_TYPE, "series": series(&d.model) }))
}

/// Authorizes (and assigns, or moves) every device of `ids` to `site_id`, all or nothing.
fn authorize(state: &mut UispState, site_id: &str, ids: &[String]) -> Result<(), Fail> {
    state.site(site_id)?;
    // One pass over the devices, not one per id: a move sends thousands of ids.
    let known: HashSet<&str> = state.devices.iter().map(|d| d.id.as_str()).collect();
    if let Some(id) = ids.iter().find(|id| !known.contains(id.as_str())) {
        return Err(Fail::not_found(format!("Device {id} not found")));
    }
    let ids: HashSet<&str> = ids.iter().map(String::as_str).collect();
    for d in state
        .devices
        .iter_mut()
        .filter(|d| ids.contains(d.id.as_str()))
    {
        d.authorized = true;
        d.site_id = Some(site_id.to_owned());
        if d.status == "unauthorized" {
            d.status = if d.failed_message_decryption {
                "disconnected".into()
            } else {
                "active".into()
            };
        }
    }
    Ok(())
}

fn list_sites(req: &Incoming, fixed: &Fixed, state: &UispState) -> Result<Value, Fail> {
    only_query_keys(
        &req.query,
        &["id", "ip", "deviceId", "type", "ucrm", "ucrmDetails"],
    )?;
    let ids = all_query(&req.query, "id");
    if let Some(bad) = ids.iter().find(|i| !is_guid(i)) {
        return Err(Fail::invalid(
            "query",
            "id",
            format!("\"id\" with value \"{bad}\" must be a valid GUID"),
        ));
    }
    let ids: HashSet<&str> = ids.into_iter().collect();
    let kinds = enum_query(&req.query, "type", &["site", "endpoint", "client"])?;
    let ucrm = bool_query(&req.query, "ucrm")?;
    bool_query(&req.query, "ucrmDetails")?;
    let device_id = single_query(&req.query, "deviceId");
    let ip = single_query(&req.query, "ip").map(strip_prefix_len);
    // The sites holding the devices named by deviceId or ip.
    let holding = |pick: &dyn Fn(&LabDevice) -> bool| -> HashSet<&str> {
        state
            .devices
            .iter()
            .filter(|d| d.authorized && pick(d))
            .filter_map(|d| d.site_id.as_deref())
            .collect()
    };
    let by_device = device_id.map(|id| holding(&|d| d.id == id));
    let by_ip = ip.map(|ip| holding(&|d| d.ip.as_deref().map(strip_prefix_len) == Some(ip)));
    let view = View::new(state, fixed);
    let list: Vec<Value> = state
        .sites
        .iter()
        .filter(|s| ids.is_empty() || ids.contains(s.id.as_str()))
        .filter(|s| kinds.is_empty() || kinds.contains(&s.kind.as_str()))
        // The lab binds no site to CRM.
        .filter(|_| ucrm != Some(true))
        .filter(|s| {
            by_device
                .as_ref()
                .is_none_or(|set| set.contains(s.id.as_str()))
        })
        .filter(|s| by_ip.as_ref().is_none_or(|set| set.contains(s.id.as_str())))
        .map(|s| view.site(s))
        .collect();
    Ok(Value::Array(list))
}

fn create_site(req: &Incoming, state: &UispState) -> Result<LabSite, Fail> {
    let body = payload_object(req, CREATE_SITE_KEYS)?;
    let name = required_name(body, "name", "name")?;
    let kind = match opt_str(body, "type", "type")? {
        None | Some("site") => "site",
        Some("endpoint") => "endpoint",
        Some("client") => {
            return Err(Fail::invalid(
                "payload",
                "type",
                "\"type\" client sites are not simulated by the lab",
            ));
        }
        Some(_) => {
            return Err(Fail::invalid(
                "payload",
                "type",
                "\"type\" must be one of [site, endpoint, client]",
            ));
        }
    };
    let parent_id = match body.get("parentSiteId") {
        None | Some(Value::Null) => None,
        Some(_) => Some(required_guid(body, "parentSiteId")?),
    };
    for key in [
        "contactName",
        "contactPhone",
        "contactEmail",
        "regulatoryDomain",
    ] {
        opt_str(body, key, key)?;
    }
    for key in ["height", "elevation"] {
        opt_number(body, key, key)?;
    }
    check_location(body.get("location"), "location")?;
    let address = text_field(body, "address", "address")?.flatten();
    let note = text_field(body, "note", "note")?.flatten();
    // Valid: now the lookups.
    if let Some(parent) = parent_id {
        state.site(parent)?;
    }
    Ok(LabSite {
        id: new_uuid(),
        name: name.to_owned(),
        kind: kind.into(),
        parent_id: parent_id.map(str::to_owned),
        address,
        note,
    })
}

fn put_site(req: &Incoming, state: &mut UispState, id: &str) -> Result<(), Fail> {
    let body = payload_object(req, SITE_UPDATE_KEYS)?;
    opt_str(body, "id", "id")?;
    for key in ["notifications", "qos", "ucrm"] {
        opt_object(body, key, key)?;
    }
    let ident = required_object(body, "identification", SITE_IDENTIFICATION_KEYS)?;
    let desc = required_object(body, "description", SITE_DESCRIPTION_KEYS)?;

    let name = required_name(ident, "name", "identification.name")?.to_owned();
    required_str(ident, "id", "identification.id")?;
    let kind = match required_str(ident, "type", "identification.type")? {
        k @ ("site" | "endpoint") => k.to_owned(),
        _ => {
            return Err(Fail::invalid(
                "payload",
                "identification.type",
                "\"type\" must be one of [site, endpoint]",
            ));
        }
    };
    match required_str(ident, "status", "identification.status")? {
        "active" | "disconnected" | "inactive" => {}
        _ => {
            return Err(Fail::invalid(
                "payload",
                "identification.status",
                "\"status\" must be one of [active, disconnected, inactive]",
            ));
        }
    }
    opt_str(ident, "updated", "identification.updated")?;
    opt_bool(ident, "suspended", "identification.suspended")?;
    let parent = match ident.get("parent") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(Value::Object(p)) => {
            let pid = required_guid(p, "id").map_err(|f| Fail {
                validation: Some(
                    json!({ "source": "payload", "keys": ["identification.parent.id"] }),
                ),
                ..f
            })?;
            Some(Some(pid))
        }
        Some(_) => {
            return Err(Fail::invalid(
                "payload",
                "identification.parent",
                "\"parent\" must be an object",
            ));
        }
    };
    let address = text_field(desc, "address", "description.address")?;
    let note = text_field(desc, "note", "description.note")?;
    for key in ["height", "elevation", "deviceCount"] {
        opt_number(desc, key, &format!("description.{key}"))?;
    }
    for key in ["ucrmId", "deviceListStatus", "regulatoryDomain"] {
        opt_str(desc, key, &format!("description.{key}"))?;
    }
    for key in ["endpoints", "ipAddresses"] {
        opt_array(desc, key, &format!("description.{key}"))?;
    }
    opt_object(desc, "contact", "description.contact")?;
    check_location(desc.get("location"), "description.location")?;

    // Valid: now the lookups.
    state.site(id)?;
    if let Some(Some(pid)) = parent {
        state.site(pid)?;
        // Each site's parent, indexed once: the walk up is one lookup per step.
        let parents: HashMap<&str, Option<&str>> = state
            .sites
            .iter()
            .map(|s| (s.id.as_str(), s.parent_id.as_deref()))
            .collect();
        let mut up = Some(pid);
        while let Some(cur) = up {
            if cur == id {
                return Err(Fail::invalid(
                    "payload",
                    "identification.parent",
                    "\"parent\" cannot be the site itself or one of its descendants",
                ));
            }
            up = *parents
                .get(cur)
                .ok_or_else(|| Fail::not_found(format!("Site {cur} not found")))?;
        }
    }
    let site = state.site_mut(id)?;
    site.name = name;
    site.kind = kind;
    if let Some(parent) = parent {
        site.parent_id = parent.map(str::to_owned);
    }
    if let Some(address) = address {
        site.address = address;
    }
    if let Some(note) = note {
        site.note = note;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Validation helpers (Joi's messages)
// ---------------------------------------------------------------------------------------------

/// The payload as an object whose keys are all in `allowed`.
fn payload_object<'a>(req: &'a Incoming, allowed: &[&str]) -> Result<&'a Map<String, Value>, Fail> {
    match &req.payload {
        Payload::Json(Value::Object(m)) => {
            only_keys(m, allowed, "")?;
            Ok(m)
        }
        _ => Err(Fail::invalid("payload", "", "\"value\" must be an object")),
    }
}

fn only_keys(m: &Map<String, Value>, allowed: &[&str], prefix: &str) -> Result<(), Fail> {
    match m.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(Fail::invalid(
            "payload",
            &format!("{prefix}{k}"),
            format!("\"{k}\" is not allowed"),
        )),
        None => Ok(()),
    }
}

fn last_key(path: &str) -> &str {
    path.rsplit('.').next().unwrap_or(path)
}

fn required_object<'a>(
    m: &'a Map<String, Value>,
    key: &str,
    allowed: &[&str],
) -> Result<&'a Map<String, Value>, Fail> {
    match m.get(key) {
        Some(Value::Object(o)) => {
            only_keys(o, allowed, &format!("{key}."))?;
            Ok(o)
        }
        None | Some(Value::Null) => Err(Fail::invalid(
            "payload",
            key,
            format!("\"{key}\" is required"),
        )),
        Some(_) => Err(Fail::invalid(
            "payload",
            key,
            format!("\"{key}\" must be an object"),
        )),
    }
}

fn opt_typed<'a>(
    m: &'a Map<String, Value>,
    key: &str,
    path: &str,
    what: &str,
    ok: fn(&Value) -> bool,
) -> Result<Option<&'a Value>, Fail> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) if ok(v) => Ok(Some(v)),
        Some(_) => Err(Fail::invalid(
            "payload",
            path,
            format!("\"{}\" must be {what}", last_key(path)),
        )),
    }
}

fn opt_str<'a>(m: &'a Map<String, Value>, key: &str, path: &str) -> Result<Option<&'a str>, Fail> {
    Ok(opt_typed(m, key, path, "a string", Value::is_string)?.and_then(Value::as_str))
}

fn opt_number(m: &Map<String, Value>, key: &str, path: &str) -> Result<(), Fail> {
    opt_typed(m, key, path, "a number", Value::is_number).map(drop)
}

fn opt_bool(m: &Map<String, Value>, key: &str, path: &str) -> Result<(), Fail> {
    opt_typed(m, key, path, "a boolean", Value::is_boolean).map(drop)
}

fn opt_object(m: &Map<String, Value>, key: &str, path: &str) -> Result<(), Fail> {
    opt_typed(m, key, path, "an object", Value::is_object).map(drop)
}

fn opt_array(m: &Map<String, Value>, key: &str, path: &str) -> Result<(), Fail> {
    opt_typed(m, key, path, "an array", Value::is_array).map(drop)
}

fn required_str<'a>(m: &'a Map<String, Value>, key: &str, path: &str) -> Result<&'a str, Fail> {
    opt_str(m, key, path)?.ok_or_else(|| {
        Fail::invalid(
            "payload",
            path,
            format!("\"{}\" is required", last_key(path)),
        )
    })
}

/// A required, non-empty string.
fn required_name<'a>(m: &'a Map<String, Value>, key: &str, path: &str) -> Result<&'a str, Fail> {
    let name = required_str(m, key, path)?;
    if name.trim().is_empty() {
        return Err(Fail::invalid(
            "payload",
            path,
            format!("\"{}\" is not allowed to be empty", last_key(path)),
        ));
    }
    Ok(name)
}

/// A text field: absent is `None`; `null` or empty clears it (`Some(None)`).
fn text_field(
    m: &Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<Option<String>>, Fail> {
    if !m.contains_key(key) {
        return Ok(None);
    }
    Ok(Some(
        opt_str(m, key, path)?
            .filter(|s| !s.is_empty())
            .map(str::to_owned),
    ))
}

fn required_guid<'a>(m: &'a Map<String, Value>, key: &str) -> Result<&'a str, Fail> {
    let v = required_str(m, key, key)?;
    if !is_guid(v) {
        return Err(Fail::invalid(
            "payload",
            key,
            format!("\"{key}\" must be a valid GUID"),
        ));
    }
    Ok(v)
}

/// An array of GUIDs; absent is empty unless `required`.
fn guid_list(m: &Map<String, Value>, key: &str, required: bool) -> Result<Vec<String>, Fail> {
    let items = match m.get(key) {
        None | Some(Value::Null) if required => {
            return Err(Fail::invalid(
                "payload",
                key,
                format!("\"{key}\" is required"),
            ));
        }
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => {
            return Err(Fail::invalid(
                "payload",
                key,
                format!("\"{key}\" must be an array"),
            ));
        }
    };
    items
        .iter()
        .enumerate()
        .map(|(i, v)| match v.as_str() {
            Some(s) if is_guid(s) => Ok(s.to_owned()),
            _ => Err(Fail::invalid(
                "payload",
                &format!("{key}.{i}"),
                format!("\"{i}\" must be a valid GUID"),
            )),
        })
        .collect()
}

fn check_location(v: Option<&Value>, path: &str) -> Result<(), Fail> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(());
    };
    let Some(o) = v.as_object() else {
        return Err(Fail::invalid(
            "payload",
            path,
            "\"location\" must be an object",
        ));
    };
    only_keys(o, &["longitude", "latitude"], &format!("{path}."))?;
    for (key, limit) in [("longitude", 180.0), ("latitude", 90.0)] {
        let at = format!("{path}.{key}");
        match o.get(key).and_then(Value::as_f64) {
            Some(x) if (-limit..=limit).contains(&x) => {}
            Some(_) => {
                return Err(Fail::invalid(
                    "payload",
                    &at,
                    format!("\"{key}\" must be between -{limit} and {limit}"),
                ));
            }
            None => {
                return Err(Fail::invalid(
                    "payload",
                    &at,
                    format!("\"{key}\" is required and must be a number"),
                ));
            }
        }
    }
    Ok(())
}

fn guid_param(id: &str) -> Result<&str, Fail> {
    if is_guid(id) {
        Ok(id)
    } else {
        Err(Fail::invalid("params", "id", "\"id\" must be a valid GUID"))
    }
}

fn only_query_keys(query: &[(String, String)], allowed: &[&str]) -> Result<(), Fail> {
    match query.iter().find(|(k, _)| !allowed.contains(&k.as_str())) {
        Some((k, _)) => Err(Fail::invalid("query", k, format!("\"{k}\" is not allowed"))),
        None => Ok(()),
    }
}

fn all_query<'a>(query: &'a [(String, String)], key: &str) -> Vec<&'a str> {
    query
        .iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .collect()
}

/// The last value of `key`.
fn single_query<'a>(query: &'a [(String, String)], key: &str) -> Option<&'a str> {
    all_query(query, key).pop()
}

fn bool_query(query: &[(String, String)], key: &str) -> Result<Option<bool>, Fail> {
    match single_query(query, key) {
        None => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(_) => Err(Fail::invalid(
            "query",
            key,
            format!("\"{key}\" must be a boolean"),
        )),
    }
}

/// Every value of `key`, each one of `allowed`.
fn enum_query<'a>(
    query: &'a [(String, String)],
    key: &str,
    allowed: &[&str],
) -> Result<Vec<&'a str>, Fail> {
    let values = all_query(query, key);
    match values.iter().find(|v| !allowed.contains(v)) {
        Some(_) => Err(Fail::invalid(
            "query",
            key,
            format!("\"{key}\" must be one of [{}]", allowed.join(", ")),
        )),
        None => Ok(values),
    }
}

// ---------------------------------------------------------------------------------------------
// The state: lookups, rules, rendering
// ---------------------------------------------------------------------------------------------

impl LabSite {
    /// A site with no address and no note.
    pub fn new(id: &str, name: &str, kind: &str, parent: Option<&str>) -> LabSite {
        LabSite {
            id: id.into(),
            name: name.into(),
            kind: kind.into(),
            parent_id: parent.map(Into::into),
            address: None,
            note: None,
        }
    }
}

impl LabDevice {
    /// A LiteBeam M5, authorized (and active) exactly when it has a site.
    pub fn new(
        id: &str,
        mac: &str,
        name: Option<&str>,
        ip: Option<&str>,
        site: Option<&str>,
    ) -> LabDevice {
        LabDevice {
            id: id.into(),
            mac: mac.into(),
            name: name.map(Into::into),
            ip: ip.map(Into::into),
            model: "LB5".into(),
            model_name: "LiteBeam M5".into(),
            authorized: site.is_some(),
            site_id: site.map(Into::into),
            status: if site.is_some() {
                "active".into()
            } else {
                "unauthorized".into()
            },
            failed_message_decryption: false,
            key_resets: 0,
        }
    }
}

impl UispState {
    fn site(&self, id: &str) -> Result<&LabSite, Fail> {
        self.sites
            .iter()
            .find(|s| s.id == id)
            .ok_or_else(|| Fail::not_found(format!("Site {id} not found")))
    }

    fn site_mut(&mut self, id: &str) -> Result<&mut LabSite, Fail> {
        self.sites
            .iter_mut()
            .find(|s| s.id == id)
            .ok_or_else(|| Fail::not_found(format!("Site {id} not found")))
    }

    fn device(&self, id: &str) -> Result<&LabDevice, Fail> {
        self.devices
            .iter()
            .find(|d| d.id == id)
            .ok_or_else(|| Fail::not_found(format!("Device {id} not found")))
    }

    fn device_mut(&mut self, id: &str) -> Result<&mut LabDevice, Fail> {
        self.devices
            .iter_mut()
            .find(|d| d.id == id)
            .ok_or_else(|| Fail::not_found(format!("Device {id} not found")))
    }
}

/// `state` with new ids where they were empty, or what breaks UISP's rules.
fn checked(mut state: UispState) -> Result<UispState, String> {
    for s in state.sites.iter_mut().filter(|s| s.id.is_empty()) {
        s.id = new_uuid();
    }
    for d in state.devices.iter_mut().filter(|d| d.id.is_empty()) {
        d.id = new_uuid();
    }
    let mut ids = HashSet::new();
    for s in &state.sites {
        if !is_guid(&s.id) {
            return Err(format!(
                "site id {:?} is not a UUID (8-4-4-4-12 hex); leave it empty for the lab to assign one",
                s.id
            ));
        }
        if !ids.insert(s.id.as_str()) {
            return Err(format!("duplicate id {:?}", s.id));
        }
        if s.kind != "site" && s.kind != "endpoint" {
            return Err(format!(
                "site {:?}: kind {:?} is not site or endpoint",
                s.name, s.kind
            ));
        }
    }
    let parents: HashMap<&str, Option<&str>> = state
        .sites
        .iter()
        .map(|s| (s.id.as_str(), s.parent_id.as_deref()))
        .collect();
    for s in &state.sites {
        let mut seen = HashSet::from([s.id.as_str()]);
        let mut up = s.parent_id.as_deref();
        while let Some(p) = up {
            let Some(next) = parents.get(p) else {
                return Err(format!("site {:?}: unknown parent {p:?}", s.name));
            };
            if !seen.insert(p) {
                return Err(format!("site {:?}: its parents form a cycle", s.name));
            }
            up = *next;
        }
    }
    let mut macs = HashSet::new();
    for d in &state.devices {
        if !is_guid(&d.id) {
            return Err(format!(
                "device id {:?} is not a UUID (8-4-4-4-12 hex); leave it empty for the lab to assign one",
                d.id
            ));
        }
        if !ids.insert(d.id.as_str()) {
            return Err(format!("duplicate id {:?}", d.id));
        }
        let Some(key) = mac_key(&d.mac).filter(|_| d.mac.len() == 17) else {
            return Err(format!(
                "device {}: MAC {:?} is not XX:XX:XX:XX:XX:XX",
                d.id, d.mac
            ));
        };
        if !macs.insert(key) {
            return Err(format!("duplicate MAC {:?}", d.mac));
        }
        if let Some(site) = &d.site_id {
            if !parents.contains_key(site.as_str()) {
                return Err(format!("device {}: unknown site {site:?}", d.mac));
            }
            if !d.authorized {
                return Err(format!(
                    "device {}: an unauthorized device has no site in UISP",
                    d.mac
                ));
            }
        }
    }
    Ok(state)
}

/// Renders the state's objects as UISP's JSON. Built once per request, so that listing every
/// site or device stays linear.
struct View<'a> {
    fixed: &'a Fixed,
    sites: HashMap<&'a str, &'a LabSite>,
    /// Per site id: its endpoint children, in the state's order.
    endpoints: HashMap<&'a str, Vec<&'a LabSite>>,
    /// Per site: (devices, active devices).
    counts: HashMap<&'a str, (usize, usize)>,
}

impl<'a> View<'a> {
    fn new(state: &'a UispState, fixed: &'a Fixed) -> Self {
        let sites = state.sites.iter().map(|s| (s.id.as_str(), s)).collect();
        let mut counts: HashMap<&str, (usize, usize)> = HashMap::new();
        for d in &state.devices {
            if let Some(site) = &d.site_id {
                let c = counts.entry(site.as_str()).or_default();
                c.0 += 1;
                c.1 += usize::from(d.status == "active");
            }
        }
        let mut endpoints: HashMap<&str, Vec<&LabSite>> = HashMap::new();
        for e in state.sites.iter().filter(|e| e.kind == "endpoint") {
            if let Some(parent) = &e.parent_id {
                endpoints.entry(parent.as_str()).or_default().push(e);
            }
        }
        View {
            fixed,
            sites,
            endpoints,
            counts,
        }
    }

    fn site_status(&self, id: &str) -> &'static str {
        match self.counts.get(id).copied().unwrap_or_default() {
            (0, _) => "inactive",
            (n, active) if n == active => "active",
            _ => "disconnected",
        }
    }

    /// `{id, name, type}` of a site's parent, or `null`.
    fn parent(&self, site: &LabSite) -> Value {
        match site.parent_id.as_deref().and_then(|p| self.sites.get(p)) {
            Some(p) => json!({ "id": p.id, "name": p.name, "type": p.kind }),
            None => Value::Null,
        }
    }

    /// `DeviceStatusOverview` (and `DeviceSchema`, the same shape for `GET /devices/{id}`).
    fn device(&self, d: &LabDevice, with_interfaces: bool) -> Value {
        let site = match d.site_id.as_deref().and_then(|s| self.sites.get(s)) {
            Some(s) if d.authorized => json!({
                "id": s.id,
                "name": s.name,
                "status": self.site_status(&s.id),
                "type": s.kind,
                "parent": self.parent(s),
            }),
            _ => Value::Null,
        };
        let mut v = json!({
            "identification": {
                "id": d.id,
                "mac": d.mac,
                "name": d.name,
                "hostname": d.name,
                "displayName": d.name,
                "model": d.model,
                "modelName": d.model_name,
                "type": DEVICE_TYPE,
                "category": DEVICE_CATEGORY,
                "role": DEVICE_ROLE,
                "authorized": d.authorized,
                "status": d.status,
                "site": site,
            },
            "overview": {
                "status": d.status,
                "canUpgrade": false,
                "isLocateRunning": false,
            },
            "meta": {
                "alias": null,
                "customIpAddress": null,
                "note": null,
                "maintenance": false,
                "failedMessageDecryption": d.failed_message_decryption,
                "restartTimestamp": null,
            },
            "attributes": { "series": series(&d.model) },
            "ipAddress": d.ip,
            "enabled": true,
        });
        if with_interfaces {
            v["interfaces"] = json!([]);
        }
        v
    }

    /// `Site`.
    fn site(&self, s: &LabSite) -> Value {
        let endpoints: Vec<Value> = self
            .endpoints
            .get(s.id.as_str())
            .into_iter()
            .flatten()
            .map(|e| {
                json!({
                    "id": e.id,
                    "type": e.kind,
                    "name": e.name,
                    "status": self.site_status(&e.id),
                    "parentId": s.id,
                    "updated": self.fixed.started,
                    "suspended": false,
                })
            })
            .collect();
        json!({
            "id": s.id,
            "identification": {
                "id": s.id,
                "type": s.kind,
                "name": s.name,
                "status": self.site_status(&s.id),
                "parent": self.parent(s),
                "updated": self.fixed.started,
                "suspended": false,
            },
            "description": {
                "address": s.address,
                "note": s.note,
                "endpoints": endpoints,
                "deviceCount": self.counts.get(s.id.as_str()).map_or(0, |c| c.0),
            },
            "notifications": { "type": "system", "users": [] },
            "qos": {
                "enabled": false,
                "propagation": "all",
                "downloadSpeed": 0,
                "downloadBurstSize": 0,
                "uploadSpeed": 0,
                "uploadBurstSize": 0,
                "aggregation": 1,
            },
        })
    }
}

/// The airMax series of a model: `AC` when its name says so, else `M`.
fn series(model: &str) -> &'static str {
    if model.to_ascii_uppercase().contains("AC") {
        "AC"
    } else {
        "M"
    }
}

/// An address without its prefix length.
fn strip_prefix_len(ip: &str) -> &str {
    ip.split('/').next().unwrap_or(ip)
}

/// `8-4-4-4-12` hex digits.
fn is_guid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A MAC (`aa:bb:cc:dd:ee:ff` in any case, or 12 hex digits) as 12 lower-case hex digits.
fn mac_key(mac: &str) -> Option<String> {
    let hex: String = if mac.len() == 17 {
        let parts: Vec<&str> = mac.split(':').collect();
        if parts.len() != 6 || parts.iter().any(|p| p.len() != 2) {
            return None;
        }
        parts.concat()
    } else {
        mac.to_owned()
    };
    (hex.len() == 12 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| hex.to_ascii_lowercase())
}

/// A random (version 4) UUID, lower case.
fn new_uuid() -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("the OS random source works");
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::RootCertStore;
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    use tokio::time::Instant;

    const TOKEN: &str = "lab-nms-token";
    const CRM_KEY: &str = "lab-crm-app-key";
    const TOWER: &str = "0b6f4c2e-1a2b-4c3d-8e9f-000000000001";
    const CASA: &str = "0b6f4c2e-1a2b-4c3d-8e9f-000000000002";
    const OTRA: &str = "0b6f4c2e-1a2b-4c3d-8e9f-000000000003";
    const JUAN: &str = "5d1c7a10-0000-4000-8000-000000000001";
    const AP: &str = "5d1c7a10-0000-4000-8000-000000000002";
    const GHOST: &str = "5d1c7a10-0000-4000-8000-000000000003";
    const NOBODY: &str = "5d1c7a10-0000-4000-8000-0000000000ff";

    fn site(id: &str, name: &str, kind: &str, parent: Option<&str>) -> LabSite {
        LabSite::new(id, name, kind, parent)
    }

    /// A bridge that connects with this server's host shows its device connected `delay`
    /// later (added when not listed), any other host shows it disconnected at once, and a
    /// delayed connection is dropped when a later bridge event came meanwhile. On the paused
    /// clock.
    #[tokio::test(start_paused = true)]
    async fn antennas_bridges_connect_their_devices() {
        let state = UispState {
            sites: vec![site(TOWER, "Tower", "site", None)],
            devices: vec![LabDevice::new(
                JUAN,
                "28:70:4E:A8:16:99",
                Some("juan"),
                None,
                Some(TOWER),
            )],
        };
        let lab = UispLab::start(UispConfig::default(), state).await.unwrap();
        let hook = lab.bridge_hook(Duration::from_secs(5));
        let status = |mac: &str| {
            lab.state()
                .devices
                .iter()
                .find(|d| d.mac == mac)
                .map(|d| d.status.clone())
        };
        let event = |mac: &'static str, uri: Option<&'static str>| crate::lab::twin::BridgeEvent {
            mac,
            ip: "10.0.0.9",
            uri,
        };
        let elsewhere =
            "wss://other.lab.invalid:443+LabOnlyMasterKey0123456789abcdefghijklmnopqrstuv";
        hook.call(&event("28704EA81699", Some(elsewhere)));
        assert_eq!(status("28:70:4E:A8:16:99").as_deref(), Some("disconnected"));
        hook.call(&event("28704ea81699", Some(LAB_CONNECTION_STRING)));
        tokio::time::sleep(Duration::from_millis(4_900)).await;
        assert_eq!(status("28:70:4E:A8:16:99").as_deref(), Some("disconnected"));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(status("28:70:4E:A8:16:99").as_deref(), Some("active"));
        // Connecting, then gone before the delay: stays disconnected.
        hook.call(&event("28:70:4E:A8:16:99", Some(LAB_CONNECTION_STRING)));
        hook.call(&event("28:70:4E:A8:16:99", None));
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(status("28:70:4E:A8:16:99").as_deref(), Some("disconnected"));
        // A device UISP did not list appears, waiting to be authorized.
        hook.call(&event("28:70:4E:A8:17:03", Some(LAB_CONNECTION_STRING)));
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert_eq!(status("28:70:4E:A8:17:03").as_deref(), Some("unauthorized"));
    }

    fn device(id: &str, mac: &str, name: Option<&str>, site: Option<&str>) -> LabDevice {
        LabDevice::new(id, mac, name, None, site)
    }

    /// A tower site, an endpoint under it holding Juan's antenna, another empty endpoint, the
    /// tower's AP, and a ghost.
    fn seed() -> UispState {
        UispState {
            sites: vec![
                LabSite {
                    address: Some("Cerro Grande".into()),
                    ..site(TOWER, "Torre Norte", "site", None)
                },
                LabSite {
                    note: Some("casa azul".into()),
                    ..site(CASA, "Tomatlan, Juan Perez", "endpoint", Some(TOWER))
                },
                site(OTRA, "Tomatlan, Otra Casa", "endpoint", Some(TOWER)),
            ],
            devices: vec![
                LabDevice {
                    ip: Some("10.10.1.139/24".into()),
                    ..device(JUAN, "FC:EC:DA:00:00:01", Some("juan-lb5"), Some(CASA))
                },
                LabDevice {
                    model: "LAP-GPS".into(),
                    model_name: "LiteAP GPS".into(),
                    ..device(AP, "FC:EC:DA:00:00:02", Some("ap-norte"), Some(TOWER))
                },
                LabDevice {
                    failed_message_decryption: true,
                    ..device(GHOST, "fc:ec:da:00:00:03", None, None)
                },
            ],
        }
    }

    fn config() -> UispConfig {
        UispConfig {
            crm_keys: vec![CRM_KEY.into()],
            connection_string: "wss://uisp.lab.invalid:443+abc+allowSelfSignedCertificate".into(),
            ..UispConfig::with_token(TOKEN)
        }
    }

    struct Lab {
        lab: UispLab,
        http: reqwest::Client,
    }

    struct Reply {
        status: u16,
        headers: reqwest::header::HeaderMap,
        body: Value,
    }

    impl Lab {
        async fn new() -> Lab {
            let lab = UispLab::start(config(), seed()).await.unwrap();
            let http = client(&lab.ca_pem());
            Lab { lab, http }
        }

        async fn call(
            &self,
            method: &str,
            path: &str,
            body: Option<Value>,
            token: Option<&str>,
        ) -> Reply {
            let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
            let mut rb = self
                .http
                .request(method, format!("{}{path}", self.lab.url()));
            if let Some(t) = token {
                rb = rb.header("x-auth-token", t);
            }
            if let Some(b) = body {
                rb = rb.json(&b);
            }
            let r = rb.send().await.unwrap();
            let status = r.status().as_u16();
            let headers = r.headers().clone();
            let text = r.text().await.unwrap();
            let body = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{path}: the lab answered no JSON ({e}): {text:?}"));
            Reply {
                status,
                headers,
                body,
            }
        }

        async fn get(&self, path: &str) -> Reply {
            self.call("GET", path, None, Some(TOKEN)).await
        }

        async fn post(&self, path: &str, body: Value) -> Reply {
            self.call("POST", path, Some(body), Some(TOKEN)).await
        }

        fn device(&self, id: &str) -> LabDevice {
            self.lab
                .state()
                .devices
                .into_iter()
                .find(|d| d.id == id)
                .unwrap()
        }
    }

    /// A client trusting only the lab's certificate, as a CA file.
    fn client(ca_pem: &str) -> reqwest::Client {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap()
    }

    #[track_caller]
    fn assert_error(r: &Reply, status: u16, message: &str) {
        assert_eq!(r.status, status, "{}", r.body);
        assert!(r.body.is_object(), "{}", r.body);
        assert_eq!(r.body["statusCode"], status, "{}", r.body);
        assert_eq!(r.body["error"], reason(status), "{}", r.body);
        assert_eq!(r.body["message"], message, "{}", r.body);
    }

    #[track_caller]
    fn assert_invalid(r: &Reply, source: &str, key: &str, message: &str) {
        assert_error(r, 400, message);
        assert_eq!(r.body["validation"]["source"], source, "{}", r.body);
        let keys: Vec<&str> = [key].into_iter().filter(|k| !k.is_empty()).collect();
        assert_eq!(r.body["validation"]["keys"], json!(keys), "{}", r.body);
    }

    fn ids(list: &Value) -> Vec<&str> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|d| {
                d["identification"]["id"]
                    .as_str()
                    .or(d["id"].as_str())
                    .unwrap()
            })
            .collect()
    }

    #[tokio::test]
    async fn serves_https_on_loopback_with_the_certificate_it_gives() {
        let lab = Lab::new().await;
        assert!(lab.lab.addr().ip().is_loopback());
        assert_eq!(
            lab.lab.url(),
            format!("https://127.0.0.1:{}/nms/api/v2.1", lab.lab.addr().port())
        );
        assert!(lab.lab.ca_pem().starts_with("-----BEGIN CERTIFICATE-----"));
        assert_eq!(lab.get("/devices").await.status, 200);
        // Another lab's certificate is not trusted.
        let other = UispLab::start(config(), UispState::default())
            .await
            .unwrap();
        let wrong = client(&other.ca_pem());
        let err = wrong
            .get(format!("{}/devices", lab.lab.url()))
            .send()
            .await
            .unwrap_err();
        assert!(err.is_connect(), "{err:?}");
    }

    #[tokio::test]
    async fn auth_token_ok_wrong_token_missing_token_and_crm_key_are_401_objects() {
        let lab = Lab::new().await;
        assert_eq!(
            lab.call("GET", "/devices", None, Some(TOKEN)).await.status,
            200
        );
        let r = lab.call("GET", "/devices", None, Some("nope")).await;
        assert_error(&r, 401, "Invalid token");
        let r = lab.call("GET", "/devices", None, None).await;
        assert_error(&r, 401, "Missing authentication");
        // A CRM key sent to NMS: an object, never a list, like any wrong key.
        let r = lab.call("GET", "/sites", None, Some(CRM_KEY)).await;
        assert_error(&r, 401, "Invalid token");
        assert!(!r.body.is_array());
        // Nothing changes without a valid token.
        let r = lab
            .call("DELETE", &format!("/devices/{GHOST}"), None, Some(CRM_KEY))
            .await;
        assert_eq!(r.status, 401);
        assert_eq!(lab.lab.state().devices.len(), 3);
    }

    #[tokio::test]
    async fn unknown_routes_are_404_objects_before_auth() {
        let lab = Lab::new().await;
        let r = lab.call("GET", "/nothing", None, None).await;
        assert_error(&r, 404, "Not Found");
        let r = lab.call("PATCH", "/devices", None, Some(TOKEN)).await;
        assert_error(&r, 404, "Not Found");
        let r = lab.call("GET", "/devices/", None, Some(TOKEN)).await;
        assert_error(&r, 404, "Not Found");
        let url = format!("https://{}/crm/api/v1.0/clients", lab.lab.addr());
        let r = lab.http.get(url).send().await.unwrap();
        assert_eq!(r.status(), 404);
        assert_eq!(lab.lab.calls()[3].path, "/crm/api/v1.0/clients");
    }

    #[tokio::test]
    async fn devices_list_is_one_array_shaped_like_uisp() {
        let lab = Lab::new().await;
        let r = lab.get("/devices").await;
        assert_eq!(r.status, 200);
        assert_eq!(ids(&r.body), [JUAN, AP, GHOST]);
        let juan = &r.body[0];
        let ident = &juan["identification"];
        assert_eq!(ident["mac"], "FC:EC:DA:00:00:01");
        assert_eq!(ident["name"], "juan-lb5");
        assert_eq!(ident["hostname"], "juan-lb5");
        assert_eq!(ident["displayName"], "juan-lb5");
        assert_eq!(ident["model"], "LB5");
        assert_eq!(ident["modelName"], "LiteBeam M5");
        assert_eq!(ident["type"], "airMax");
        assert_eq!(ident["category"], "wireless");
        assert_eq!(ident["role"], "station");
        assert_eq!(ident["authorized"], true);
        assert_eq!(ident["status"], "active");
        assert_eq!(
            ident["site"],
            json!({
                "id": CASA, "name": "Tomatlan, Juan Perez", "status": "active", "type": "endpoint",
                "parent": { "id": TOWER, "name": "Torre Norte", "type": "site" },
            })
        );
        assert_eq!(juan["overview"]["status"], "active");
        assert_eq!(juan["ipAddress"], "10.10.1.139/24");
        assert_eq!(juan["enabled"], true);
        assert_eq!(juan["attributes"]["series"], "M");
        assert_eq!(juan["meta"]["failedMessageDecryption"], false);
        assert_eq!(juan["meta"]["maintenance"], false);
        assert!(juan["meta"]["alias"].is_null());
        assert!(juan.get("interfaces").is_none());
        // The AP's site is top level.
        assert!(r.body[1]["identification"]["site"]["parent"].is_null());
        // The ghost: no name, no IP, not authorized, no site, key out of sync.
        let ghost = &r.body[2];
        assert!(ghost["identification"]["name"].is_null());
        assert!(ghost["ipAddress"].is_null());
        assert!(ghost["identification"]["site"].is_null());
        assert_eq!(ghost["identification"]["authorized"], false);
        assert_eq!(ghost["identification"]["status"], "unauthorized");
        assert_eq!(ghost["identification"]["mac"], "fc:ec:da:00:00:03");
        assert_eq!(ghost["meta"]["failedMessageDecryption"], true);

        let r = lab.get("/devices?withInterfaces=true").await;
        assert_eq!(r.body[0]["interfaces"], json!([]));
        let r = lab.get(&format!("/devices/{JUAN}")).await;
        assert_eq!(r.body["identification"]["id"], JUAN);
        assert_eq!(r.body["ipAddress"], "10.10.1.139/24");
    }

    #[tokio::test]
    async fn devices_filters_and_bad_queries() {
        let lab = Lab::new().await;
        let r = lab.get(&format!("/devices?siteId={CASA}")).await;
        assert_eq!(ids(&r.body), [JUAN]);
        let r = lab.get(&format!("/devices?siteId={TOWER}")).await;
        assert_eq!(ids(&r.body), [AP]);
        let r = lab.get(&format!("/devices?siteId={OTRA}")).await;
        assert_eq!(ids(&r.body), Vec::<&str>::new());
        let r = lab.get("/devices?authorized=false").await;
        assert_eq!(ids(&r.body), [GHOST]);
        let r = lab.get("/devices?authorized=true").await;
        assert_eq!(ids(&r.body), [JUAN, AP]);
        let r = lab.get("/devices?type=airMax&role=station").await;
        assert_eq!(r.body.as_array().unwrap().len(), 3);
        let r = lab.get("/devices?type=erouter").await;
        assert_eq!(r.body, json!([]));
        let r = lab.get("/devices?role=ap&role=router").await;
        assert_eq!(r.body, json!([]));
        let r = lab.get("/devices?type=router").await;
        assert_eq!(r.status, 400);
        assert_eq!(r.body["validation"]["keys"], json!(["type"]));
        let r = lab.get("/devices?authorized=maybe").await;
        assert_invalid(
            &r,
            "query",
            "authorized",
            "\"authorized\" must be a boolean",
        );
        let r = lab.get("/devices?siteId=torre").await;
        assert_invalid(&r, "query", "siteId", "\"siteId\" must be a valid GUID");
        let r = lab.get("/devices?page=2").await;
        assert_invalid(&r, "query", "page", "\"page\" is not allowed");
    }

    #[tokio::test]
    async fn device_by_id_and_by_mac() {
        let lab = Lab::new().await;
        let r = lab.get(&format!("/devices/{NOBODY}")).await;
        assert_error(&r, 404, &format!("Device {NOBODY} not found"));
        let r = lab.get("/devices/FC:EC:DA:00:00:01").await;
        assert_invalid(&r, "params", "id", "\"id\" must be a valid GUID");
        for mac in [
            "FC:EC:DA:00:00:03",
            "fcecda000003",
            "fc%3Aec%3Ada%3A00%3A00%3A03",
        ] {
            let r = lab.get(&format!("/devices/mac/{mac}")).await;
            assert_eq!(r.status, 200, "{mac}: {}", r.body);
            assert_eq!(
                r.body,
                json!({ "id": GHOST, "type": "airMax", "series": "M" })
            );
        }
        let r = lab.get("/devices/mac/FC:EC:DA:00:00:02").await;
        assert_eq!(r.body["series"], "M");
        let r = lab.get("/devices/mac/FC:EC:DA:00:00:99").await;
        assert_eq!(r.status, 404);
        let r = lab.get("/devices/mac/not-a-mac").await;
        assert_eq!(r.status, 400);
        assert_eq!(r.body["validation"]["keys"], json!(["mac"]));
    }

    #[tokio::test]
    async fn sites_list_filter_and_detail() {
        let lab = Lab::new().await;
        let r = lab.get("/sites").await;
        assert_eq!(ids(&r.body), [TOWER, CASA, OTRA]);
        let tower = &r.body[0];
        assert_eq!(tower["id"], TOWER);
        assert_eq!(tower["identification"]["type"], "site");
        assert_eq!(tower["identification"]["name"], "Torre Norte");
        assert_eq!(tower["identification"]["status"], "active");
        assert_eq!(tower["identification"]["suspended"], false);
        assert!(tower["identification"]["parent"].is_null());
        assert_eq!(tower["description"]["address"], "Cerro Grande");
        assert!(tower["description"]["note"].is_null());
        assert_eq!(tower["description"]["deviceCount"], 1);
        let endpoints: Vec<&Value> = tower["description"]["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| &e["id"])
            .collect();
        assert_eq!(endpoints, [CASA, OTRA]);
        let casa = &r.body[1];
        assert_eq!(
            casa["identification"]["parent"],
            json!({ "id": TOWER, "name": "Torre Norte", "type": "site" })
        );
        assert_eq!(casa["description"]["note"], "casa azul");
        assert_eq!(r.body[2]["identification"]["status"], "inactive");

        assert_eq!(
            ids(&lab.get("/sites?type=endpoint").await.body),
            [CASA, OTRA]
        );
        assert_eq!(ids(&lab.get("/sites?type=site").await.body), [TOWER]);
        assert_eq!(lab.get("/sites?type=client").await.body, json!([]));
        assert_eq!(
            lab.get("/sites?type=endpoint&ucrm=true").await.body,
            json!([])
        );
        assert_eq!(
            ids(&lab.get(&format!("/sites?id={OTRA}&id={TOWER}")).await.body),
            [TOWER, OTRA]
        );
        assert_eq!(
            ids(&lab.get(&format!("/sites?deviceId={JUAN}")).await.body),
            [CASA]
        );
        assert_eq!(ids(&lab.get("/sites?ip=10.10.1.139").await.body), [CASA]);
        assert_eq!(lab.get("/sites?type=tower").await.status, 400);

        let r = lab.get(&format!("/sites/{CASA}")).await;
        assert_eq!(r.body["identification"]["name"], "Tomatlan, Juan Perez");
        let r = lab.get(&format!("/sites/{NOBODY}")).await;
        assert_error(&r, 404, &format!("Site {NOBODY} not found"));
        let r = lab.get("/sites/torre").await;
        assert_invalid(&r, "params", "id", "\"id\" must be a valid GUID");
    }

    #[tokio::test]
    async fn create_site_validates_and_answers_the_site() {
        let lab = Lab::new().await;
        let r = lab
            .post(
                "/sites",
                json!({
                    "name": "Tomatlan, Maria Lopez", "type": "endpoint", "parentSiteId": TOWER,
                    "address": "Calle 5", "note": "", "contactName": "Maria",
                    "location": { "latitude": 19.9, "longitude": -105.2 },
                }),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let id = r.body["id"].as_str().unwrap().to_owned();
        assert!(is_guid(&id));
        assert_eq!(r.body["identification"]["type"], "endpoint");
        assert_eq!(r.body["identification"]["parent"]["id"], TOWER);
        assert_eq!(r.body["description"]["address"], "Calle 5");
        assert!(r.body["description"]["note"].is_null());
        let made = lab
            .lab
            .state()
            .sites
            .into_iter()
            .find(|s| s.id == id)
            .unwrap();
        assert_eq!(
            made,
            LabSite {
                id: id.clone(),
                name: "Tomatlan, Maria Lopez".into(),
                kind: "endpoint".into(),
                parent_id: Some(TOWER.into()),
                address: Some("Calle 5".into()),
                note: None,
            }
        );
        // The type defaults to site, the parent to none.
        let r = lab.post("/sites", json!({ "name": "Torre Sur" })).await;
        assert_eq!(r.body["identification"]["type"], "site");
        assert!(r.body["identification"]["parent"].is_null());

        let r = lab.post("/sites", json!({ "type": "site" })).await;
        assert_invalid(&r, "payload", "name", "\"name\" is required");
        let r = lab.post("/sites", json!({ "name": "" })).await;
        assert_invalid(&r, "payload", "name", "\"name\" is not allowed to be empty");
        let r = lab.post("/sites", json!({ "name": 5 })).await;
        assert_invalid(&r, "payload", "name", "\"name\" must be a string");
        let r = lab
            .post("/sites", json!({ "name": "x", "parent": TOWER }))
            .await;
        assert_invalid(&r, "payload", "parent", "\"parent\" is not allowed");
        let r = lab
            .post("/sites", json!({ "name": "x", "type": "tower" }))
            .await;
        assert_eq!(r.status, 400);
        let r = lab
            .post("/sites", json!({ "name": "x", "type": "client" }))
            .await;
        assert_eq!(r.status, 400);
        let r = lab
            .post("/sites", json!({ "name": "x", "parentSiteId": "torre" }))
            .await;
        assert_invalid(
            &r,
            "payload",
            "parentSiteId",
            "\"parentSiteId\" must be a valid GUID",
        );
        let r = lab
            .post("/sites", json!({ "name": "x", "parentSiteId": NOBODY }))
            .await;
        assert_error(&r, 404, &format!("Site {NOBODY} not found"));
        let r = lab
            .post(
                "/sites",
                json!({ "name": "x", "location": { "latitude": 95, "longitude": 0 } }),
            )
            .await;
        assert_eq!(r.status, 400);
        let r = lab
            .post(
                "/sites",
                json!({ "name": "x", "parentSiteId": NOBODY, "height": "tall" }),
            )
            .await;
        assert_invalid(&r, "payload", "height", "\"height\" must be a number");
        let r = lab.post("/sites", json!(["x"])).await;
        assert_invalid(&r, "payload", "", "\"value\" must be an object");
        assert_eq!(r.body["validation"]["keys"], json!([]));
        assert_eq!(lab.lab.state().sites.len(), 5);
    }

    #[tokio::test]
    async fn invalid_json_is_400() {
        let lab = Lab::new().await;
        let r = lab
            .http
            .post(format!("{}/sites", lab.lab.url()))
            .header("x-auth-token", TOKEN)
            .header("content-type", "application/json")
            .body("{\"name\": ")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["message"], "Invalid request payload JSON format");
        assert_eq!(lab.lab.calls()[0].body, json!("{\"name\": "));
    }

    #[tokio::test]
    async fn put_site_is_read_modify_write() {
        let lab = Lab::new().await;
        let mut site = lab.get(&format!("/sites/{OTRA}")).await.body;
        site["identification"]["name"] = json!("Tomatlan, Casa Verde");
        site["description"]["note"] = json!("portón verde");
        site["description"]["address"] = json!(null);
        let r = lab
            .call(
                "PUT",
                &format!("/sites/{OTRA}"),
                Some(site.clone()),
                Some(TOKEN),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body["identification"]["name"], "Tomatlan, Casa Verde");
        let s = lab.lab.state().sites[2].clone();
        assert_eq!(s.name, "Tomatlan, Casa Verde");
        assert_eq!(s.note.as_deref(), Some("portón verde"));
        assert_eq!(s.parent_id.as_deref(), Some(TOWER));
        // Detached: parent null.
        site["identification"]["parent"] = json!(null);
        let r = lab
            .call(
                "PUT",
                &format!("/sites/{OTRA}"),
                Some(site.clone()),
                Some(TOKEN),
            )
            .await;
        assert_eq!(r.status, 200);
        assert_eq!(lab.lab.state().sites[2].parent_id, None);
        // A parent below itself is refused.
        let mut tower = lab.get(&format!("/sites/{TOWER}")).await.body;
        tower["identification"]["parent"] = json!({ "id": CASA });
        let r = lab
            .call("PUT", &format!("/sites/{TOWER}"), Some(tower), Some(TOKEN))
            .await;
        assert_invalid(
            &r,
            "payload",
            "identification.parent",
            "\"parent\" cannot be the site itself or one of its descendants",
        );
        // The whole object is required.
        let r = lab
            .call(
                "PUT",
                &format!("/sites/{OTRA}"),
                Some(json!({ "identification": site["identification"] })),
                Some(TOKEN),
            )
            .await;
        assert_invalid(&r, "payload", "description", "\"description\" is required");
        let mut bad = site.clone();
        bad["identification"]
            .as_object_mut()
            .unwrap()
            .remove("name");
        let r = lab
            .call("PUT", &format!("/sites/{OTRA}"), Some(bad), Some(TOKEN))
            .await;
        assert_invalid(&r, "payload", "identification.name", "\"name\" is required");
        let mut bad = site.clone();
        bad["identification"]["colour"] = json!("red");
        let r = lab
            .call("PUT", &format!("/sites/{OTRA}"), Some(bad), Some(TOKEN))
            .await;
        assert_invalid(
            &r,
            "payload",
            "identification.colour",
            "\"colour\" is not allowed",
        );
        let r = lab
            .call("PUT", &format!("/sites/{NOBODY}"), Some(site), Some(TOKEN))
            .await;
        assert_eq!(r.status, 404);
        // Validation comes before the lookups.
        let r = lab
            .call(
                "PUT",
                &format!("/sites/{NOBODY}"),
                Some(json!({})),
                Some(TOKEN),
            )
            .await;
        assert_invalid(
            &r,
            "payload",
            "identification",
            "\"identification\" is required",
        );
    }

    #[tokio::test]
    async fn delete_site_only_when_empty() {
        let lab = Lab::new().await;
        let r = lab
            .call("DELETE", &format!("/sites/{TOWER}"), None, Some(TOKEN))
            .await;
        assert_error(
            &r,
            400,
            "Site Torre Norte is not empty: 1 device(s), 2 site(s)",
        );
        let r = lab
            .call("DELETE", &format!("/sites/{CASA}"), None, Some(TOKEN))
            .await;
        assert_error(
            &r,
            400,
            "Site Tomatlan, Juan Perez is not empty: 1 device(s), 0 site(s)",
        );
        let r = lab
            .call("DELETE", &format!("/sites/{OTRA}"), None, Some(TOKEN))
            .await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body, json!({ "result": true, "message": "Site deleted" }));
        assert_eq!(lab.lab.state().sites.len(), 2);
        let r = lab
            .call("DELETE", &format!("/sites/{OTRA}"), None, Some(TOKEN))
            .await;
        assert_eq!(r.status, 404);
    }

    #[tokio::test]
    async fn bulk_authorize_assigns_and_moves_in_one_call() {
        let lab = Lab::new().await;
        let mut new_ids = Vec::new();
        for i in 0..3 {
            new_ids.push(lab.lab.add_device(device(
                "",
                &format!("FC:EC:DA:00:01:{i:02X}"),
                Some(&format!("cpe-{i}")),
                None,
            )));
        }
        lab.lab.reset_calls();
        let mut all: Vec<&str> = new_ids.iter().map(String::as_str).collect();
        all.push(JUAN); // already authorized in CASA: moved
        let r = lab
            .post(
                "/devices/authorize",
                json!({ "siteId": OTRA, "deviceIds": all }),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(
            r.body,
            json!({ "result": true, "message": "Devices authorized" })
        );
        assert_eq!(lab.lab.calls().len(), 1);
        for id in &all {
            let d = lab.device(id);
            assert!(d.authorized);
            assert_eq!(d.site_id.as_deref(), Some(OTRA));
            assert_eq!(d.status, "active");
        }
        let r = lab.get(&format!("/devices?siteId={OTRA}")).await;
        assert_eq!(r.body.as_array().unwrap().len(), 4);

        // An unknown device: nothing changes.
        let before = lab.lab.state();
        let r = lab
            .post(
                "/devices/authorize",
                json!({ "siteId": CASA, "deviceIds": [GHOST, NOBODY] }),
            )
            .await;
        assert_error(&r, 404, &format!("Device {NOBODY} not found"));
        assert_eq!(lab.lab.state().devices, before.devices);
        let r = lab
            .post(
                "/devices/authorize",
                json!({ "siteId": NOBODY, "deviceIds": [GHOST] }),
            )
            .await;
        assert_error(&r, 404, &format!("Site {NOBODY} not found"));
        let r = lab
            .post("/devices/authorize", json!({ "deviceIds": [GHOST] }))
            .await;
        assert_invalid(&r, "payload", "siteId", "\"siteId\" is required");
        let r = lab
            .post(
                "/devices/authorize",
                json!({ "siteId": CASA, "deviceIds": ["FC:EC:DA:00:00:03"] }),
            )
            .await;
        assert_invalid(&r, "payload", "deviceIds.0", "\"0\" must be a valid GUID");
        let r = lab
            .post(
                "/devices/authorize",
                json!({ "siteId": CASA, "deviceIds": GHOST }),
            )
            .await;
        assert_invalid(&r, "payload", "deviceIds", "\"deviceIds\" must be an array");
        let r = lab
            .post(
                "/devices/authorize",
                json!({ "siteId": CASA, "ids": [GHOST] }),
            )
            .await;
        assert_invalid(&r, "payload", "ids", "\"ids\" is not allowed");
        // The ghost, key out of sync, authorized: disconnected.
        let r = lab
            .post(
                "/devices/authorize",
                json!({ "siteId": CASA, "deviceIds": [GHOST] }),
            )
            .await;
        assert_eq!(r.status, 200);
        assert_eq!(lab.device(GHOST).status, "disconnected");
    }

    #[tokio::test]
    async fn single_authorize_unassign_refresh_delete() {
        let lab = Lab::new().await;
        let r = lab
            .post(
                &format!("/devices/{GHOST}/authorize"),
                json!({ "siteId": OTRA }),
            )
            .await;
        assert_eq!(
            r.body,
            json!({ "result": true, "message": "Device authorized" })
        );
        assert_eq!(lab.device(GHOST).site_id.as_deref(), Some(OTRA));
        let r = lab
            .post(
                &format!("/devices/{NOBODY}/authorize"),
                json!({ "siteId": OTRA }),
            )
            .await;
        assert_eq!(r.status, 404);
        let r = lab
            .post(
                &format!("/devices/{GHOST}/authorize"),
                json!({ "siteId": OTRA, "deviceIds": [] }),
            )
            .await;
        assert_invalid(&r, "payload", "deviceIds", "\"deviceIds\" is not allowed");

        let r = lab
            .call(
                "POST",
                &format!("/devices/{JUAN}/unassign"),
                None,
                Some(TOKEN),
            )
            .await;
        assert_eq!(
            r.body,
            json!({ "result": true, "message": "Device unassigned" })
        );
        let juan = lab.device(JUAN);
        assert!(!juan.authorized);
        assert_eq!(juan.site_id, None);
        assert_eq!(juan.status, "unauthorized");
        let r = lab.get(&format!("/devices/{JUAN}")).await;
        assert!(r.body["identification"]["site"].is_null());
        let r = lab
            .call(
                "POST",
                &format!("/devices/{NOBODY}/unassign"),
                None,
                Some(TOKEN),
            )
            .await;
        assert_eq!(r.status, 404);

        let r = lab
            .call(
                "POST",
                &format!("/devices/{GHOST}/refresh"),
                None,
                Some(TOKEN),
            )
            .await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body["result"], true);
        let ghost = lab.device(GHOST);
        assert_eq!(ghost.key_resets, 1);
        assert!(!ghost.failed_message_decryption);
        lab.call(
            "POST",
            &format!("/devices/{GHOST}/refresh"),
            None,
            Some(TOKEN),
        )
        .await;
        assert_eq!(lab.device(GHOST).key_resets, 2);
        let r = lab
            .call(
                "POST",
                &format!("/devices/{NOBODY}/refresh"),
                None,
                Some(TOKEN),
            )
            .await;
        assert_error(&r, 404, &format!("Device {NOBODY} not found"));

        let r = lab
            .call("DELETE", &format!("/devices/{GHOST}"), None, Some(TOKEN))
            .await;
        assert_eq!(
            r.body,
            json!({ "result": true, "message": "Device deleted" })
        );
        assert_eq!(lab.lab.state().devices.len(), 2);
        let r = lab
            .call("DELETE", &format!("/devices/{GHOST}"), None, Some(TOKEN))
            .await;
        assert_eq!(r.status, 404);
    }

    #[tokio::test]
    async fn bulkdelete_reports_deleted_and_undeleted() {
        let lab = Lab::new().await;
        let r = lab
            .post("/devices/bulkdelete", json!({ "ids": [GHOST, NOBODY, AP] }))
            .await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body["deletedIds"], json!([GHOST, AP]));
        assert_eq!(r.body["undeletedIds"], json!([NOBODY]));
        assert!(r.body["message"].is_string());
        assert_eq!(ids(&lab.get("/devices").await.body), [JUAN]);
        let r = lab.post("/devices/bulkdelete", json!({})).await;
        assert_invalid(&r, "payload", "ids", "\"ids\" is required");
    }

    #[tokio::test]
    async fn connection_string_is_a_json_string() {
        let lab = Lab::new().await;
        let r = lab.get("/nms/connection").await;
        assert_eq!(r.status, 200);
        assert_eq!(
            r.body,
            json!("wss://uisp.lab.invalid:443+abc+allowSelfSignedCertificate")
        );
        assert!(
            r.headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/json")
        );
        let key = LAB_CONNECTION_STRING.split('+').nth(1).unwrap();
        assert_eq!(key.len(), 48);
        assert!(key.bytes().all(|b| b.is_ascii_alphanumeric()));
    }

    #[tokio::test]
    async fn a_fault_hits_one_site_only() {
        let lab = Lab::new().await;
        lab.lab.set_faults(vec![HttpFault {
            site_id: Some(CASA.into()),
            ..HttpFault::new("post", "/devices/authorize", 500)
        }]);
        let r = lab
            .post(
                "/devices/authorize",
                json!({ "siteId": CASA, "deviceIds": [GHOST] }),
            )
            .await;
        assert_error(&r, 500, "An internal server error occurred");
        assert!(
            !lab.device(GHOST).authorized,
            "a faulted request changes nothing"
        );
        let r = lab
            .post(
                "/devices/authorize",
                json!({ "siteId": OTRA, "deviceIds": [GHOST] }),
            )
            .await;
        assert_eq!(r.status, 200);
        // Again for CASA: still failing (times: None).
        let r = lab
            .post(
                "/devices/authorize",
                json!({ "siteId": CASA, "deviceIds": [JUAN] }),
            )
            .await;
        assert_eq!(r.status, 500);
        let statuses: Vec<u16> = lab.lab.calls().iter().map(|c| c.status).collect();
        assert_eq!(statuses, [500, 200, 500]);
    }

    #[tokio::test]
    async fn a_429_carries_retry_after_and_times_run_out() {
        let lab = Lab::new().await;
        lab.lab.set_faults(vec![
            HttpFault {
                times: Some(2),
                retry_after_secs: Some(7),
                ..HttpFault::new("POST", "/devices/{id}/refresh", 429)
            },
            HttpFault {
                times: Some(1),
                ..HttpFault::new("GET", "/nms/api/v2.1/sites", 503)
            },
        ]);
        let path = format!("/devices/{GHOST}/refresh");
        for _ in 0..2 {
            let r = lab.call("POST", &path, None, Some(TOKEN)).await;
            assert_error(&r, 429, "Rate limit exceeded");
            assert_eq!(r.headers["retry-after"], "7");
        }
        assert_eq!(lab.lab.faults()[0].times, Some(0));
        let r = lab.call("POST", &path, None, Some(TOKEN)).await;
        assert_eq!(r.status, 200);
        assert!(r.headers.get("retry-after").is_none());
        assert_eq!(lab.device(GHOST).key_resets, 1);
        // Unauthenticated requests never reach the faults.
        assert_eq!(lab.call("GET", "/sites", None, None).await.status, 401);
        let r = lab.get("/sites").await;
        assert_error(&r, 503, "Service Unavailable");
        assert_eq!(lab.get("/sites").await.status, 200);
        // A literal path hits only that device.
        lab.lab.set_faults(vec![HttpFault::new(
            "DELETE",
            &format!("/devices/{AP}"),
            500,
        )]);
        let r = lab
            .call("DELETE", &format!("/devices/{GHOST}"), None, Some(TOKEN))
            .await;
        assert_eq!(r.status, 200);
        let r = lab
            .call("DELETE", &format!("/devices/{AP}"), None, Some(TOKEN))
            .await;
        assert_eq!(r.status, 500);
    }

    #[tokio::test]
    async fn the_call_log_holds_every_request_in_order() {
        let lab = Lab::new().await;
        lab.get(&format!("/devices?siteId={CASA}")).await;
        lab.call("GET", "/sites", None, Some("wrong")).await;
        lab.post(
            "/devices/authorize",
            json!({ "siteId": OTRA, "deviceIds": [GHOST] }),
        )
        .await;
        lab.call(
            "POST",
            &format!("/devices/{GHOST}/refresh"),
            None,
            Some(TOKEN),
        )
        .await;
        let calls = lab.lab.calls();
        assert_eq!(
            calls,
            [
                Call {
                    method: "GET".into(),
                    path: format!("/devices?siteId={CASA}"),
                    body: Value::Null,
                    status: 200,
                },
                Call {
                    method: "GET".into(),
                    path: "/sites".into(),
                    body: Value::Null,
                    status: 401,
                },
                Call {
                    method: "POST".into(),
                    path: "/devices/authorize".into(),
                    body: json!({ "siteId": OTRA, "deviceIds": [GHOST] }),
                    status: 200,
                },
                Call {
                    method: "POST".into(),
                    path: format!("/devices/{GHOST}/refresh"),
                    body: Value::Null,
                    status: 200,
                },
            ]
        );
        lab.lab.reset_calls();
        assert!(lab.lab.calls().is_empty());
    }

    /// The handler alone (no socket), so tokio's paused clock measures exactly what the
    /// latency adds.
    fn lab_request(path: &str, token: &str) -> Request {
        Request::builder()
            .method("GET")
            .uri(format!("{BASE_PATH}{path}"))
            .header("x-auth-token", token)
            .body(Body::empty())
            .unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn latency_delays_every_answer_and_requests_overlap() {
        let latency = Duration::from_millis(200);
        let shared = Shared::new(config(), checked(seed()).unwrap());
        shared.lock().latency = latency;
        let answer =
            |path: &str, token: &str| handle(State(shared.clone()), lab_request(path, token));
        // Every answer waits, a refused one too.
        let start = Instant::now();
        let r = answer("/devices", "wrong").await;
        assert_eq!(r.status(), 401);
        let took = start.elapsed();
        assert!(took >= latency && took < latency * 2, "{took:?}");
        // Three at once wait one latency, not three: no lock is held while waiting.
        let start = Instant::now();
        let (a, b, c) = tokio::join!(
            answer("/devices", TOKEN),
            answer("/sites", TOKEN),
            answer("/devices", TOKEN)
        );
        assert_eq!(
            [a.status(), b.status(), c.status()].map(|s| s.as_u16()),
            [200; 3]
        );
        let took = start.elapsed();
        assert!(took >= latency && took < latency * 2, "{took:?}");
        assert_eq!(shared.lock().calls.len(), 4);
        // No latency: no wait at all.
        shared.lock().latency = Duration::ZERO;
        let start = Instant::now();
        assert_eq!(answer("/sites", TOKEN).await.status(), 200);
        assert_eq!(start.elapsed(), Duration::ZERO);
    }

    #[tokio::test]
    async fn a_stalled_connection_does_not_hold_up_the_others() {
        let lab = Lab::new().await;
        // Connects and never says a word: its TLS handshake waits (HANDSHAKE_TIMEOUT).
        let stalled = TcpStream::connect(lab.lab.addr()).await.unwrap();
        let r = lab.get("/sites").await;
        assert_eq!(r.status, 200);
        // Answered while the stalled one is still open: served side by side, not in turn.
        let mut buf = [0u8; 1];
        let still_open = matches!(
            stalled.try_read(&mut buf),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock
        );
        assert!(
            still_open,
            "the stalled connection was closed before the other was served"
        );
    }

    #[tokio::test]
    async fn state_round_trips_and_ids_are_assigned() {
        let lab = Lab::new().await;
        let state = lab.lab.state();
        assert_eq!(state.sites, seed().sites);
        assert_eq!(state.devices, seed().devices);
        let json = serde_json::to_string(&state).unwrap();
        let back: UispState = serde_json::from_str(&json).unwrap();
        lab.lab.set_state(back.clone());
        assert_eq!(lab.lab.state().devices, back.devices);

        let id = lab.lab.add_site(site("", "Torre Sur", "site", None));
        assert!(is_guid(&id), "{id}");
        assert_eq!(new_uuid().len(), 36);
        assert_ne!(new_uuid(), new_uuid());
        assert_eq!(&new_uuid()[14..15], "4");
        let dev = lab
            .lab
            .add_device(device("", "FC:EC:DA:00:00:10", None, Some(&id)));
        assert_eq!(lab.device(&dev).site_id.as_deref(), Some(id.as_str()));
        let r = lab.get(&format!("/devices?siteId={id}")).await;
        assert_eq!(ids(&r.body), [dev.as_str()]);

        let mut empty_ids = seed();
        empty_ids.sites.push(site("", "x", "site", None));
        empty_ids.devices[0].id.clear();
        lab.lab.set_state(empty_ids);
        let state = lab.lab.state();
        assert!(state.sites.iter().chain([]).all(|s| is_guid(&s.id)));
        assert!(is_guid(&state.devices[0].id));
        assert_ne!(state.devices[0].id, JUAN);
    }

    #[test]
    fn debug_never_shows_a_token_a_crm_key_or_the_connection_string() {
        let shown = format!("{:?}", config());
        for secret in [TOKEN, CRM_KEY, "abc+allowSelfSignedCertificate"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("tokens: 1 (sensitive)"), "{shown}");
    }

    #[test]
    fn broken_states_are_refused() {
        type Edit = Box<dyn Fn(&mut UispState)>;
        let cases: Vec<(&str, Edit)> = vec![
            ("not a UUID", Box::new(|s| s.devices[0].id = "juan".into())),
            ("duplicate id", Box::new(|s| s.devices[1].id = JUAN.into())),
            (
                "is not XX:XX",
                Box::new(|s| s.devices[0].mac = "fcecda000001".into()),
            ),
            (
                "duplicate MAC",
                Box::new(|s| s.devices[1].mac = "fc:ec:da:00:00:01".into()),
            ),
            (
                "unknown site",
                Box::new(|s| s.devices[0].site_id = Some(NOBODY.into())),
            ),
            (
                "unauthorized device has no site",
                Box::new(|s| s.devices[0].authorized = false),
            ),
            ("kind", Box::new(|s| s.sites[0].kind = "client".into())),
            (
                "unknown parent",
                Box::new(|s| s.sites[0].parent_id = Some(NOBODY.into())),
            ),
            (
                "cycle",
                Box::new(|s| s.sites[0].parent_id = Some(CASA.into())),
            ),
        ];
        for (want, edit) in cases {
            let mut state = seed();
            edit(&mut state);
            let err = checked(state).unwrap_err();
            assert!(err.contains(want), "{want}: {err}");
        }
    }

    #[tokio::test]
    async fn start_refuses_a_broken_state_and_set_state_panics() {
        let mut state = seed();
        state.sites[0].kind = "tower".into();
        let err = UispLab::start(config(), state.clone()).await.err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        let lab = UispLab::start(config(), seed()).await.unwrap();
        let panicked =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| lab.set_state(state)));
        assert!(panicked.is_err());
        assert_eq!(lab.state().sites[0].kind, "site", "the state is unchanged");
    }

    #[test]
    fn helpers() {
        assert!(is_guid("0b6f4c2e-1a2b-4c3d-8e9f-000000000001"));
        assert!(is_guid("0B6F4C2E-1A2B-4C3D-8E9F-00000000000A"));
        assert!(!is_guid("0b6f4c2e1a2b4c3d8e9f000000000001"));
        assert!(!is_guid("0b6f4c2e-1a2b-4c3d-8e9f-00000000000g"));
        assert_eq!(
            mac_key("FC:EC:DA:00:00:01").as_deref(),
            Some("fcecda000001")
        );
        assert_eq!(mac_key("fcecda000001").as_deref(), Some("fcecda000001"));
        assert_eq!(mac_key("FC-EC-DA-00-00-01"), None);
        assert_eq!(percent_decode("a%3Ab+c%zz%4", true), "a:b c%zz%4");
        assert_eq!(percent_decode("a+b%2", false), "a+b%2");
        assert_eq!(
            parse_query("siteId=x&type=airMax&type=olt&flag"),
            [
                ("siteId".to_string(), "x".to_string()),
                ("type".into(), "airMax".into()),
                ("type".into(), "olt".into()),
                ("flag".into(), String::new()),
            ]
        );
        assert_eq!(series("LBE-5AC-Gen2"), "AC");
        assert_eq!(series("LB5"), "M");
        assert_eq!(
            route("GET", "/devices/mac/x").unwrap().0.op,
            Op::DeviceByMac
        );
        assert_eq!(
            route("POST", "/devices/authorize").unwrap().0.op,
            Op::AuthorizeDevices
        );
        assert_eq!(route("POST", "/devices/x/authorize").unwrap().1, ["x"]);
        assert!(route("POST", "/devices//authorize").is_none());
        assert!(route("PUT", "/devices").is_none());
    }

    #[tokio::test]
    async fn shutdown_closes_the_listener_and_is_idempotent() {
        let lab = Lab::new().await;
        let Lab { mut lab, http } = lab;
        let addr = lab.addr();
        let url = lab.url();
        assert_eq!(
            http.get(format!("{url}/sites"))
                .header("x-auth-token", TOKEN)
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
        lab.shutdown().await;
        assert!(TcpStream::connect(addr).await.is_err());
        assert!(
            http.get(format!("{url}/sites"))
                .header("x-auth-token", TOKEN)
                .send()
                .await
                .is_err()
        );
        assert_eq!(lab.state().devices.len(), 3, "the state stays readable");
        lab.shutdown().await;
    }

    #[tokio::test]
    async fn dropping_the_lab_stops_it() {
        let lab = UispLab::start(config(), seed()).await.unwrap();
        let addr = lab.addr();
        drop(lab);
        // The accept loop ends on its own: a bounded number of looks, no clock.
        for _ in 0..500 {
            if TcpStream::connect(addr).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("still listening after 500 looks");
    }

    #[test]
    fn one_authorize_of_twenty_thousand_devices_checks_each_id_once() {
        let mut state = UispState {
            sites: vec![site(TOWER, "Torre", "site", None)],
            devices: (0..20_000u32)
                .map(|i| {
                    let b = i.to_be_bytes();
                    LabDevice::new(
                        &new_uuid(),
                        &format!("AA:BB:CC:{:02X}:{:02X}:{:02X}", b[1], b[2], b[3]),
                        None,
                        None,
                        None,
                    )
                })
                .collect(),
        };
        let mut ids: Vec<String> = state.devices.iter().map(|d| d.id.clone()).collect();
        // One unknown id among them: all or nothing, the first unknown named.
        ids.insert(10_000, NOBODY.into());
        let e = authorize(&mut state, TOWER, &ids).unwrap_err();
        assert_eq!(
            (e.status, e.message.as_str()),
            (404, &*format!("Device {NOBODY} not found"))
        );
        assert!(state.devices.iter().all(|d| !d.authorized));
        ids.remove(10_000);
        authorize(&mut state, TOWER, &ids[..15_000]).unwrap();
        let placed = state
            .devices
            .iter()
            .filter(|d| d.authorized && d.site_id.as_deref() == Some(TOWER))
            .count();
        assert_eq!(placed, 15_000);
        assert!(state.devices[15_000..].iter().all(|d| !d.authorized));
    }
}
