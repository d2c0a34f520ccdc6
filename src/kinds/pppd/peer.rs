//! Peer files (`/etc/ppp/peers/NAME`): rendered from a [`PeerSpec`], marked as wispctl's by
//! their first line.

use super::spec::PeerSpec;
use super::words::{quote, split};

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

/// Peer file text as a plan may show it: every line that holds the `password` option reads
/// `password (sensitive)`. wispctl never writes one, but a hand-written file it adopts or
/// prunes may. pppd reads an options file word by word, so the option counts wherever it
/// stands on its line, not only first.
pub fn masked(content: &str) -> String {
    content
        .split_inclusive('\n')
        .map(|line| {
            if holds_password(line) {
                let nl = if line.ends_with('\n') { "\n" } else { "" };
                format!("password (sensitive){nl}")
            } else {
                line.to_string()
            }
        })
        .collect()
}

/// Whether a line holds the `password` option. A line pppd could not split (an open quote) is
/// judged by its blank-separated words, quotes dropped: better one line too many hidden than a
/// secret shown.
fn holds_password(line: &str) -> bool {
    let is_password = |w: &str| w == "password";
    match split(line) {
        Ok(words) => words.iter().any(|w| is_password(w)),
        Err(_) => line
            .split_whitespace()
            .take_while(|w| !w.starts_with('#'))
            .any(|w| is_password(w.trim_matches(['"', '\''].as_slice()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_line_is_masked_and_the_rest_kept() {
        let text = "name tecnico\n  password Zq9x-pw\npersist\npassword";
        assert_eq!(
            masked(text),
            "name tecnico\npassword (sensitive)\npersist\npassword (sensitive)"
        );
    }

    /// Regression: only a line that started with `password` was masked, so a hand-written
    /// `debug password SECRET` (pppd reads it word by word) showed its secret in the plan.
    #[test]
    fn a_password_option_after_another_option_is_masked() {
        for line in [
            "debug password Zq9x-pw\n",
            "debug \"password\" 'Zq9x-pw'\n",
            "debug password \"Zq9x-pw\n",
        ] {
            let shown = masked(line);
            assert!(!shown.contains("Zq9x-pw"), "{line:?} shows {shown:?}");
            assert_eq!(shown, "password (sensitive)\n");
        }
    }

    #[test]
    fn comments_and_lookalike_words_are_not_masked() {
        let text = "# password reset by hand\npasswords-are-elsewhere\nipparam password-less\n";
        assert_eq!(masked(text), text);
    }
}
