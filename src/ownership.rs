//! The tag that marks a remote object as wispctl's when the object has a free-text field and no
//! better place for a marker: a RouterOS secret's comment, a UISP site's note. Only tagged
//! objects are ever pruned.

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
