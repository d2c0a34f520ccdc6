//! The RouterOS API, written in the project: no well-kept permissively licensed crate exists.

pub mod client;
pub mod codec;

use std::net::SocketAddr;

use client::{ApiError, Connection};

use crate::desired::inventory::Router;

/// Connects and logs in. `addr` overrides the router's own address (the lab).
pub async fn connect(router: &Router, addr: Option<SocketAddr>) -> Result<Connection, ApiError> {
    let target = match addr {
        Some(a) => a.to_string(),
        None => format!("{}:{}", router.address, router.port),
    };
    let stream = tokio::time::timeout(router.timeout, tokio::net::TcpStream::connect(&target))
        .await
        .map_err(|_| ApiError::Timeout(router.timeout))??;
    stream.set_nodelay(true)?;
    let mut conn = match &router.tls {
        None => Connection::new(stream, router.timeout),
        Some(verify) => {
            let config = crate::tls::client_config(Some(verify)).map_err(ApiError::Tls)?;
            let name = crate::tls::server_name(&router.address).map_err(ApiError::Tls)?;
            let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
            let tls = tokio::time::timeout(router.timeout, connector.connect(name, stream))
                .await
                .map_err(|_| ApiError::Timeout(router.timeout))?
                .map_err(|e| ApiError::Tls(e.to_string()))?;
            Connection::new(tls, router.timeout)
        }
    };
    conn.login(&router.username, &router.password).await?;
    Ok(conn)
}
