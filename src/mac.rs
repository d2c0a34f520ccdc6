//! MAC addresses, the one key every kind shares for a device (a PPPoE caller-id, a UISP device,
//! an antenna's board). Every form people and devices write is read; one form is written.

/// `aa-bb-cc-dd-ee-ff`, `aabbccddeeff` or `AA:BB:...` to `AA:BB:CC:DD:EE:FF`.
pub fn normalise_mac(s: &str) -> Option<String> {
    let hex: String = s
        .chars()
        .filter(|c| !matches!(c, ':' | '-' | '.'))
        .collect();
    if hex.len() != 12 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let up = hex.to_ascii_uppercase();
    Some(
        (0..6)
            .map(|i| &up[i * 2..i * 2 + 2])
            .collect::<Vec<_>>()
            .join(":"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_normalise() {
        assert_eq!(
            normalise_mac("28:70:4e:a8:16:99").as_deref(),
            Some("28:70:4E:A8:16:99")
        );
        assert_eq!(
            normalise_mac("28704EA81699").as_deref(),
            Some("28:70:4E:A8:16:99")
        );
        assert_eq!(
            normalise_mac("28-70-4E-A8-16-99").as_deref(),
            Some("28:70:4E:A8:16:99")
        );
        assert!(normalise_mac("28:70:4E:A8:16").is_none());
        assert!(normalise_mac("zz:70:4E:A8:16:99").is_none());
    }
}
