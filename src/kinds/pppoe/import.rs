//! `wispctl import pppoe ROUTER`: YAML for a router's existing secrets, such that the next plan
//! shows no changes. Passwords become `{ env: NAME }` references; their values go only to a
//! separate env file (mode 0600) that must live outside the desired-state folder.

use std::collections::BTreeSet;

use super::observe::LiveSecret;
use crate::mac::normalise_mac;

/// What an import produces.
pub struct Imported {
    /// The YAML file.
    pub yaml: String,
    /// `NAME=value` lines for the passwords (empty when the router hides them).
    pub env: String,
    /// Things the operator must know.
    pub warnings: Vec<String>,
}

/// The environment variable that holds a secret's password: `PPPOE_<ROUTER>_<NAME>`,
/// upper case, anything but letters and digits as `_`; made unique with a suffix.
fn env_name(router: &str, name: &str, taken: &mut BTreeSet<String>) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect()
    };
    let base = format!("PPPOE_{}_{}", clean(router), clean(name));
    let mut n = base.clone();
    let mut i = 2;
    while !taken.insert(n.clone()) {
        n = format!("{base}_{i}");
        i += 1;
    }
    n
}

fn yaml_str(s: &str) -> String {
    // JSON strings are YAML double-quoted scalars.
    serde_json::to_string(s).expect("strings serialise")
}

/// Renders the import of `secrets` read from `router`.
pub fn render(router: &str, secrets: &[LiveSecret], passwords_visible: bool) -> Imported {
    let mut warnings = Vec::new();
    let mut taken = BTreeSet::new();
    let mut env = String::new();
    let mut y = format!(
        "# yaml-language-server: $schema=../../schemas/pppoe.schema.json\n\
         # Imported from router {router} by `wispctl import pppoe {router}`.\n\
         router: {router}\n\
         prune: none\n\
         secrets:\n"
    );
    if !passwords_visible {
        warnings.push(format!(
            "router {router} hides passwords from this API user: passwords are left out (not managed) until you add them"
        ));
    }
    for s in secrets {
        let name = s.name();
        y.push_str(&format!("  - name: {}\n", yaml_str(name)));
        if let Some(p) = s.fields.get("password").filter(|p| !p.is_empty()) {
            if p.chars().any(char::is_control) {
                warnings.push(format!(
                    "secret {name:?}: its password holds a control character and is left out"
                ));
            } else {
                let var = env_name(router, name, &mut taken);
                y.push_str(&format!("    password: {{ env: {var} }}\n"));
                env.push_str(&format!("{var}={}\n", crate::secret::shell_quote(p)));
            }
        }
        let get = |k: &str| s.fields.get(k).unwrap_or("");
        for (k, yk) in [
            ("service", "service"),
            ("profile", "profile"),
            ("local-address", "local_address"),
            ("remote-address", "remote_address"),
            ("routes", "routes"),
        ] {
            let v = get(k);
            if !v.is_empty() {
                y.push_str(&format!("    {yk}: {}\n", yaml_str(v)));
            }
        }
        for (k, yk) in [
            ("limit-bytes-in", "limit_bytes_in"),
            ("limit-bytes-out", "limit_bytes_out"),
        ] {
            if let Ok(n) = get(k).parse::<u64>()
                && n > 0
            {
                y.push_str(&format!("    {yk}: {n}\n"));
            }
        }
        let caller = get("caller-id");
        if !caller.is_empty() {
            match normalise_mac(caller) {
                Some(m) => y.push_str(&format!("    caller_id: {}\n", yaml_str(&m))),
                None => warnings.push(format!(
                    "secret {name:?}: caller-id {caller:?} is not a MAC address and is left out (not managed)"
                )),
            }
        }
        if let Some(d) = s.fields.get("disabled") {
            y.push_str(&format!("    disabled: {}\n", d == "true"));
        }
        let comment = s.comment_text();
        if comment.chars().any(char::is_control) {
            warnings.push(format!(
                "secret {name:?}: its comment holds a line break or control character and is left out (not managed)"
            ));
        } else if !comment.is_empty() {
            y.push_str(&format!("    comment: {}\n", yaml_str(comment)));
        }
    }
    if secrets.is_empty() {
        y.push_str("  []\n");
        y = y.replace("secrets:\n  []\n", "secrets: []\n");
    }
    Imported {
        yaml: y,
        env,
        warnings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_names_are_clean_and_unique() {
        let mut t = BTreeSet::new();
        assert_eq!(
            env_name("balanceador", "juan.perez", &mut t),
            "PPPOE_BALANCEADOR_JUAN_PEREZ"
        );
        assert_eq!(
            env_name("balanceador", "juan-perez", &mut t),
            "PPPOE_BALANCEADOR_JUAN_PEREZ_2"
        );
    }
}
