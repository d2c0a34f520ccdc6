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
//! A stream is decoded by a [`Decoder`]: fed the bytes as they arrive, it looks at each byte
//! once (a long sentence arriving in many reads is not parsed again from its start on every
//! read) and holds no more than [`SentenceLimits`] allow of a sentence not yet complete; a
//! length prefix claiming more than the limit fails at once, before anything is allocated for
//! it. [`decode_sentence`] decodes one sentence from a buffer, for callers that hold one.
//!
//! No I/O here: reading and writing a stream is the [`crate::client`]'s (and the server's).

use std::collections::VecDeque;

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
    /// A length prefix announcing a word longer than [`SentenceLimits::max_word_bytes`].
    #[error("a word of {len} bytes announced, over the limit of {limit} bytes")]
    WordOverLimit {
        /// The length announced.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// A sentence with more words than [`SentenceLimits::max_words`].
    #[error("a sentence of more than {limit} words")]
    TooManyWords {
        /// The limit.
        limit: usize,
    },
    /// A sentence longer than [`SentenceLimits::max_bytes`] (announced or received).
    #[error("a sentence of more than {limit} bytes")]
    SentenceOverLimit {
        /// The limit.
        limit: usize,
    },
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

/// Bounds on one sentence a [`Decoder`] accepts; a stream past one is a [`CodecError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SentenceLimits {
    /// Bytes in one word (at most [`MAX_WORD`]).
    pub max_word_bytes: usize,
    /// Words in one sentence.
    pub max_words: usize,
    /// Bytes of one sentence, length prefixes included.
    pub max_bytes: usize,
}

impl Default for SentenceLimits {
    /// [`MAX_WORD`] per word, 65,536 words and 64 MiB per sentence: a bound against a peer
    /// announcing gigabytes, far above what a router sends. A client sets tighter ones.
    fn default() -> Self {
        SentenceLimits {
            max_word_bytes: MAX_WORD,
            max_words: 65_536,
            max_bytes: 64 * 1024 * 1024,
        }
    }
}

/// What a decoder reads next.
#[derive(Debug)]
enum Reading {
    /// A length prefix: its bytes so far.
    Length { bytes: [u8; 5], have: usize },
    /// A word body of `len` bytes: its bytes so far.
    Word { len: usize, bytes: Vec<u8> },
}

impl Default for Reading {
    fn default() -> Self {
        Reading::Length {
            bytes: [0; 5],
            have: 0,
        }
    }
}

/// Decodes a stream of sentences as its bytes arrive, in linear time: every byte fed is looked
/// at once, however many reads a sentence takes (the words already complete are kept, the
/// word being read grows as its bytes come). Sentences come out in order, each with the
/// number of bytes it took; an error comes out after the sentences before it, and the decoder
/// stays failed.
///
/// What it holds of a sentence not yet complete is bounded by its [`SentenceLimits`]; a
/// length prefix announcing more fails at once, before anything is allocated for it.
#[derive(Debug)]
pub struct Decoder {
    limits: SentenceLimits,
    reading: Reading,
    /// The complete words of the sentence being read.
    words: Vec<Vec<u8>>,
    /// Bytes of the sentence being read so far, prefixes included.
    sentence_bytes: usize,
    ready: VecDeque<Decoded>,
    failed: Option<CodecError>,
    examined: u64,
}

impl Decoder {
    /// A decoder bounded by `limits`.
    pub fn new(limits: SentenceLimits) -> Self {
        Decoder {
            limits,
            reading: Reading::default(),
            words: Vec::new(),
            sentence_bytes: 0,
            ready: VecDeque::new(),
            failed: None,
            examined: 0,
        }
    }

    /// Decodes `input`, the next bytes of the stream. Bytes after an error are ignored.
    pub fn feed(&mut self, mut input: &[u8]) {
        while !input.is_empty() && self.failed.is_none() {
            let used = match self.step(input) {
                Ok(used) => used,
                Err(e) => {
                    self.failed = Some(e);
                    break;
                }
            };
            self.examined += used as u64;
            input = &input[used..];
        }
    }

    /// The next decoded sentence and its size in bytes; `Ok(None)` when more bytes are needed;
    /// the stream's error once every sentence before it is taken.
    pub fn next_sentence(&mut self) -> Result<Option<Decoded>, CodecError> {
        if let Some(s) = self.ready.pop_front() {
            return Ok(Some(s));
        }
        match &self.failed {
            Some(e) => Err(e.clone()),
            None => Ok(None),
        }
    }

    /// Whether nothing is pending: no sentence waiting to be taken, none begun, no error.
    pub fn is_idle(&self) -> bool {
        self.ready.is_empty()
            && self.failed.is_none()
            && self.words.is_empty()
            && matches!(self.reading, Reading::Length { have: 0, .. })
    }

    /// Bytes decoded so far: each byte fed is counted once, when it is looked at.
    pub fn bytes_examined(&self) -> u64 {
        self.examined
    }

    /// Decodes from the start of `input`; returns how many bytes were used (at least one).
    fn step(&mut self, input: &[u8]) -> Result<usize, CodecError> {
        match &mut self.reading {
            Reading::Length { bytes, have } => {
                bytes[*have] = input[0];
                *have += 1;
                let Some((len, size)) = decode_length(&bytes[..*have])? else {
                    return Ok(1);
                };
                self.sentence_bytes += size;
                self.reading = Reading::default();
                self.start_word(len)?;
                Ok(1)
            }
            Reading::Word { len, bytes } => {
                let take = (*len - bytes.len()).min(input.len());
                bytes.extend_from_slice(&input[..take]);
                if bytes.len() == *len {
                    let word = std::mem::take(bytes);
                    self.reading = Reading::default();
                    self.words.push(word);
                }
                Ok(take)
            }
        }
    }

    /// A length prefix of `len` was read: the end of the sentence, or a word to read.
    fn start_word(&mut self, len: usize) -> Result<(), CodecError> {
        let limits = self.limits;
        if len == 0 {
            let words = std::mem::take(&mut self.words);
            self.ready
                .push_back((words, std::mem::take(&mut self.sentence_bytes)));
            return Ok(());
        }
        if len > limits.max_word_bytes {
            return Err(CodecError::WordOverLimit {
                len,
                limit: limits.max_word_bytes,
            });
        }
        if self.words.len() >= limits.max_words {
            return Err(CodecError::TooManyWords {
                limit: limits.max_words,
            });
        }
        // The announced word, and the empty word that ends the sentence, must fit.
        self.sentence_bytes += len;
        if self.sentence_bytes >= limits.max_bytes {
            return Err(CodecError::SentenceOverLimit {
                limit: limits.max_bytes,
            });
        }
        // Grows as the bytes arrive: an announcement alone allocates little.
        self.reading = Reading::Word {
            len,
            bytes: Vec::with_capacity(len.min(64 * 1024)),
        };
        Ok(())
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

    /// Feeds `bytes` in pieces of `piece` bytes; the sentences decoded, then the error if any.
    fn decode_in_pieces(
        bytes: &[u8],
        piece: usize,
        limits: SentenceLimits,
    ) -> (Vec<Decoded>, Option<CodecError>, Decoder) {
        let mut d = Decoder::new(limits);
        let mut out = Vec::new();
        for chunk in bytes.chunks(piece.max(1)) {
            d.feed(chunk);
            loop {
                match d.next_sentence() {
                    Ok(Some(s)) => out.push(s),
                    Ok(None) => break,
                    Err(e) => return (out, Some(e), d),
                }
            }
        }
        (out, None, d)
    }

    /// Linear decoding, checked structurally: a 256 KiB sentence fed one byte at a time has
    /// each byte looked at once (re-parsing a partial sentence from its start on every read
    /// would look at some 34 billion).
    #[test]
    fn a_long_sentence_arriving_byte_by_byte_is_decoded_in_one_pass() {
        let big = vec![b'x'; 256 * 1024];
        let words: Vec<&[u8]> = vec![b"!re", b".tag=1", &big, b"=name=juan"];
        let bytes = encode_sentence(&words).unwrap();
        let (out, err, d) = decode_in_pieces(&bytes, 1, SentenceLimits::default());
        assert_eq!(err, None);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].1, bytes.len());
        assert_eq!(out[0].0, words);
        assert_eq!(d.bytes_examined(), bytes.len() as u64);
        assert!(d.is_idle());
    }

    #[test]
    fn a_length_claim_over_the_limit_fails_before_its_bytes_arrive() {
        let limits = SentenceLimits {
            max_word_bytes: 1024,
            ..SentenceLimits::default()
        };
        // A sentence before it comes out first; then the error, for good.
        let mut bytes = encode_sentence(&["!done", ".tag=1"]).unwrap();
        bytes.extend([0xC0, 0x40, 0x00]); // 16 KiB announced, nothing follows
        let (out, err, mut d) = decode_in_pieces(&bytes, bytes.len(), limits);
        assert_eq!(out.len(), 1);
        assert_eq!(
            err,
            Some(CodecError::WordOverLimit {
                len: 0x4000,
                limit: 1024
            })
        );
        d.feed(&encode_sentence(&["!done"]).unwrap());
        assert!(d.next_sentence().is_err(), "a failed decoder stays failed");
        assert!(!d.is_idle());
        // A 4 GB claim fails whatever the limits.
        let (_, err, _) = decode_in_pieces(&[0xF0, 0xFF, 0xFF, 0xFF, 0xFF], 1, limits);
        assert_eq!(err, Some(CodecError::TooLong(0xFFFF_FFFF)));
    }

    #[test]
    fn sentence_limits_count_words_and_bytes() {
        let limits = SentenceLimits {
            max_word_bytes: 1024,
            max_words: 2,
            max_bytes: 40,
        };
        let (out, err, _) =
            decode_in_pieces(&encode_sentence(&["!re", "=a=1"]).unwrap(), 3, limits);
        assert_eq!((out.len(), err), (1, None));
        let (_, err, _) = decode_in_pieces(
            &encode_sentence(&["!re", "=a=1", "=b=2"]).unwrap(),
            3,
            limits,
        );
        assert_eq!(err, Some(CodecError::TooManyWords { limit: 2 }));
        let (_, err, _) = decode_in_pieces(
            &encode_sentence(&["!re", &"y".repeat(40)]).unwrap(),
            3,
            limits,
        );
        assert_eq!(err, Some(CodecError::SentenceOverLimit { limit: 40 }));
    }

    proptest! {
        /// However the bytes are cut into reads, the decoder finds what a whole-buffer decode
        /// finds, looking at each byte once.
        #[test]
        fn the_decoder_agrees_with_a_whole_buffer_decode(
            sentences in prop::collection::vec(
                prop::collection::vec(prop::collection::vec(any::<u8>(), 1..300), 0..6),
                1..5,
            ),
            piece in 1usize..700,
        ) {
            let mut bytes = Vec::new();
            for s in &sentences {
                bytes.extend(encode_sentence(s).unwrap());
            }
            let (out, err, d) = decode_in_pieces(&bytes, piece, SentenceLimits::default());
            prop_assert_eq!(err, None);
            let words: Vec<Vec<Vec<u8>>> = out.into_iter().map(|(w, _)| w).collect();
            prop_assert_eq!(words, sentences);
            prop_assert_eq!(d.bytes_examined(), bytes.len() as u64);
        }

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
