//! The UISP (NMS) API, below the kinds: the `uisp` kind manages sites and assignments through
//! it, and the `airos` kind asks it for the connection string and whether a device is
//! connected. Here: a server as the inventory writes it (`uisp:`), its validation, and the
//! client.

pub mod client;

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::engine::Context;
use crate::names::valid_name;
use crate::secret::SecretRef;
use crate::tls::TlsVerify;
use crate::yaml::FileCheck;

pub use client::{UispClient, UispError};

/// The inventory section that lists UISP servers by name.
pub const SECTION: &str = "uisp";

/// Where a UISP server is reached instead of its URL (a lab twin): the API base and the
/// certificate to trust.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Endpoint {
    /// `https://127.0.0.1:PORT/nms/api/v2.1`.
    pub api: String,
    /// The certificate to trust (PEM).
    pub ca_pem: String,
}

/// A client for UISP server `name`, reached where the context says.
pub fn client(ctx: &Context, name: &str, server: &Server) -> Result<UispClient, UispError> {
    let endpoint = ctx
        .route::<Endpoint>(SECTION, name)
        .map_err(|e| UispError::Setup(e.to_string()))?;
    UispClient::new(server, endpoint.as_ref()).map_err(UispError::Setup)
}

/// A UISP (NMS) server.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerSpec {
    /// Base URL of UISP, such as `https://uisp.example.net` (the NMS API path is added).
    pub url: String,
    /// An NMS API token (Settings > Users > API tokens), as a reference. Not a CRM app key.
    pub token: SecretRef,
    /// PEM file of a CA to trust instead of the system's (a self-signed UISP certificate).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Accept any certificate. Only for a lab; warned about.
    #[serde(default)]
    pub insecure: bool,
    /// Seconds to wait for an answer (default 120: `GET /devices` is one unpaginated list).
    #[serde(default = "default_uisp_timeout")]
    pub timeout_secs: u64,
    /// How long reading this server and applying its changes may take in all
    /// (default 600 s and 1800 s): past it, the connection is closed and the target fails.
    #[serde(default)]
    pub deadline: crate::engine::DeadlineSpec,
}

/// A UISP server: ten minutes to read (`GET /devices` is one list, retried), thirty to apply.
pub const DEADLINE: crate::engine::Deadline = crate::engine::Deadline::secs(600, 1800);

fn default_uisp_timeout() -> u64 {
    120
}

/// A UISP server after validation.
#[derive(Debug, Clone)]
pub struct Server {
    /// `https://HOST[:PORT]/nms/api/v2.1`.
    pub api: String,
    /// The NMS API token.
    pub token: crate::secret::Secret,
    /// How the server's certificate is checked: `None` for the system's roots.
    pub tls: Option<TlsVerify>,
    /// Bound on every request.
    pub timeout: std::time::Duration,
    /// Bound on the whole read and the whole apply.
    pub deadline: crate::engine::Deadline,
}

/// Validates one server of the inventory (`at` is its path, `uisp.NAME`).
pub fn validate_server(
    name: &str,
    u: &ServerSpec,
    at: &str,
    inline_ok: bool,
    check: &mut FileCheck<'_>,
) -> Option<Server> {
    let before = check.error_count();
    if let Err(why) = valid_name(name) {
        check.error(
            &format!("{at}#key"),
            format!("invalid UISP name {name:?}: {why}"),
        );
    }
    let url = u.url.trim_end_matches('/');
    match url.strip_prefix("https://") {
        // The host as canonical as every other address: the URL parser behind the client
        // reads `https://0177.0.0.1` as 127.0.0.1.
        Some(authority) => {
            if let Err(why) = crate::untrusted::addr::authority(authority) {
                check.error(
                    &format!("{at}.url"),
                    format!("url {:?} must be https://HOST[:PORT]: {why}", u.url),
                );
            }
        }
        None => check.error(
            &format!("{at}.url"),
            format!(
                "url {:?} must be https://HOST[:PORT] (the token must never travel in clear)",
                u.url
            ),
        ),
    }
    let tls = match (&u.ca_file, u.insecure) {
        (Some(_), true) => {
            check.error(
                &format!("{at}.insecure"),
                "give ca_file or insecure, not both".into(),
            );
            None
        }
        (Some(ca), false) => {
            let full = check.relative(ca);
            let max = crate::untrusted::file::MAX_NAMED_FILE_BYTES;
            check.named_file(&format!("{at}.ca_file"), "CA file", &full, max, false);
            Some(TlsVerify::Ca(full))
        }
        (None, true) => {
            check.warn(
                &format!("{at}.insecure"),
                "TLS certificate verification is off for this UISP server: anyone on the path can take its token".into(),
            );
            Some(TlsVerify::Insecure)
        }
        (None, false) => None,
    };
    let token = check.secret(&u.token, &format!("{at}.token"), inline_ok);
    if check.error_count() > before {
        return None;
    }
    Some(Server {
        api: format!("{url}/nms/api/v2.1"),
        token: token?,
        tls,
        timeout: std::time::Duration::from_secs(u.timeout_secs.max(1)),
        deadline: u.deadline.over(DEADLINE),
    })
}
