//! Addresses and host names from YAML: canonical forms only.
//!
//! A resolver does not read an address the way a reviewer does. `inet_aton` (behind
//! `getaddrinfo`, so behind `pptp`, SSH and TCP clients) and the URL parser behind HTTPS
//! clients (WHATWG) read `0177.0.0.1` as octal (127.0.0.1), `010.147.17.1` as 8.147.17.1,
//! `0x7f.1` as hex, `127.1` as 127.0.0.1 and `2130706433` as one number: a router's password
//! sent to "0177.0.0.1" went to the machine wispctl runs on. So an IPv4 address is accepted
//! only in canonical dotted decimal (exactly four parts, each 0 to 255, no leading zeros), and
//! a host name whose last label is a number (decimal, or `0x` hex) is refused, since no real
//! top-level domain is numeric and every resolver reads such a name as an address.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Why a value is not an address or host name. No variant holds the value: the caller names
/// it with the field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AddrError {
    /// Nothing was given.
    #[error("it is empty")]
    Empty,
    /// Digits and dots (or hex), but not four canonical decimal parts.
    #[error(
        "not an IPv4 address in canonical form: four decimal numbers 0-255 without leading zeros (10.147.17.1); resolvers read forms such as 0177.0.0.1 as octal (127.0.0.1)"
    )]
    NotCanonicalIpv4,
    /// Not an IPv4 address at all.
    #[error("not an IPv4 address: four decimal numbers 0-255 (10.147.17.1)")]
    NotIpv4,
    /// Neither an IP address nor a DNS name.
    #[error(
        "not an IP address or host name: letters, digits and '-' in labels of 1 to 63 characters separated by '.'"
    )]
    NotHost,
    /// A `:PORT` that is not a port.
    #[error("the port is not a number 1 to 65535")]
    BadPort,
}

/// An IPv4 address in canonical dotted decimal.
pub fn ipv4(s: &str) -> Result<Ipv4Addr, AddrError> {
    if s.is_empty() {
        return Err(AddrError::Empty);
    }
    // The standard parser takes exactly four decimal parts of 0 to 255 without leading zeros.
    s.parse::<Ipv4Addr>().map_err(|_| {
        if numeric(s) {
            AddrError::NotCanonicalIpv4
        } else {
            AddrError::NotIpv4
        }
    })
}

/// A host as a TCP destination: a canonical IPv4 address, an IPv6 address, or a DNS name
/// (labels of letters, digits and `-`, not starting or ending with `-`) whose last label is
/// not a number.
pub fn host(s: &str) -> Result<(), AddrError> {
    if s.is_empty() {
        return Err(AddrError::Empty);
    }
    if s.parse::<Ipv4Addr>().is_ok() || (s.contains(':') && s.parse::<Ipv6Addr>().is_ok()) {
        return Ok(());
    }
    if numeric(s) {
        return Err(AddrError::NotCanonicalIpv4);
    }
    let name_ok = s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if name_ok {
        Ok(())
    } else {
        Err(AddrError::NotHost)
    }
}

/// The `HOST[:PORT]` of a URL: [`host`], or a bracketed IPv6 address, with an optional port.
pub fn authority(s: &str) -> Result<(), AddrError> {
    let (host_part, port) = if let Some(rest) = s.strip_prefix('[') {
        let Some((inside, after)) = rest.split_once(']') else {
            return Err(AddrError::NotHost);
        };
        if inside.parse::<Ipv6Addr>().is_err() {
            return Err(AddrError::NotHost);
        }
        match after {
            "" => return Ok(()),
            a => match a.strip_prefix(':') {
                Some(p) => (None, Some(p)),
                None => return Err(AddrError::NotHost),
            },
        }
    } else {
        match s.split_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(s), None),
        }
    };
    if let Some(h) = host_part {
        // An IPv6 address in a URL is bracketed; a second ':' is not a port.
        if h.contains(':') {
            return Err(AddrError::NotHost);
        }
        host(h)?;
    }
    if let Some(p) = port {
        let ok = !p.is_empty()
            && p.len() <= 5
            && p.bytes().all(|b| b.is_ascii_digit())
            && p.parse::<u32>().is_ok_and(|n| (1..=65535).contains(&n));
        if !ok {
            return Err(AddrError::BadPort);
        }
    }
    Ok(())
}

/// For a field that also takes names or other words (pppd's chap-secrets addresses, RouterOS
/// routes): a value that a resolver would read as an IPv4 address must be one in canonical
/// form; anything else is left to the field's own check.
pub fn unambiguous(s: &str) -> Result<(), AddrError> {
    if numeric(s) && s.parse::<Ipv4Addr>().is_err() {
        return Err(AddrError::NotCanonicalIpv4);
    }
    Ok(())
}

/// Whether a resolver would read `s` as a number-based IPv4 address: its last label (a final
/// `.` aside) is decimal digits, or `0x` and hex digits (the WHATWG URL rule; `inet_aton`
/// takes fewer forms, all of them among these).
fn numeric(s: &str) -> bool {
    let s = s.strip_suffix('.').unwrap_or(s);
    let last = s.rsplit('.').next().unwrap_or(s);
    let hex = last
        .strip_prefix("0x")
        .or_else(|| last.strip_prefix("0X"))
        .is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
    (!last.is_empty() && last.bytes().all(|b| b.is_ascii_digit())) || hex
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every form a resolver reads as some other address than the reviewer sees.
    const AMBIGUOUS: &[&str] = &[
        "0177.0.0.1",
        "010.147.17.1",
        "10.147.17.01",
        "00.0.0.0",
        "127.1",
        "127.0.1",
        "2130706433",
        "0x7f.0.0.1",
        "0x7f000001",
        "0X7F.1",
        "10.1.1.256",
        "1.2.3.4.5",
        "1.2.3.4.",
        "example.123",
        "0x",
    ];

    #[test]
    fn only_canonical_ipv4_passes() {
        for good in ["10.147.17.1", "0.0.0.0", "255.255.255.255", "127.0.0.1"] {
            assert!(ipv4(good).is_ok(), "{good}");
            assert_eq!(host(good), Ok(()), "{good}");
            assert_eq!(unambiguous(good), Ok(()), "{good}");
        }
        for bad in AMBIGUOUS {
            assert_eq!(ipv4(bad).unwrap_err(), AddrError::NotCanonicalIpv4, "{bad}");
            assert_eq!(host(bad), Err(AddrError::NotCanonicalIpv4), "{bad}");
            assert_eq!(unambiguous(bad), Err(AddrError::NotCanonicalIpv4), "{bad}");
        }
        assert_eq!(ipv4("router.lan").unwrap_err(), AddrError::NotIpv4);
        assert_eq!(ipv4("").unwrap_err(), AddrError::Empty);
    }

    #[test]
    fn names_and_ipv6_pass_and_odd_text_does_not() {
        for good in [
            "uisp.example.net",
            "balanceador",
            "1e100.net",
            "123.example.net",
            "a-b.c",
            "::1",
            "fe80::1",
            "::ffff:10.1.1.1",
        ] {
            assert_eq!(host(good), Ok(()), "{good}");
        }
        for bad in [
            "10.10.1.22; touch /x",
            "a..b",
            "-a.b",
            "a-.b",
            "a_b.c",
            "a b",
            "::ffff:010.1.1.1",
            &"a".repeat(64),
        ] {
            assert!(host(bad).is_err(), "{bad}");
        }
        assert_eq!(host(""), Err(AddrError::Empty));
        assert_eq!(unambiguous("*"), Ok(()));
        assert_eq!(unambiguous("office-net"), Ok(()));
    }

    #[test]
    fn authorities_take_a_port_and_bracketed_ipv6() {
        for good in [
            "uisp.example.net",
            "uisp.example.net:8443",
            "10.0.0.1:443",
            "[::1]",
            "[fe80::1]:8443",
        ] {
            assert_eq!(authority(good), Ok(()), "{good}");
        }
        assert_eq!(authority("0177.0.0.1"), Err(AddrError::NotCanonicalIpv4));
        assert_eq!(
            authority("0177.0.0.1:443"),
            Err(AddrError::NotCanonicalIpv4)
        );
        assert_eq!(
            authority("010.147.17.1:8443"),
            Err(AddrError::NotCanonicalIpv4)
        );
        assert_eq!(authority("host:0"), Err(AddrError::BadPort));
        assert_eq!(authority("host:70000"), Err(AddrError::BadPort));
        assert_eq!(authority("host:"), Err(AddrError::BadPort));
        assert!(authority("::1").is_err());
        assert_eq!(authority("[::1"), Err(AddrError::NotHost));
        assert_eq!(authority("[0177.0.0.1]"), Err(AddrError::NotHost));
        assert_eq!(authority(""), Err(AddrError::Empty));
    }
}
