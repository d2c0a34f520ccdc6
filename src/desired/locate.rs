//! Where each value of a YAML document sits. serde_yaml reports positions for syntax and type
//! errors; the checks that run after deserialising (duplicates, references, names) use this index
//! to point at the offending value too.
//!
//! Paths look like serde_yaml's own: `peers[2].name`, `hosts.vps.root`.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// 1-based line and column of every value (and every mapping key, under `path#key`).
#[derive(Debug, Default, Clone)]
pub struct LocationIndex {
    places: HashMap<String, (usize, usize)>,
    /// Keys that appear twice in one mapping: (path of the second, its place, line of the first).
    pub duplicates: Vec<(String, (usize, usize), usize)>,
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

impl LocationIndex {
    /// Indexes a document, or says where it stops being YAML.
    pub fn build(text: &str) -> Result<Self, SyntaxError> {
        let mut rx = Receiver::default();
        let mut parser = Parser::new_from_str(text);
        parser.load(&mut rx, false).map_err(|e| SyntaxError {
            line: e.marker().line(),
            column: e.marker().col() + 1,
            message: e.info().to_string(),
        })?;
        Ok(LocationIndex {
            places: rx.places,
            duplicates: rx.duplicates,
        })
    }

    /// The place of `path`, or of its nearest indexed parent, or the top of the file.
    pub fn find(&self, path: &str) -> (usize, usize) {
        let mut p = path.to_string();
        loop {
            if let Some(&pos) = self.places.get(&p) {
                return pos;
            }
            match p.rfind(['.', '[']) {
                Some(i) => p.truncate(i),
                None => return self.places.get("").copied().unwrap_or((1, 1)),
            }
        }
    }
}

enum Frame {
    Map {
        path: String,
        key: Option<String>,
        seen: HashMap<String, usize>,
    },
    Seq {
        path: String,
        next: usize,
    },
}

#[derive(Default)]
struct Receiver {
    stack: Vec<Frame>,
    places: HashMap<String, (usize, usize)>,
    duplicates: Vec<(String, (usize, usize), usize)>,
}

impl Receiver {
    /// The path of the value that starts now, or `None` when the event is a mapping key.
    fn value_path(&mut self, scalar_key: Option<&str>) -> Option<String> {
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Seq { path, next }) => {
                let p = format!("{path}[{next}]");
                *next += 1;
                Some(p)
            }
            Some(Frame::Map { path, key, .. }) => match key.take() {
                Some(k) => Some(join(path, &k)),
                None => {
                    // This event is a key; remember it for the value that follows.
                    *key = Some(scalar_key.unwrap_or("?").to_string());
                    None
                }
            },
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

impl MarkedEventReceiver for Receiver {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let pos = (mark.line(), mark.col() + 1);
        match ev {
            Event::Scalar(value, ..) => match self.value_path(Some(&value)) {
                Some(p) => {
                    self.places.entry(p).or_insert(pos);
                }
                None => {
                    if let Some(Frame::Map { path, seen, .. }) = self.stack.last_mut() {
                        let full = join(path, &value);
                        match seen.get(&value) {
                            Some(&first) => self.duplicates.push((full.clone(), pos, first)),
                            None => {
                                seen.insert(value, pos.0);
                            }
                        }
                        self.places.entry(format!("{full}#key")).or_insert(pos);
                    }
                }
            },
            Event::Alias(_) => {
                if let Some(p) = self.value_path(Some("*alias")) {
                    self.places.entry(p).or_insert(pos);
                }
            }
            Event::MappingStart(..) => {
                let p = self.value_path(None).unwrap_or_else(|| "?".into());
                self.places.entry(p.clone()).or_insert(pos);
                self.stack.push(Frame::Map {
                    path: p,
                    key: None,
                    seen: HashMap::new(),
                });
            }
            Event::SequenceStart(..) => {
                let p = self.value_path(None).unwrap_or_else(|| "?".into());
                self.places.entry(p.clone()).or_insert(pos);
                self.stack.push(Frame::Seq { path: p, next: 0 });
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
        assert_eq!(ix.duplicates, vec![("hosts.vps".to_string(), (3, 3), 2)]);
    }

    #[test]
    fn syntax_errors_have_a_place() {
        let e = LocationIndex::build("a: [1, 2\n").unwrap_err();
        assert_eq!(e.line, 2);
    }
}
