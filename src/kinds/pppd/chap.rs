//! `/etc/ppp/chap-secrets`, edited without disturbing anyone else's lines.
//!
//! wispctl's entries live in a managed block between two marker lines; everything outside it
//! is kept byte for byte, except an entry whose (client, server) the YAML names: that one is
//! adopted and rewritten where it stands. New entries go at the end of the block.

use std::collections::BTreeMap;

use super::spec::ChapEntry;
use super::words::{quote_always, split};
use crate::plan::quote_key;
use crate::secret::Secret;

/// Opens the managed block.
pub const BEGIN: &str = "# BEGIN wispctl managed entries: edits inside this block are overwritten";
/// Closes the managed block.
pub const END: &str = "# END wispctl managed entries";

/// A chap-secrets file that wispctl cannot safely edit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChapError {
    /// The block markers do not pair up.
    #[error("chap-secrets line {line}: {what}; fix the markers by hand")]
    Block {
        /// 1-based line.
        line: usize,
        /// What is wrong.
        what: &'static str,
    },
}

/// A (client, server) pair that chap-secrets holds more than once: nothing says which line
/// is meant, so wispctl edits none of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateEntries {
    /// Client name.
    pub client: String,
    /// Server name.
    pub server: String,
    /// The 1-based lines that hold the pair, in file order.
    pub lines: Vec<usize>,
}

impl std::fmt::Display for DuplicateEntries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let lines: Vec<String> = self.lines.iter().map(usize::to_string).collect();
        write!(
            f,
            "chap-secrets has duplicate entries for {}@{} at lines {}",
            quote_key(&self.client),
            quote_key(&self.server),
            lines.join(", ")
        )
    }
}

/// One physical line, with its terminator, and the entry it holds if any.
#[derive(Clone)]
pub struct Line {
    /// The exact bytes, terminator included (not necessarily UTF-8).
    pub raw: Vec<u8>,
    /// The entry on this line, when it parses as one (three words or more).
    pub entry: Option<LiveEntry>,
    /// The line is not UTF-8: its entry (read leniently) names a pair, but the line is never
    /// rewritten.
    pub opaque: bool,
}

impl std::fmt::Debug for Line {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The raw line holds a secret.
        f.debug_struct("Line")
            .field("entry", &self.entry)
            .field("opaque", &self.opaque)
            .finish_non_exhaustive()
    }
}

/// An entry as read from the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveEntry {
    /// Client name.
    pub client: String,
    /// Server name.
    pub server: String,
    /// The secret.
    pub secret: Secret,
    /// Addresses (may be empty).
    pub addresses: Vec<String>,
}

/// Line indices (0-based, file order) of each (client, server) pair of a file.
pub type Pairs = BTreeMap<(String, String), Vec<usize>>;

/// A parsed chap-secrets file.
#[derive(Debug, Clone, Default)]
pub struct ChapFile {
    /// Every line, in order.
    pub lines: Vec<Line>,
    /// Indices of the BEGIN and END marker lines.
    pub block: Option<(usize, usize)>,
}

/// One edit to the file, by line index of the parsed file.
#[derive(Debug, Clone)]
pub enum ChapEdit {
    /// Rewrite the entry on this line.
    Replace {
        /// Line index.
        line: usize,
        /// The new entry.
        entry: ChapEntry,
    },
    /// Delete this line.
    Remove {
        /// Line index.
        line: usize,
    },
    /// Add an entry at the end of the managed block.
    Add {
        /// The new entry.
        entry: ChapEntry,
    },
}

impl ChapFile {
    /// Parses file content.
    pub fn parse(bytes: &[u8]) -> Result<Self, ChapError> {
        let mut lines = Vec::new();
        let mut begin = None;
        let mut block = None;
        for (i, raw) in bytes.split_inclusive(|&b| b == b'\n').enumerate() {
            let opaque = std::str::from_utf8(raw).is_err();
            let text = String::from_utf8_lossy(raw);
            let content = text.trim_end_matches(['\n', '\r']);
            let trimmed = content.trim();
            if trimmed == BEGIN {
                if begin.is_some() || block.is_some() {
                    return Err(ChapError::Block {
                        line: i + 1,
                        what: "a second managed block begins",
                    });
                }
                begin = Some(i);
            } else if trimmed == END {
                match begin.take() {
                    Some(b) => block = Some((b, i)),
                    None => {
                        return Err(ChapError::Block {
                            line: i + 1,
                            what: "managed block end without a beginning",
                        });
                    }
                }
            }
            let entry = match split(content) {
                Ok(w) if w.len() >= 3 => Some(LiveEntry {
                    client: w[0].clone(),
                    server: w[1].clone(),
                    secret: Secret::new(w[2].clone()),
                    addresses: w[3..].to_vec(),
                }),
                _ => None,
            };
            lines.push(Line {
                raw: raw.to_vec(),
                entry,
                opaque,
            });
        }
        if let Some(b) = begin {
            return Err(ChapError::Block {
                line: b + 1,
                what: "managed block not closed",
            });
        }
        Ok(ChapFile { lines, block })
    }

    /// Whether line `i` is inside the managed block.
    pub fn in_block(&self, i: usize) -> bool {
        self.block.is_some_and(|(b, e)| b < i && i < e)
    }

    /// Line indices of each (client, server) pair.
    pub fn pairs(&self) -> Pairs {
        let mut out: BTreeMap<_, Vec<_>> = BTreeMap::new();
        for (i, l) in self.lines.iter().enumerate() {
            if let Some(e) = &l.entry {
                out.entry((e.client.clone(), e.server.clone()))
                    .or_default()
                    .push(i);
            }
        }
        out
    }

    /// The file with `edits` made; lines no edit names are copied unchanged, byte for byte.
    pub fn edited(&self, edits: &[ChapEdit]) -> Vec<u8> {
        let mut replace: BTreeMap<usize, Option<String>> = BTreeMap::new();
        let mut adds = Vec::new();
        for e in edits {
            match e {
                ChapEdit::Replace { line, entry } => {
                    replace.insert(*line, Some(render_entry(entry)));
                }
                ChapEdit::Remove { line } => {
                    replace.insert(*line, None);
                }
                ChapEdit::Add { entry } => adds.push(render_entry(entry)),
            }
        }
        let mut out: Vec<u8> = Vec::new();
        for (i, l) in self.lines.iter().enumerate() {
            if Some(i) == self.block.map(|(_, e)| e) {
                for a in &adds {
                    out.extend_from_slice(a.as_bytes());
                    out.push(b'\n');
                }
            }
            match replace.get(&i) {
                None => out.extend_from_slice(&l.raw),
                Some(None) => {}
                Some(Some(new)) => {
                    out.extend_from_slice(new.as_bytes());
                    let body = l.raw.len()
                        - l.raw
                            .iter()
                            .rev()
                            .take_while(|&&b| b == b'\n' || b == b'\r')
                            .count();
                    let ending = &l.raw[body..];
                    out.extend_from_slice(if ending.is_empty() { b"\n" } else { ending });
                }
            }
        }
        if self.block.is_none() && !adds.is_empty() {
            if !out.is_empty() && !out.ends_with(b"\n") {
                out.push(b'\n');
            }
            out.extend_from_slice(BEGIN.as_bytes());
            out.push(b'\n');
            for a in &adds {
                out.extend_from_slice(a.as_bytes());
                out.push(b'\n');
            }
            out.extend_from_slice(END.as_bytes());
            out.push(b'\n');
        }
        out
    }

    /// A line's text without its terminator (lossy for non-UTF-8 lines).
    pub fn text(&self, i: usize) -> String {
        String::from_utf8_lossy(&self.lines[i].raw)
            .trim_end_matches(['\n', '\r'])
            .to_string()
    }
}

/// One entry as a line (no terminator): every name and the secret quoted, addresses bare.
pub fn render_entry(e: &ChapEntry) -> String {
    let mut s = format!(
        "{} {} {}",
        quote_always(&e.client),
        quote_always(&e.server),
        quote_always(e.secret.expose())
    );
    for a in &e.addresses {
        s.push(' ');
        s.push_str(a);
    }
    s
}

/// Every pair of `pairs` held on more than one line, in pair order.
pub fn duplicates(pairs: &Pairs) -> Vec<DuplicateEntries> {
    pairs
        .iter()
        .filter(|(_, lines)| lines.len() > 1)
        .map(|((client, server), lines)| DuplicateEntries {
            client: client.clone(),
            server: server.clone(),
            lines: lines.iter().map(|i| i + 1).collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::pppd::fixtures::chap_entry as entry;

    #[test]
    fn adds_a_block_and_keeps_other_lines() {
        let text = "# Secrets\nbob   office  pw1 *\n\tweird  line\nlast-no-newline a b";
        let f = ChapFile::parse(text.as_bytes()).unwrap();
        let out = f.edited(&[ChapEdit::Add {
            entry: entry("admin", "node 2", r#"a"b\c"#),
        }]);
        assert!(
            out.starts_with(
                b"# Secrets\nbob   office  pw1 *\n\tweird  line\nlast-no-newline a b\n"
            )
        );
        let g = ChapFile::parse(&out).unwrap();
        let (b, e) = g.block.unwrap();
        assert_eq!(e - b, 2);
        let live = g.lines[b + 1].entry.as_ref().unwrap();
        assert_eq!(live.secret.expose(), r#"a"b\c"#);
        assert_eq!(live.server, "node 2");
    }

    #[test]
    fn replace_keeps_crlf_and_remove_drops_only_its_line() {
        let text = format!("x y z\r\n{BEGIN}\n\"a\" \"b\" \"c\" *\n\"d\" \"e\" \"f\" *\n{END}\n");
        let f = ChapFile::parse(text.as_bytes()).unwrap();
        assert!(f.in_block(2) && !f.in_block(0));
        let out = f.edited(&[
            ChapEdit::Replace {
                line: 0,
                entry: entry("x", "y", "new"),
            },
            ChapEdit::Remove { line: 3 },
        ]);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("\"x\" \"y\" \"new\" *\r\n{BEGIN}\n\"a\" \"b\" \"c\" *\n{END}\n")
        );
    }

    #[test]
    fn lines_that_are_not_utf8_are_kept_byte_for_byte() {
        let text = b"jos\xe9 otro-node \"contrase\xf1a\" *\n";
        let f = ChapFile::parse(text).unwrap();
        assert!(f.lines[0].opaque);
        let out = f.edited(&[ChapEdit::Add {
            entry: entry("a", "b", "c"),
        }]);
        assert!(out.starts_with(text), "{out:?}");
    }

    #[test]
    fn broken_blocks_are_refused_with_their_line() {
        let e = ChapFile::parse(format!("a b c\n{BEGIN}\n").as_bytes()).unwrap_err();
        assert_eq!(
            e,
            ChapError::Block {
                line: 2,
                what: "managed block not closed"
            }
        );
        assert!(ChapFile::parse(format!("{END}\n").as_bytes()).is_err());
    }
}
