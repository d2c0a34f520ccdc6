//! Names and host names that come from YAML and become file names, addresses, TCP destinations
//! or known-hosts keys. Whatever passes here is inert in a path and in a shell.

/// Checks a name that becomes a file name or part of an address: `[A-Za-z0-9._-]`, not empty,
/// not starting with a dot (so `.`, `..` and hidden or temporary files are impossible).
pub fn valid_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("it is empty");
    }
    if name.len() > 64 {
        return Err("it is longer than 64 characters");
    }
    if name.contains('/') || name.contains('\0') || name.contains("..") {
        return Err("it must not contain '/', '..' or NUL");
    }
    if name.starts_with('.') {
        return Err("it must not start with '.'");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-')
    {
        return Err("only letters, digits, '.', '_' and '-' are allowed");
    }
    Ok(())
}

/// Whether `host` is an IPv4 address in canonical dotted decimal, an IPv6 address or a DNS
/// name (letters, digits, `-` and `.` separated labels, the last not a number). Everything an
/// antenna's `host` may be: it becomes a TCP destination and a known-hosts key, and nothing
/// else passes. [`crate::untrusted::addr::host`] says why a host does not.
pub fn valid_host(host: &str) -> bool {
    crate::untrusted::addr::host(host).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_refuse_traversal_and_odd_characters() {
        for bad in [
            "",
            "..",
            "../etc/passwd",
            "a/b",
            ".hidden",
            "a b",
            "a\0b",
            "ñ",
        ] {
            assert!(valid_name(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["connexa-node-2", "a.b_c", "N1"] {
            assert!(valid_name(good).is_ok(), "{good:?} refused");
        }
    }
}
