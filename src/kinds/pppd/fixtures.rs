//! Plain values the kind's unit tests build on: a peer as the YAML gives it (the model's own
//! defaults), a chap-secrets entry, one host's desired state. Tests only.

use std::path::PathBuf;

use super::spec::{ChapEntry, PeerSpec, PppdDesired};
use crate::ownership::Prune;
use crate::secret::Secret;

/// A peer named `name`, dialling 203.0.113.7 as `admin`, every other field defaulted.
pub(super) fn peer_spec(name: &str) -> PeerSpec {
    serde_json::from_value(serde_json::json!({
        "name": name, "server": "203.0.113.7", "user": "admin"
    }))
    .expect("a valid peer")
}

/// An entry allowed from any address.
pub(super) fn chap_entry(client: &str, server: &str, secret: &str) -> ChapEntry {
    ChapEntry {
        client: client.into(),
        server: server.into(),
        secret: Secret::new(secret),
        addresses: vec!["*".into()],
    }
}

/// A host's desired state: these peers (by name) and entries; `allow_empty_prune` off.
pub(super) fn desired(prune: Prune, peers: &[&str], chap: Vec<ChapEntry>) -> PppdDesired {
    PppdDesired {
        source: PathBuf::from("pppd/vps.yaml"),
        prune,
        allow_empty_prune: false,
        peers: peers.iter().map(|n| peer_spec(n)).collect(),
        chap,
    }
}
