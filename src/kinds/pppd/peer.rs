//! Peer files (`/etc/ppp/peers/NAME`): rendered from a [`PeerSpec`], marked as wispctl's by
//! their first line.

use super::words::quote;
use super::spec::PeerSpec;

/// The first line of every peer file wispctl writes; a file that starts with it is owned.
pub const MARKER: &str = "# Managed by wispctl";

/// Whether a live peer file was written by wispctl.
pub fn is_owned(content: &str) -> bool {
    content.starts_with(MARKER)
}

/// Renders a peer file. Option order follows the working field file in the pppd reference.
pub fn render(peer: &PeerSpec, address: &str) -> String {
    let mut lines = vec![format!(
        "{MARKER}: {address}. Edits here are overwritten by the next apply."
    )];
    let mut opt = |s: String| lines.push(s);
    let remotename = peer.remotename.as_deref().unwrap_or(&peer.name);
    opt(format!("name {}", quote(&peer.user)));
    opt(format!("remotename {}", quote(remotename)));
    if peer.require_mschap_v2 {
        opt("require-mschap-v2".into());
    }
    for m in &peer.refuse {
        opt(m.refuse_option().into());
    }
    if peer.noauth {
        opt("noauth".into());
    }
    if peer.persist {
        opt("persist".into());
    }
    opt(format!("holdoff {}", peer.holdoff));
    opt(format!("maxfail {}", peer.maxfail));
    opt(format!("mtu {}", peer.mtu));
    opt(format!("mru {}", peer.mru));
    if peer.lock {
        opt("lock".into());
        opt("noipdefault".into());
    }
    if peer.defaultroute {
        opt("defaultroute".into());
    }
    if peer.usepeerdns {
        opt("usepeerdns".into());
    }
    // `server` is validated to [A-Za-z0-9.:-]: nothing in it can reach the shell that runs
    // the connect script.
    opt(format!(
        "connect \"/usr/sbin/pptp {} --nolaunchpppd\"",
        peer.server
    ));
    opt(format!("user {}", quote(&peer.user)));
    for o in &peer.options {
        opt(o.trim().to_string());
    }
    let mut text = lines.join("\n");
    text.push('\n');
    text
}
