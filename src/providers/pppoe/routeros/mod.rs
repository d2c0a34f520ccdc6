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
    if router.tls.is_some() && addr.is_none() {
        return Err(ApiError::Protocol(
            "the TLS API service (api-ssl) is not supported yet; use the plain API over a private network (ZeroTier, WireGuard)".into(),
        ));
    }
    let stream = tokio::time::timeout(router.timeout, tokio::net::TcpStream::connect(&target))
        .await
        .map_err(|_| ApiError::Timeout(router.timeout))??;
    stream.set_nodelay(true)?;
    let mut conn = Connection::new(stream, router.timeout);
    conn.login(&router.username, &router.password).await?;
    Ok(conn)
}
