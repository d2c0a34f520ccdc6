//! The RouterOS API wire format: length-prefixed words, sentences ended by an empty word.
//!
//! | length | prefix bytes | encoding |
//! |---|---|---|
//! | < 0x80 | 1 | the length |
//! | < 0x4000 | 2 | len OR 0x8000 |
//! | < 0x200000 | 3 | len OR 0xC00000 |
//! | < 0x10000000 | 4 | len OR 0xE0000000 |
//! | larger | 5 | 0xF0, then 4 bytes big-endian |
//!
//! First bytes 0xF8..=0xFF are reserved: a decode error. The encoder never emits the 5-byte
//! form (librouteros, and so Ansible, reject any first byte >= 0xF0); words that long are
//! refused instead. The decoder accepts it, up to [`MAX_WORD`].
//!
//! Words are bytes; a [`Sentence`] is their text: UTF-8, or Windows-1252 for a word that is not
//! UTF-8 (typed in Winbox), flagged so that nobody writes it back re-encoded unknowingly.
//!
//! No I/O here: reading and writing a stream is the [`crate::client`]'s (and the server's).

/// The longest word the decoder accepts (a guard against a peer announcing gigabytes).
pub const MAX_WORD: usize = 16 * 1024 * 1024;

/// A malformed stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// A first length byte in the reserved range.
    #[error("reserved length prefix byte {0:#04x}")]
    Reserved(u8),
    /// A word longer than [`MAX_WORD`] (decoding) or than the 4-byte form (encoding).
    #[error("word of {0} bytes is too long")]
    TooLong(usize),
}

/// Appends the length prefix of a word of `len` bytes.
pub fn encode_length(len: usize, out: &mut Vec<u8>) -> Result<(), CodecError> {
    let l = len as u32;
    match len {
        0..0x80 => out.push(l as u8),
        0x80..0x4000 => out.extend_from_slice(&((l | 0x8000) as u16).to_be_bytes()),
        0x4000..0x20_0000 => out.extend_from_slice(&(l | 0xC0_0000).to_be_bytes()[1..]),
        0x20_0000..0x1000_0000 => out.extend_from_slice(&(l | 0xE000_0000).to_be_bytes()),
        _ => return Err(CodecError::TooLong(len)),
    }
    Ok(())
}

/// Encodes one sentence: each word with its prefix, then the empty word.
pub fn encode_sentence<W: AsRef<[u8]>>(words: &[W]) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(words.iter().map(|w| w.as_ref().len() + 2).sum::<usize>() + 1);
    for w in words {
        let w = w.as_ref();
        encode_length(w.len(), &mut out)?;
        out.extend_from_slice(w);
    }
    out.push(0);
    Ok(out)
}

/// Decodes a length prefix at the start of `buf`: `Ok(None)` when more bytes are needed,
/// else the length and the prefix size.
pub fn decode_length(buf: &[u8]) -> Result<Option<(usize, usize)>, CodecError> {
    let Some(&b0) = buf.first() else {
        return Ok(None);
    };
    let (size, first) = match b0 {
        0x00..=0x7F => (1, u32::from(b0)),
        0x80..=0xBF => (2, u32::from(b0 & 0x3F)),
        0xC0..=0xDF => (3, u32::from(b0 & 0x1F)),
        0xE0..=0xEF => (4, u32::from(b0 & 0x0F)),
        0xF0 => (5, 0),
        _ => return Err(CodecError::Reserved(b0)),
    };
    if buf.len() < size {
        return Ok(None);
    }
    let len = buf[1..size]
        .iter()
        .fold(first, |acc, &b| (acc << 8) | u32::from(b)) as usize;
    if len > MAX_WORD {
        return Err(CodecError::TooLong(len));
    }
    Ok(Some((len, size)))
}

/// Raw words of one sentence and the number of bytes they took.
pub type Decoded = (Vec<Vec<u8>>, usize);

/// Decodes one whole sentence from the start of `buf`: `Ok(None)` when it is not all there yet,
/// else its words and the bytes used.
pub fn decode_sentence(buf: &[u8]) -> Result<Option<Decoded>, CodecError> {
    let mut pos = 0;
    let mut words = Vec::new();
    loop {
        let Some((len, size)) = decode_length(&buf[pos..])? else {
            return Ok(None);
        };
        pos += size;
        if len == 0 {
            return Ok(Some((words, pos)));
        }
        if buf.len() < pos + len {
            return Ok(None);
        }
        words.push(buf[pos..pos + len].to_vec());
        pos += len;
    }
}

/// A decoded sentence with its words as text. RouterOS keeps bytes as they were typed: UTF-8
/// from the API and newer tools, the Windows ANSI code page from Winbox (a Windows program):
/// Windows-1252 for Western European languages. A word that is not UTF-8 is decoded as
/// Windows-1252, so "Tomatlán", “quotes” and "€" read right, and flagged in
/// [`Sentence::not_utf8`], so that nobody writes it back re-encoded without knowing.
///
/// Windows-1252 and ISO-8859-1 differ only in 0x80..=0x9F, where ISO-8859-1 has invisible C1
/// control codes and Windows-1252 has `€ ‚ „ … “ ” – — Š ž` and the like: text typed on
/// Windows means the latter. Every byte decodes (the five bytes Windows-1252 leaves undefined
/// become their C1 code points, as the WHATWG encoding standard says), so decoding never fails.
///
/// `Debug` shows the value of a `=password=` or `=response=` word as `(sensitive)`.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Sentence {
    /// The words, first the command or reply word.
    pub words: Vec<String>,
    /// Indices of the words that were not UTF-8.
    pub not_utf8: Vec<usize>,
}

impl Sentence {
    /// A sentence from words.
    pub fn new<S: Into<String>>(words: impl IntoIterator<Item = S>) -> Self {
        Sentence {
            words: words.into_iter().map(Into::into).collect(),
            not_utf8: Vec::new(),
        }
    }

    /// From raw words.
    pub fn from_raw(words: Vec<Vec<u8>>) -> Self {
        let mut not_utf8 = Vec::new();
        let words = words
            .into_iter()
            .enumerate()
            .map(|(i, w)| {
                String::from_utf8(w).unwrap_or_else(|e| {
                    not_utf8.push(i);
                    decode_windows_1252(e.as_bytes())
                })
            })
            .collect();
        Sentence { words, not_utf8 }
    }

    /// Keys of the attribute words that were not UTF-8.
    pub fn not_utf8_attrs(&self) -> impl Iterator<Item = &str> {
        self.not_utf8.iter().filter_map(|&i| {
            let rest = self.words.get(i)?.strip_prefix('=')?;
            Some(rest.split_once('=').map_or(rest, |(k, _)| k))
        })
    }

    /// The first word: a command (`/ppp/secret/print`) or a reply (`!re`, `!done`, ...).
    pub fn head(&self) -> &str {
        self.words.first().map_or("", String::as_str)
    }

    /// Attribute words `=key=value`, split on the first two `=` only.
    pub fn attrs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.words.iter().skip(1).filter_map(|w| {
            let rest = w.strip_prefix('=')?;
            Some(rest.split_once('=').unwrap_or((rest, "")))
        })
    }

    /// The value of attribute `key`.
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attrs().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// The `.tag=N` API attribute.
    pub fn tag(&self) -> Option<&str> {
        self.words
            .iter()
            .skip(1)
            .find_map(|w| w.strip_prefix(".tag="))
    }

    /// Query words (`?name=x`, `?#|`), for print.
    pub fn queries(&self) -> impl Iterator<Item = &str> {
        self.words
            .iter()
            .skip(1)
            .filter_map(|w| w.strip_prefix('?'))
    }

    /// Encodes the sentence.
    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        encode_sentence(&self.words)
    }
}

impl std::fmt::Debug for Sentence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sentence")
            .field("words", &Redacted(&self.words))
            .field("not_utf8", &self.not_utf8)
            .finish()
    }
}

/// Text typed in Winbox: Windows-1252 (see [`Sentence`]).
fn decode_windows_1252(bytes: &[u8]) -> String {
    encoding_rs::WINDOWS_1252
        .decode_without_bom_handling(bytes)
        .0
        .into_owned()
}

/// Attributes whose value is a secret or derived from one: `password` (login, `/ppp/secret`)
/// and `response` (the legacy login's MD5 of the password).
const SENSITIVE_ATTRS: &[&str] = &["password", "response"];

/// Whether attribute `key` holds a secret.
pub fn is_sensitive(key: &str) -> bool {
    SENSITIVE_ATTRS.contains(&key)
}

/// A word as it may be shown: the value of a sensitive attribute word replaced by
/// `(sensitive)`.
pub fn redact_word(word: &str) -> std::borrow::Cow<'_, str> {
    if let Some((key, _)) = word.strip_prefix('=').and_then(|rest| rest.split_once('='))
        && is_sensitive(key)
    {
        return format!("={key}=(sensitive)").into();
    }
    word.into()
}

/// Words for `Debug`, sensitive values redacted.
pub(crate) struct Redacted<'a>(pub(crate) &'a [String]);

impl std::fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|w| redact_word(w)))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_length_form_round_trips_at_its_edges() {
        for len in [
            0,
            1,
            0x7F,
            0x80,
            0x3FFF,
            0x4000,
            0x1F_FFFF,
            0x20_0000,
            0x0FFF_FFFF,
        ] {
            let mut out = Vec::new();
            encode_length(len, &mut out).unwrap();
            assert!(out[0] < 0xF0, "5-byte form emitted for {len:#x}");
            let expected_size = match len {
                0..0x80 => 1,
                0x80..0x4000 => 2,
                0x4000..0x20_0000 => 3,
                _ => 4,
            };
            assert_eq!(out.len(), expected_size, "{len:#x}");
            if len <= MAX_WORD {
                assert_eq!(decode_length(&out).unwrap(), Some((len, expected_size)));
            }
        }
        assert_eq!(
            encode_length(0x1000_0000, &mut Vec::new()),
            Err(CodecError::TooLong(0x1000_0000))
        );
    }

    #[test]
    fn known_encodings_match_the_manual() {
        let mut out = Vec::new();
        encode_length(0x80, &mut out).unwrap();
        assert_eq!(out, [0x80, 0x80]);
        out.clear();
        encode_length(0x4000, &mut out).unwrap();
        assert_eq!(out, [0xC0, 0x40, 0x00]);
        out.clear();
        encode_length(0x20_0000, &mut out).unwrap();
        assert_eq!(out, [0xE0, 0x20, 0x00, 0x00]);
        // The 5-byte form decodes.
        assert_eq!(decode_length(&[0xF0, 0, 0, 1, 0]).unwrap(), Some((256, 5)));
    }

    #[test]
    fn reserved_and_huge_prefixes_are_errors() {
        for b in 0xF8..=0xFF {
            assert_eq!(decode_length(&[b]), Err(CodecError::Reserved(b)));
        }
        assert_eq!(
            decode_length(&[0xF0, 0x7F, 0, 0, 0]),
            Err(CodecError::TooLong(0x7F00_0000))
        );
    }

    #[test]
    fn partial_input_asks_for_more() {
        let s = Sentence::new(["/login", "=name=admin", "=password=a=b"])
            .encode()
            .unwrap();
        for cut in 0..s.len() {
            assert_eq!(decode_sentence(&s[..cut]).unwrap(), None, "cut at {cut}");
        }
        let (words, used) = decode_sentence(&s).unwrap().unwrap();
        assert_eq!(used, s.len());
        let sentence = Sentence::from_raw(words);
        assert_eq!(sentence.attr("password"), Some("a=b"));
        assert_eq!(sentence.head(), "/login");
    }

    #[test]
    fn latin1_words_decode_and_are_flagged() {
        let s = Sentence::from_raw(vec![
            b"!re".to_vec(),
            b"=comment=Tomatl\xe1n".to_vec(),
            b"=name=a".to_vec(),
        ]);
        assert_eq!(s.attr("comment"), Some("Tomatlán"));
        assert_eq!(s.not_utf8_attrs().collect::<Vec<_>>(), ["comment"]);
    }

    /// Winbox runs on Windows: its bytes 0x80..=0x9F are Windows-1252 punctuation, not the C1
    /// controls of ISO-8859-1.
    #[test]
    fn words_typed_in_winbox_decode_as_windows_1252() {
        let s = Sentence::from_raw(vec![
            b"!re".to_vec(),
            b"=comment=\x93Tomatl\xe1n\x94 \x80 5".to_vec(),
            b"=name=\x8aimon".to_vec(),
            b"=profile=10M".to_vec(),
        ]);
        assert_eq!(s.attr("comment"), Some("\u{201c}Tomatlán\u{201d} € 5"));
        assert_eq!(s.attr("name"), Some("Šimon"));
        assert_eq!(s.not_utf8, [1, 2]);
        assert_eq!(s.not_utf8_attrs().collect::<Vec<_>>(), ["comment", "name"]);
        // Every byte decodes: the bytes Windows-1252 leaves undefined become C1 code points.
        let s = Sentence::from_raw(vec![vec![0x81, 0x8D, 0x8F, 0x90, 0x9D, 0xFF]]);
        assert_eq!(s.head(), "\u{81}\u{8d}\u{8f}\u{90}\u{9d}ÿ");
        assert_eq!(s.not_utf8, [0]);
        // UTF-8 stays UTF-8 and is not flagged.
        let s = Sentence::from_raw(vec![
            b"!re".to_vec(),
            "=comment=“Tomatlán” €".as_bytes().to_vec(),
        ]);
        assert_eq!(s.attr("comment"), Some("“Tomatlán” €"));
        assert!(s.not_utf8.is_empty());
    }

    #[test]
    fn debug_output_hides_passwords_and_login_responses() {
        let s = Sentence::new([
            "/login",
            "=name=admin",
            "=password=Zq9x-a=b",
            "=response=00abcdef",
        ]);
        let shown = format!("{s:?}");
        assert!(
            !shown.contains("Zq9x") && !shown.contains("abcdef"),
            "{shown}"
        );
        assert!(shown.contains("=password=(sensitive)") && shown.contains("=name=admin"));
        assert_eq!(redact_word("=comment=password=x"), "=comment=password=x");
        assert_eq!(redact_word("=password="), "=password=(sensitive)");
    }

    #[test]
    fn tags_and_queries_are_found() {
        let s = Sentence::new(["!re", ".tag=7", "=name=x", "=comment="]);
        assert_eq!(s.tag(), Some("7"));
        assert_eq!(s.attr("comment"), Some(""));
        let q = Sentence::new(["/ppp/active/print", "?name=juan", "?#|"]);
        assert_eq!(q.queries().collect::<Vec<_>>(), ["name=juan", "#|"]);
    }

    proptest! {
        #[test]
        fn sentences_round_trip(words in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..300), 0..8)) {
            let bytes = encode_sentence(&words).unwrap();
            let (back, used) = decode_sentence(&bytes).unwrap().unwrap();
            prop_assert_eq!(back, words);
            prop_assert_eq!(used, bytes.len());
        }

        #[test]
        fn decoder_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_sentence(&bytes);
        }
    }
}
