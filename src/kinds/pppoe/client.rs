//! How the pppoe kind reaches a router: TCP or TLS (verified as the inventory says), then the
//! API login, through the `routeros-api` crate. Every wait is bounded by the router's timeout,
//! and what the router may send back by its `limits`; a connection whose reply stream broke
//! sends nothing more (the crate's `Connection`).
//!
//! Not here: what is read (`observe`) or written (`apply`).

use std::net::SocketAddr;

use routeros_api::client::{ApiError, Connection};

use super::PppoeError;
use super::spec::Router;

/// Connects to router `name` and logs in. `addr` overrides the router's own address (a lab
/// twin).
pub async fn connect(
    name: &str,
    router: &Router,
    addr: Option<SocketAddr>,
) -> Result<Connection, PppoeError> {
    let api = |source: ApiError| PppoeError::Api {
        router: name.to_string(),
        source,
    };
    let tls = |reason: String| PppoeError::Tls {
        router: name.to_string(),
        reason,
    };
    let target = match addr {
        Some(a) => a.to_string(),
        None => format!("{}:{}", router.address, router.port),
    };
    let stream = tokio::time::timeout(router.timeout, tokio::net::TcpStream::connect(&target))
        .await
        .map_err(|_| api(ApiError::Timeout(router.timeout)))?
        .map_err(|e| api(e.into()))?;
    stream.set_nodelay(true).map_err(|e| api(e.into()))?;
    let mut conn = match &router.tls {
        None => Connection::new(stream, router.timeout).with_limits(router.limits),
        Some(verify) => {
            let config = crate::tls::client_config(Some(verify)).map_err(tls)?;
            let server = crate::tls::server_name(&router.address).map_err(tls)?;
            let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
            let stream = tokio::time::timeout(router.timeout, connector.connect(server, stream))
                .await
                .map_err(|_| api(ApiError::Timeout(router.timeout)))?
                .map_err(|e| tls(e.to_string()))?;
            Connection::new(stream, router.timeout).with_limits(router.limits)
        }
    };
    conn.login(&router.username, router.password.expose())
        .await
        .map_err(api)?;
    Ok(conn)
}
