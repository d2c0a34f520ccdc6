//! Provider `pppoe`: MikroTik PPPoE secrets (`/ppp/secret`) over the RouterOS API.
//! Work in progress: the wire codec is here; the client, diff and apply follow.

pub mod routeros;
