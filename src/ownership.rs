//! What wispctl owns: the tag that marks a remote object as wispctl's when the object has a
//! free-text field and no better place for a marker (a RouterOS secret's comment, a UISP site's
//! note), [`Prune`], whether owned objects the YAML no longer names are deleted, and the run-wide
//! [`Guards`] on deletes. Only owned
//! objects are ever pruned, and only when a file says `prune: owned`.

/// The tag, at the end of the text.
pub const TAG: &str = "[wispctl]";

/// The text as written to the device: the operator's text and the tag, one space between.
pub fn tagged(text: &str) -> String {
    if text.is_empty() {
        TAG.to_string()
    } else {
        format!("{text} {TAG}")
    }
}

/// Whether a live text carries the tag.
pub fn is_tagged(text: &str) -> bool {
    text.ends_with(TAG)
}

/// The operator's text without the tag (and exactly the one space [`tagged`] adds, so a text
/// that itself ends in spaces keeps them).
pub fn untagged(text: &str) -> &str {
    text.strip_suffix(TAG)
        .map_or(text, |s| s.strip_suffix(' ').unwrap_or(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_round_trips() {
        for t in ["", "note", "note ", "  ", "a [wispctl] b"] {
            let w = tagged(t);
            assert!(is_tagged(&w));
            assert_eq!(untagged(&w), t);
        }
        assert_eq!(untagged("by hand"), "by hand");
        assert_eq!(untagged("note[wispctl]"), "note");
    }
}

/// Whether owned objects that the YAML no longer names are deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Prune {
    /// Never delete (the default).
    #[default]
    None,
    /// Delete objects that carry wispctl's mark and are not in the YAML.
    Owned,
}

/// Run-wide guards.
#[derive(Debug, Clone, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Guards {
    /// The most deletes one run may make across all targets (default 10). A plan over the cap
    /// is refused as a whole; raise it here or with `--max-deletes` when the deletes are meant.
    #[serde(default = "default_max_deletes")]
    pub max_deletes: usize,
    /// The most active sessions one run may disconnect across all routers (default 50): a
    /// change of a shared default or a bulk password rotation kicks every session it touches
    /// at once. A plan over the cap is refused as a whole and names the customers beyond it;
    /// raise it here or with `--max-disconnects` when the disconnects are meant.
    #[serde(default = "default_max_disconnects")]
    pub max_disconnects: usize,
}

fn default_max_deletes() -> usize {
    10
}

fn default_max_disconnects() -> usize {
    50
}

impl Default for Guards {
    fn default() -> Self {
        Guards {
            max_deletes: default_max_deletes(),
            max_disconnects: default_max_disconnects(),
        }
    }
}
