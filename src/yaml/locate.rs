//! Where each value of a YAML document sits. The deserialiser reports positions for its own
//! syntax and type errors; the checks that run after deserialising (duplicates, references,
//! names) use this index to point at the offending value too.
//!
//! Paths look like serde's own: `peers[2].name`, `hosts.vps.root`; a mapping key is
//! `hosts.vps#key`.
//!
//! The index is a second pass over the text (`granit_parser` events, the parser under
//! `serde_saphyr`), so it is built only when something must be placed: a valid file without
//! findings is parsed once. [`LocationIndex::new`] defers the pass to the first question.

use std::cell::OnceCell;
use std::collections::HashMap;

use serde_saphyr::granit_parser::{
    self, ErrorKind, Event, Parser, ScanError, Span, SpannedEventReceiver, TryLoadError,
    TrySpannedEventReceiver,
};

/// The deepest nesting of mappings and sequences accepted (the schemas need fewer than ten);
/// deeper is hostile input. The deserialiser's budget and this index's parser both hold to it.
pub(crate) const MAX_DEPTH: usize = 64;

/// The most bytes the index may hold (paths and places, estimated); past it, the rest of the
/// document is still checked for syntax but no longer indexed, and questions about it are
/// answered with the nearest indexed parent. A hostile file cannot make the index large.
const MAX_INDEX_BYTES: usize = 64 * 1024 * 1024;

/// What the index keeps per entry beside the path itself (map slot, place, node), estimated.
const ENTRY_OVERHEAD: usize = 64;

/// The most duplicate keys kept: each becomes a diagnostic, and a hostile file may repeat a key
/// a million times.
const MAX_DUPLICATES: usize = 100;

/// A key given twice in one mapping: the path of the second, its place, the first one's line.
pub type Duplicate = (String, (usize, usize), usize);

/// 1-based line and column of every value (and every mapping key, under `path#key`), built on
/// first use.
#[derive(Debug, Clone)]
pub struct LocationIndex<'t> {
    text: &'t str,
    built: OnceCell<Result<Built, SyntaxError>>,
}

/// A document that is not YAML, with the scanner's place and reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// The scanner's reason.
    pub message: String,
}

impl SyntaxError {
    /// The scanner's error, at its place. Two are reworded or moved: a tab in an indentation is
    /// reported by the scanner at the start of the scalar it was reading, where the tab itself
    /// is more useful; and the nesting limit is named as the limit it is.
    pub(crate) fn from_scan(text: &str, scan: &ScanError) -> Self {
        let (mut line, mut column) = (scan.marker().line(), scan.marker().col() + 1);
        let mut message = scan.info();
        match scan.kind() {
            ErrorKind::TabInPlainScalar => {
                if let Some(tab) = tab_in_indentation(text, line) {
                    (line, column) = tab;
                }
            }
            ErrorKind::RecursionLimitExceeded => {
                message = format!(
                    "refused: mappings and sequences nest deeper than {MAX_DEPTH} (a limit against hostile input)"
                );
            }
            _ => {}
        }
        SyntaxError {
            line,
            column,
            message,
        }
    }
}

/// The first tab in the leading blanks of a line after `after` (1-based), as line and column.
fn tab_in_indentation(text: &str, after: usize) -> Option<(usize, usize)> {
    text.lines().enumerate().skip(after).find_map(|(i, l)| {
        let blanks = l.len() - l.trim_start_matches([' ', '\t']).len();
        l[..blanks].find('\t').map(|col| (i + 1, col + 1))
    })
}

/// What sits at a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Node {
    /// A mapping.
    Map,
    /// A sequence.
    Seq,
    /// A scalar.
    Scalar,
    /// An alias (`*name`).
    Alias,
}

/// Where a value starts and what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Place {
    /// 1-based line.
    pub(crate) line: usize,
    /// 1-based column.
    pub(crate) column: usize,
    /// What starts there.
    pub(crate) node: Node,
}

#[derive(Debug, Clone, Default)]
struct Built {
    /// By path: the value's place and, in a mapping, its key's (`path#key`).
    places: HashMap<String, Slot>,
    duplicates: Vec<Duplicate>,
}

/// One path's places: one entry for a key and its value, so that a pair costs one path.
#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    value: Option<Place>,
    key: Option<(usize, usize)>,
    /// The mapping that gave the key (a duplicated key's children share their paths with the
    /// first one's; they are no duplicates themselves).
    map: usize,
}

impl Built {
    /// The place under `path` exactly (`path#key`: its key's).
    fn get(&self, path: &str) -> Option<(usize, usize)> {
        match path.strip_suffix(KEY) {
            Some(base) => self.places.get(base)?.key,
            None => self.places.get(path)?.value.map(|p| (p.line, p.column)),
        }
    }
}

/// How a path names a mapping key rather than its value.
const KEY: &str = "#key";

impl<'t> LocationIndex<'t> {
    /// An index of `text` that reads it on the first question.
    pub fn new(text: &'t str) -> Self {
        LocationIndex {
            text,
            built: OnceCell::new(),
        }
    }

    /// Indexes a document now, or says where it stops being YAML.
    pub fn build(text: &'t str) -> Result<Self, SyntaxError> {
        let ix = Self::new(text);
        match ix.get() {
            Ok(_) => Ok(ix),
            Err(e) => Err(e.clone()),
        }
    }

    /// The scanner's syntax error, if the document has one (builds the index).
    pub fn syntax_error(&self) -> Option<&SyntaxError> {
        self.get().as_ref().err()
    }

    /// Keys that appear twice in one mapping (builds the index).
    pub fn duplicates(&self) -> &[Duplicate] {
        match self.get() {
            Ok(b) => &b.duplicates,
            Err(_) => &[],
        }
    }

    /// The place of `path`, or of its nearest indexed parent, or the top of the file.
    ///
    /// A top-level key asked before the index is built (the loader asks every file where its
    /// target is named) is looked up by reading events up to its value only: the file's head,
    /// not a second parse.
    pub fn find(&self, path: &str) -> (usize, usize) {
        if self.built.get().is_none()
            && !path.is_empty()
            && !path.contains(['.', '[', '#'])
            && let Some(place) = top_level_value(self.text, path)
        {
            return place;
        }
        let Ok(built) = self.get() else {
            return (1, 1);
        };
        let mut p = path;
        loop {
            if let Some(place) = built.get(p) {
                return place;
            }
            match p.rfind(['.', '[']) {
                Some(i) => p = &p[..i],
                None => return built.get("").unwrap_or((1, 1)),
            }
        }
    }

    /// What starts at exactly `path`, if indexed.
    pub(crate) fn node(&self, path: &str) -> Option<Place> {
        self.get().as_ref().ok()?.places.get(path)?.value
    }

    fn get(&self) -> &Result<Built, SyntaxError> {
        self.built.get_or_init(|| index(self.text))
    }
}

#[cfg(test)]
thread_local! {
    /// How many full indexes this thread has built (a valid file should need none).
    pub(crate) static FULL_BUILDS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

fn index(text: &str) -> Result<Built, SyntaxError> {
    #[cfg(test)]
    FULL_BUILDS.with(|n| n.set(n.get() + 1));
    let mut rx = Receiver::default();
    Parser::new_from_str_with_options(text, parser_options())
        .load(&mut rx, false)
        .map_err(|e| SyntaxError::from_scan(text, &e))?;
    Ok(Built {
        places: rx.places,
        duplicates: rx.duplicates,
    })
}

/// Where the value of the top-level key `key` starts, reading no further than that; `None`
/// when the document is not a mapping with that key (or not YAML up to it).
fn top_level_value(text: &str, key: &str) -> Option<(usize, usize)> {
    struct Found((usize, usize));
    struct Head<'k> {
        key: &'k str,
        depth: usize,
        /// Nodes begun directly in the top-level mapping: keys at even counts, values at odd.
        nodes: usize,
        matched: bool,
    }
    impl<'input> TrySpannedEventReceiver<'input> for Head<'_> {
        type Error = Option<Found>;
        fn on_event(&mut self, ev: Event<'input>, span: Span) -> Result<(), Option<Found>> {
            let begins = match (&ev, self.depth) {
                // The top is not a mapping: nothing to find.
                (Event::Scalar(..) | Event::Alias(_) | Event::SequenceStart(..), 0) => {
                    return Err(None);
                }
                (Event::Scalar(..) | Event::Alias(_), 1) => true,
                (Event::MappingStart(..) | Event::SequenceStart(..), d) => {
                    self.depth += 1;
                    d == 1
                }
                (Event::MappingEnd | Event::SequenceEnd, _) => {
                    self.depth -= 1;
                    if self.depth == 0 {
                        return Err(None);
                    }
                    false
                }
                _ => false,
            };
            if begins {
                if self.matched {
                    return Err(Some(Found((span.start.line(), span.start.col() + 1))));
                }
                self.matched = self.nodes.is_multiple_of(2)
                    && matches!(&ev, Event::Scalar(k, ..) if k.as_ref() == self.key);
                self.nodes += 1;
            }
            Ok(())
        }
    }
    let mut head = Head {
        key,
        depth: 0,
        nodes: 0,
        matched: false,
    };
    match Parser::new_from_str_with_options(text, parser_options()).try_load(&mut head, false) {
        Err(TryLoadError::Receiver(Some(Found(place)))) => Some(place),
        _ => None,
    }
}

/// The parser's settings for the index: nesting held to the deserialiser's depth, so that no
/// path grows longer; no comments.
fn parser_options() -> granit_parser::Options {
    let mut options = granit_parser::Options::default();
    options.set_emit_comments(false);
    options.flow_nesting_limit = MAX_DEPTH;
    options.block_nesting_limit = MAX_DEPTH + 1;
    options
}

enum Frame {
    Map {
        path: String,
        /// This mapping's number in the document.
        id: usize,
        /// After a key: the path of the value to come, and the key's place (a scalar key).
        pending: Option<(String, Option<(usize, usize)>)>,
    },
    Seq {
        path: String,
        next: usize,
    },
}

#[derive(Default)]
struct Receiver {
    stack: Vec<Frame>,
    places: HashMap<String, Slot>,
    duplicates: Vec<Duplicate>,
    /// Estimated bytes held; past [`MAX_INDEX_BYTES`] nothing more is recorded.
    bytes: usize,
    /// Mappings begun so far.
    maps: usize,
}

/// What an event is in its parent.
enum Role {
    /// A value (of a mapping key, a sequence, or the document) at this path, with its key's
    /// place and its mapping in a mapping.
    Value(String, Option<((usize, usize), usize)>),
    /// A key of the mapping at the top of the stack.
    Key,
}

impl Receiver {
    /// The role of the node that starts now.
    fn role(&mut self) -> Role {
        match self.stack.last_mut() {
            None => Role::Value(String::new(), None),
            Some(Frame::Seq { path, next }) => {
                let p = format!("{path}[{next}]");
                *next += 1;
                Role::Value(p, None)
            }
            Some(Frame::Map { pending, id, .. }) => match pending.take() {
                Some((p, key)) => Role::Value(p, key.map(|k| (k, *id))),
                None => Role::Key,
            },
        }
    }

    /// Remembers a key of the top mapping for the value that follows, and reports it when the
    /// mapping already has it. `place` is `None` for a key that is not a scalar.
    fn key(&mut self, name: &str, place: Option<(usize, usize)>) {
        let Some(Frame::Map { path, id, pending }) = self.stack.last_mut() else {
            return;
        };
        let full = join(path, name);
        if let Some(at) = place
            && let Some(first) = self
                .places
                .get(&full)
                .filter(|s| s.map == *id)
                .and_then(|s| s.key)
            && self.duplicates.len() < MAX_DUPLICATES
        {
            self.duplicates.push((full.clone(), at, first.0));
        }
        *pending = Some((full, place));
    }

    /// Records a value (and its key's place).
    fn value(&mut self, path: String, key: Option<((usize, usize), usize)>, value: Place) {
        if self.bytes > MAX_INDEX_BYTES {
            return;
        }
        self.bytes += path.len() + ENTRY_OVERHEAD;
        let slot = self.places.entry(path).or_default();
        slot.value.get_or_insert(value);
        if let Some((k, map)) = key
            && slot.key.is_none()
        {
            slot.key = Some(k);
            slot.map = map;
        }
    }

    /// A node starts: a key or a value. Returns the path of a collection that starts.
    fn node(&mut self, key_name: &str, place: Place, scalar_key: bool) -> String {
        match self.role() {
            Role::Value(path, key) => {
                self.value(path.clone(), key, place);
                path
            }
            Role::Key => {
                let at = scalar_key.then_some((place.line, place.column));
                self.key(key_name, at);
                // A collection as a key (`? [a]`) is indexed under `?`.
                if matches!(place.node, Node::Map | Node::Seq) {
                    self.value("?".into(), None, place);
                }
                "?".into()
            }
        }
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

impl<'input> SpannedEventReceiver<'input> for Receiver {
    fn on_event(&mut self, ev: Event<'input>, span: Span) {
        let (line, column) = (span.start.line(), span.start.col() + 1);
        let at = |node| Place { line, column, node };
        match ev {
            Event::Scalar(value, ..) => {
                self.node(&value, at(Node::Scalar), true);
            }
            Event::Alias(_) => {
                self.node("*alias", at(Node::Alias), false);
            }
            Event::MappingStart(..) => {
                let path = self.node("?", at(Node::Map), false);
                self.maps += 1;
                self.stack.push(Frame::Map {
                    path,
                    id: self.maps,
                    pending: None,
                });
            }
            Event::SequenceStart(..) => {
                let path = self.node("?", at(Node::Seq), false);
                self.stack.push(Frame::Seq { path, next: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_values_in_maps_and_sequences() {
        let text = "host: vps\npeers:\n  - name: a\n    mtu: 1400\n  - name: b\n";
        let ix = LocationIndex::build(text).unwrap();
        assert_eq!(ix.find("host"), (1, 7));
        assert_eq!(ix.find("peers[1].name"), (5, 11));
        assert_eq!(ix.find("peers[0].mtu"), (4, 10));
        assert_eq!(ix.find("peers[0].missing").0, 3);
        assert_eq!(ix.find("peers#key"), (2, 1));
    }

    #[test]
    fn flow_style_values_are_found() {
        let ix = LocationIndex::build("secret: { env: X }\n").unwrap();
        assert_eq!(ix.find("secret.env"), (1, 16));
    }

    #[test]
    fn duplicate_keys_are_found_at_the_second_one() {
        let ix = LocationIndex::build("hosts:\n  vps: {}\n  vps: {}\n").unwrap();
        assert_eq!(ix.duplicates(), [("hosts.vps".to_string(), (3, 3), 2)]);
        // The second `vps`'s keys are not duplicates of the first one's.
        let ix =
            LocationIndex::build("hosts:\n  vps:\n    root: a\n  vps:\n    root: b\n").unwrap();
        assert_eq!(ix.duplicates(), [("hosts.vps".to_string(), (4, 3), 2)]);
    }

    #[test]
    fn syntax_errors_have_a_place() {
        // At the bracket left open (yaml-rust2 said line 2, the end of the file).
        let e = LocationIndex::build("a: [1, 2\n").unwrap_err();
        assert_eq!((e.line, e.column), (1, 4));
    }

    #[test]
    fn the_index_is_built_on_the_first_question_only() {
        let ix = LocationIndex::new("a: [1, 2\n");
        assert!(
            ix.built.get().is_none(),
            "nothing is parsed before a question"
        );
        assert_eq!(
            ix.find("a[0]"),
            (1, 1),
            "an unparsable document places at the top"
        );
        assert!(ix.syntax_error().is_some());
        let ix = LocationIndex::new("a: { b: 1 }\n");
        assert!(ix.built.get().is_none());
        assert_eq!(ix.find("a.b"), (1, 9));
        assert!(ix.built.get().is_some());
    }

    #[test]
    fn a_top_level_key_is_found_without_building_the_index() {
        let text = "host: vps\npeers:\n  - name: a\nlast: { a: 1 }\n";
        let ix = LocationIndex::new(text);
        assert_eq!(ix.find("host"), (1, 7));
        assert_eq!(ix.find("peers"), (3, 3));
        assert_eq!(ix.find("last"), (4, 7));
        assert!(ix.built.get().is_none(), "read the head only");
        // The same answers as the index, which a missing key or a nested path builds.
        assert_eq!(ix.find("name"), (1, 1));
        assert!(ix.built.get().is_some());
        let full = LocationIndex::build(text).unwrap();
        for key in ["host", "peers", "last", "name"] {
            assert_eq!(LocationIndex::new(text).find(key), full.find(key), "{key}");
        }
        // Keys that are collections, and values that hold the key's name, do not confuse it.
        let text = "? [a]\n: host\nx: { host: 1 }\nhost: here\n";
        assert_eq!(LocationIndex::new(text).find("host"), (4, 7));
        assert_eq!(LocationIndex::new("- host\n").find("host"), (1, 1));
    }

    #[test]
    fn nodes_say_what_starts_at_a_path() {
        let ix = LocationIndex::new("peers:\n  a: 1\nmtu: \"big\"\nn: 12\nl: [1]\n");
        assert_eq!(ix.node("peers").map(|p| p.node), Some(Node::Map));
        assert_eq!(ix.node("mtu").map(|p| p.node), Some(Node::Scalar));
        assert_eq!(ix.node("n").map(|p| p.node), Some(Node::Scalar));
        assert_eq!(ix.node("l").map(|p| p.node), Some(Node::Seq));
        assert_eq!(ix.node("nope"), None);
    }

    #[test]
    fn the_index_stops_growing_at_its_cap() {
        let mut rx = Receiver {
            bytes: MAX_INDEX_BYTES + 1,
            ..Receiver::default()
        };
        let place = Place {
            line: 1,
            column: 1,
            node: Node::Map,
        };
        rx.value("a".into(), None, place);
        assert!(rx.places.is_empty());
    }

    #[test]
    fn keys_that_are_not_scalars_are_indexed_under_a_question_mark() {
        let ix = LocationIndex::build("? [a]\n: 1\nb: 2\nb: 3\n").unwrap();
        assert_eq!(ix.find("?"), (1, 3));
        assert_eq!(ix.find("b"), (3, 4));
        assert_eq!(ix.find("b#key"), (3, 1));
        assert_eq!(ix.duplicates(), [("b".to_string(), (4, 1), 3)]);
    }
}
