//! The MikroTik RouterOS API: the binary protocol of the `api` service (TCP 8728) and of
//! `api-ssl` (TLS 8729), as a codec, an async client and, for tests, an in-memory router.
//!
//! - [`codec`]: length-prefixed words and sentences, both directions, with every length form
//!   and the bounds that keep a hostile peer from announcing gigabytes; a streaming
//!   [`codec::Decoder`] that looks at each byte once; words that are not UTF-8 (text typed in
//!   Winbox) decode as Windows-1252 and are flagged;
//! - [`client`]: an async [`client::Connection`] over any byte stream (TCP, TLS): both logins
//!   (RouterOS >= 6.43 and the MD5 challenge of older versions), tagged commands pipelined on
//!   one connection and counted in round trips, `!trap`, `!empty`, `!fatal`, timeouts, bounds on
//!   what a reply may hold ([`client::Limits`]); a connection whose reply stream broke is dead
//!   and sends nothing more ([`client::ApiError::Dead`]);
//! - `server` (feature `server`): an in-memory router with `/ppp/secret`, `/ppp/active` and
//!   `/ppp/profile` on a loopback port, v6 and v7 personalities, injected faults and hostile
//!   modes (a drip, a flood, a stray `!done`...), for tests and labs. Off by default: a program
//!   that only talks to routers does not build it.
//!
//! What it does not do: open sockets or TLS sessions for the client (the caller connects and
//! hands over the stream, so it chooses TLS verification and connect timeouts), the REST API,
//! `listen`/`follow`, reconnecting.
//!
//! Nothing here logs a sentence: sentences carry passwords (`/login`, `=password=`), and the
//! `Debug` output of sentences, commands and replies shows them as `(sensitive)`.
//!
//! # A client session
//!
//! Connect (TCP here; wrap the stream in TLS for `api-ssl`), log in, then send several commands
//! in one round trip:
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use routeros_api::client::{ApiError, Command, Connection};
//!
//! # async fn session() -> Result<(), ApiError> {
//! let stream = tokio::net::TcpStream::connect("192.0.2.1:8728").await?;
//! let mut conn = Connection::new(stream, Duration::from_secs(10));
//! conn.login("wispctl", "the API user's password").await?;
//!
//! // Both commands go out in one write; the replies come back in this order.
//! let mut replies = conn
//!     .run(vec![
//!         Command::new(["/ppp/secret/print", "=.proplist=.id,name,profile"]),
//!         Command::new(["/ppp/active/print", "=.proplist=.id,name"]),
//!     ])
//!     .await?
//!     .into_iter();
//! let secrets = replies.next().unwrap().ok("/ppp/secret/print")?;
//! let active = replies.next().unwrap().ok("/ppp/active/print")?;
//! for row in &secrets.rows {
//!     println!("{} is on plan {}", &row["name"], &row["profile"]);
//! }
//! println!("{} session(s) up, {} round trip(s)", active.rows.len(), conn.round_trips());
//!
//! // A change: `set` needs the `.id` exactly as printed; a trap is in the reply.
//! let reply = conn
//!     .call(Command::new(["/ppp/secret/set", "=.id=*1A", "=profile=Morosos"]))
//!     .await?;
//! if let Some(trap) = reply.trap {
//!     eprintln!("the router refused: {}", trap.message);
//! }
//! # Ok(())
//! # }
//! ```

pub mod client;
pub mod codec;
#[cfg(feature = "server")]
pub mod server;
