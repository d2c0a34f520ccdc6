//! A RouterOS API client: login (plain, and the MD5 challenge of RouterOS < 6.43), commands
//! tagged with `.tag` so that several are in flight on one connection, and replies gathered per
//! command (`!re` rows, `!done`, `!trap`, `!empty`, `!fatal`).
//!
//! Round trips are counted: [`Connection::run`] sends a batch in one write and waits for every
//! reply, which is one round trip however many commands it holds.
//!
//! A broken reply stream kills the connection: any byte that is not an API word, a reply
//! without a tag or for a tag not in flight (tags are never reused, so a stray `!done` for an
//! earlier command is told apart from the next command's), a reply word the API does not have,
//! data the router sends unasked, a reply past the connection's [`Limits`], a read that times
//! out, the end of the stream, `!fatal`, or an exchange abandoned midway (its future dropped).
//! From then on every command fails with [`ApiError::Dead`] before a byte is written: what a
//! broken stream would answer cannot be matched to a command any more.
//!
//! It does not open the stream (TCP, TLS and their timeouts are the caller's), retry, or
//! reconnect: a connection that failed is dropped.
//!
//! # Warning
//! Sentences may hold a password (`/login`, `set =password=`); nothing here logs a sentence's
//! words, only its command, and the `Debug` output of [`Command`] and [`Reply`] shows a
//! password as `(sensitive)`. Errors quote at most the first bytes of a word the router sent,
//! with a password attribute's value hidden.

use std::collections::{BTreeMap, HashMap};
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use md5::{Digest, Md5};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::codec::{
    CodecError, Decoder, Redacted, Sentence, SentenceLimits, is_sensitive, redact_word,
};

/// Any byte stream a connection can run over (TCP, TLS).
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// What went wrong talking to a router.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The connection failed.
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    /// The router sent bytes that are not API words, or a sentence past the [`Limits`].
    #[error("protocol: {0}")]
    Codec(#[from] CodecError),
    /// `!fatal`: the router closes the connection.
    #[error("the router closed the connection: {0}")]
    Fatal(String),
    /// `!trap` on a command whose trap the caller did not expect.
    #[error("{command}: {message}")]
    Trap {
        /// The command word.
        command: String,
        /// The trap's category, when given.
        category: Option<u8>,
        /// The router's message.
        message: String,
    },
    /// Login refused.
    #[error("login failed: {0}")]
    Login(String),
    /// No reply in time.
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    /// A reply that makes no sense here.
    #[error("unexpected reply: {0}")]
    Protocol(String),
    /// A reply past one of the connection's [`Limits`].
    #[error("the reply to {command} is over the limit of {limit} {what}")]
    Limit {
        /// The command word.
        command: String,
        /// `rows` or `bytes`.
        what: &'static str,
        /// The limit.
        limit: usize,
    },
    /// A command that cannot be put on the wire (a word longer than the 4-byte length form):
    /// nothing was sent.
    #[error("the command cannot be encoded: {0}")]
    Unencodable(CodecError),
    /// The connection broke earlier (the reason): nothing was sent, and nothing will be.
    #[error("the connection broke earlier ({0}); nothing more is sent on it")]
    Dead(String),
}

impl ApiError {
    /// Whether the command may have reached the router: false only when nothing was written
    /// ([`ApiError::Dead`], [`ApiError::Unencodable`]). When true and the error came from
    /// [`Connection::run`], the command was sent and no (usable) answer came: whether it took
    /// effect is unknown.
    pub fn sent(&self) -> bool {
        !matches!(self, ApiError::Dead(_) | ApiError::Unencodable(_))
    }
}

/// Bounds on what a connection accepts of the router; a reply past one kills the connection
/// (see the module documentation). The defaults sit well above a real router holding 25,000
/// PPP secrets (a `/ppp/secret/print` of about 25,000 rows of some 20 words, about 500 bytes a
/// row, 12 MiB in all).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes in one word. Default 1 MiB (a comment, a script's source: kilobytes).
    pub max_word_bytes: usize,
    /// Words in one sentence. Default 4,096 (a row of the widest menus: about 100).
    pub max_sentence_words: usize,
    /// Bytes of one sentence, length prefixes included. Default 4 MiB.
    pub max_sentence_bytes: usize,
    /// `!re` rows in the reply to one command. Default 200,000 (8 times 25,000 secrets).
    pub max_reply_rows: usize,
    /// Bytes the reply to one command may take: as received, plus what holding each row
    /// costs beyond its bytes (8 bytes an attribute, 96 a row; see [`Row`]), so that this
    /// bounds the memory a reply takes. Default 48 MiB (about 3 times what 25,000 secrets
    /// take).
    pub max_reply_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_word_bytes: 1024 * 1024,
            max_sentence_words: 4_096,
            max_sentence_bytes: 4 * 1024 * 1024,
            max_reply_rows: 200_000,
            max_reply_bytes: 48 * 1024 * 1024,
        }
    }
}

impl Limits {
    /// What the decoder accepts of one sentence: no sentence may be longer than a whole reply.
    fn sentence(&self) -> SentenceLimits {
        SentenceLimits {
            max_word_bytes: self.max_word_bytes.min(crate::codec::MAX_WORD),
            max_words: self.max_sentence_words,
            max_bytes: self.max_sentence_bytes.min(self.max_reply_bytes),
        }
    }
}

/// What a [`Row`] costs beyond its names and values, counted against
/// [`Limits::max_reply_bytes`]: the row itself, its slot in the reply and allocation headers.
const ROW_COST: usize = 96;

/// What each attribute of a [`Row`] costs beyond its bytes (its span).
const ATTR_COST: usize = 8;

/// One `!re` row: attributes by name, held about as compactly as they came over the wire (one
/// text buffer and one span per attribute, not a string pair or a tree node each): a flood of
/// rows from a hostile router costs memory close to the bytes it sent, which
/// [`Limits::max_reply_bytes`] bounds. Attributes are kept in name order; one sent twice keeps
/// its last value, as a map would.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Row {
    /// Every name and value, one after the other: `name0 value0 name1 value1 ...`.
    text: Box<str>,
    /// For each attribute, where its name ends and where its value ends in `text` (its name
    /// starts where the previous value ends).
    ends: Box<[(u32, u32)]>,
}

impl Row {
    /// The value of attribute `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.find(key).ok().map(|i| self.value(i))
    }

    /// Whether the row has attribute `key`.
    pub fn contains_key(&self, key: &str) -> bool {
        self.find(key).is_ok()
    }

    /// Attributes in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        (0..self.ends.len()).map(|i| (self.key(i), self.value(i)))
    }

    /// How many attributes.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// No attribute at all.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    fn start(&self, i: usize) -> usize {
        if i == 0 {
            0
        } else {
            self.ends[i - 1].1 as usize
        }
    }

    fn key(&self, i: usize) -> &str {
        &self.text[self.start(i)..self.ends[i].0 as usize]
    }

    fn value(&self, i: usize) -> &str {
        &self.text[self.ends[i].0 as usize..self.ends[i].1 as usize]
    }

    fn find(&self, key: &str) -> Result<usize, usize> {
        let mut range = 0..self.ends.len();
        // A binary search by index: keys live in the buffer, not in a slice of their own.
        while range.start < range.end {
            let mid = range.start + (range.end - range.start) / 2;
            match self.key(mid).cmp(key) {
                std::cmp::Ordering::Equal => return Ok(mid),
                std::cmp::Ordering::Less => range.start = mid + 1,
                std::cmp::Ordering::Greater => range.end = mid,
            }
        }
        Err(range.start)
    }
}

impl<K: AsRef<str>, V: AsRef<str>> FromIterator<(K, V)> for Row {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut attrs: Vec<(K, V)> = iter.into_iter().collect();
        // Stable: of equal names the last received stays last, and is the one kept.
        attrs.sort_by(|a, b| a.0.as_ref().cmp(b.0.as_ref()));
        let bytes = attrs
            .iter()
            .map(|(k, v)| k.as_ref().len() + v.as_ref().len())
            .sum();
        let mut text = String::with_capacity(bytes);
        let mut ends: Vec<(u32, u32)> = Vec::with_capacity(attrs.len());
        for (i, (k, v)) in attrs.iter().enumerate() {
            let k = k.as_ref();
            if attrs.get(i + 1).is_some_and(|next| next.0.as_ref() == k) {
                continue;
            }
            text.push_str(k);
            let key_end = text.len();
            text.push_str(v.as_ref());
            // A sentence is bounded far below 4 GiB (Limits::max_sentence_bytes).
            ends.push((key_end as u32, text.len() as u32));
        }
        Row {
            text: text.into_boxed_str(),
            ends: ends.into_boxed_slice(),
        }
    }
}

impl std::ops::Index<&str> for Row {
    type Output = str;
    /// # Panics
    /// When the row has no such attribute.
    fn index(&self, key: &str) -> &str {
        self.get(key)
            .unwrap_or_else(|| panic!("the row has no attribute {key:?}"))
    }
}

/// A `!trap`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trap {
    /// Category 0..7, when the router gave one.
    pub category: Option<u8>,
    /// The message.
    pub message: String,
}

/// All replies to one command.
///
/// `Debug` shows a `password` attribute as `(sensitive)` (a print by a user with the
/// `sensitive` policy carries every password).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Reply {
    /// `!re` rows, attributes by name.
    pub rows: Vec<Row>,
    /// For each row, the attributes whose bytes were not UTF-8 (decoded as Windows-1252, see
    /// [`Sentence`]).
    pub not_utf8: Vec<std::collections::BTreeSet<String>>,
    /// Attributes of `!done` (such as `ret`).
    pub done: BTreeMap<String, String>,
    /// The `!trap`, if any.
    pub trap: Option<Trap>,
    /// The router answered `!empty` (RouterOS >= 7.18, a print with no rows).
    pub empty: bool,
}

impl Reply {
    /// The reply, or its trap as an error.
    pub fn ok(self, command: &str) -> Result<Reply, ApiError> {
        match self.trap {
            Some(t) => Err(ApiError::Trap {
                command: command.to_string(),
                category: t.category,
                message: t.message,
            }),
            None => Ok(self),
        }
    }
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rows: Vec<BTreeMap<&str, &str>> = self
            .rows
            .iter()
            .map(|row| {
                row.iter()
                    .map(|(k, v)| {
                        let v = if is_sensitive(k) { "(sensitive)" } else { v };
                        (k, v)
                    })
                    .collect()
            })
            .collect();
        f.debug_struct("Reply")
            .field("rows", &rows)
            .field("not_utf8", &self.not_utf8)
            .field("done", &self.done)
            .field("trap", &self.trap)
            .field("empty", &self.empty)
            .finish()
    }
}

/// One command: its words, without a tag (the connection adds one).
///
/// `Debug` shows the value of a `=password=` word as `(sensitive)`.
#[derive(Clone, PartialEq, Eq)]
pub struct Command {
    /// Command word then attributes and queries.
    pub words: Vec<String>,
}

impl Command {
    /// A command from words.
    pub fn new<S: Into<String>>(words: impl IntoIterator<Item = S>) -> Self {
        Command {
            words: words.into_iter().map(Into::into).collect(),
        }
    }
    /// The command word.
    pub fn head(&self) -> &str {
        self.words.first().map_or("", String::as_str)
    }
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Command")
            .field("words", &Redacted(&self.words))
            .finish()
    }
}

/// A router's word as an error may show it: its first 64 characters, a password hidden.
fn clipped(word: &str) -> String {
    let shown = redact_word(word);
    match shown.char_indices().nth(64) {
        Some((at, _)) => format!("{}...", &shown[..at]),
        None => shown.into_owned(),
    }
}

/// A router's word as an error quotes it ([`clipped`], in quotes).
fn quoted(word: &str) -> String {
    format!("{:?}", clipped(word))
}

/// The commands of one exchange still waiting for their `!done`, and what came for each.
struct InFlight {
    /// Tag -> index in the batch, for the commands not done yet.
    pending: HashMap<String, usize>,
    /// The command words, for errors.
    heads: Vec<String>,
    replies: Vec<Reply>,
    /// Bytes received for each command.
    bytes: Vec<usize>,
}

impl InFlight {
    /// Each command's reply once its `!done` came.
    fn answered(self) -> Vec<Option<Reply>> {
        let pending: std::collections::HashSet<usize> = self.pending.into_values().collect();
        self.replies
            .into_iter()
            .enumerate()
            .map(|(i, r)| (!pending.contains(&i)).then_some(r))
            .collect()
    }
}

/// An open API connection.
pub struct Connection {
    stream: Box<dyn Stream>,
    decoder: Decoder,
    next_tag: u64,
    timeout: Duration,
    limits: Limits,
    /// Why the connection is dead, once it is.
    dead: Option<String>,
    /// An exchange has begun and not finished: if it is still set when the next one starts,
    /// the earlier one was abandoned midway (its future dropped).
    busy: bool,
    round_trips: u64,
    sentences_sent: u64,
}

impl Connection {
    /// Wraps a connected stream with the default [`Limits`]; every wait (for the router to
    /// take a write, for the next bytes of a reply) is bounded by `timeout`.
    pub fn new(stream: impl Stream + 'static, timeout: Duration) -> Self {
        let limits = Limits::default();
        Connection {
            stream: Box::new(stream),
            decoder: Decoder::new(limits.sentence()),
            next_tag: 1,
            timeout,
            limits,
            dead: None,
            busy: false,
            round_trips: 0,
            sentences_sent: 0,
        }
    }

    /// The same connection bounded by `limits` (set before the first command).
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self.decoder = Decoder::new(limits.sentence());
        self
    }

    /// The bounds in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Why the connection is dead, once it is: every later command fails with
    /// [`ApiError::Dead`] without a byte written.
    pub fn broken(&self) -> Option<&str> {
        self.dead.as_deref()
    }

    /// Round trips so far.
    pub fn round_trips(&self) -> u64 {
        self.round_trips
    }

    /// Command sentences sent so far.
    pub fn sentences_sent(&self) -> u64 {
        self.sentences_sent
    }

    /// Logs in, as RouterOS >= 6.43 expects, falling back to the MD5 challenge when the first
    /// `!done` carries `=ret=`.
    pub async fn login(&mut self, user: &str, password: &str) -> Result<(), ApiError> {
        let first = self
            .call(Command::new([
                "/login".to_string(),
                format!("=name={user}"),
                format!("=password={password}"),
            ]))
            .await?;
        if let Some(t) = first.trap {
            return Err(ApiError::Login(t.message));
        }
        let Some(challenge) = first.done.get("ret") else {
            return Ok(());
        };
        let challenge = hex::decode(challenge)
            .map_err(|_| ApiError::Protocol("login challenge is not hex".into()))?;
        let mut md5 = Md5::new();
        md5.update([0u8]);
        md5.update(password.as_bytes());
        md5.update(&challenge);
        let response = format!("00{}", hex::encode(md5.finalize()));
        let second = self
            .call(Command::new([
                "/login".to_string(),
                format!("=name={user}"),
                format!("=response={response}"),
            ]))
            .await?;
        match second.trap {
            Some(t) => Err(ApiError::Login(t.message)),
            None => Ok(()),
        }
    }

    /// Runs one command and returns its reply (a trap is in the reply, not an error).
    pub async fn call(&mut self, command: Command) -> Result<Reply, ApiError> {
        let mut replies = self.run(vec![command]).await?;
        Ok(replies.remove(0))
    }

    /// Sends every command in one write, each with its own `.tag`, and waits for all replies:
    /// one round trip. Replies come back in the order of `commands`.
    ///
    /// On a dead connection it fails with [`ApiError::Dead`] and writes nothing; any error
    /// after the write kills the connection (see the module documentation).
    pub async fn run(&mut self, commands: Vec<Command>) -> Result<Vec<Reply>, ApiError> {
        match self.run_answered(commands).await {
            (_, Some(e)) => Err(e),
            (replies, None) => Ok(replies.into_iter().flatten().collect()),
        }
    }

    /// Like [`Connection::run`], keeping what was answered before an error: each command's
    /// reply once its `!done` came, `None` for the others, and the error if any (whether the
    /// unanswered commands were sent: [`ApiError::sent`]).
    pub async fn run_answered(
        &mut self,
        commands: Vec<Command>,
    ) -> (Vec<Option<Reply>>, Option<ApiError>) {
        let unanswered = vec![None; commands.len()];
        if let Some(why) = &self.dead {
            return (unanswered, Some(ApiError::Dead(why.clone())));
        }
        if self.busy {
            let e =
                ApiError::Protocol("an earlier exchange was abandoned before its replies".into());
            return (unanswered, Some(self.kill_unsent(e)));
        }
        if commands.is_empty() {
            return (Vec::new(), None);
        }
        let (bytes, mut flight) = match self.encode(&commands) {
            Ok(encoded) => encoded,
            Err(e) => return (unanswered, Some(e)),
        };
        if let Err(e) = self.check_quiet().await {
            return (unanswered, Some(self.kill_unsent(e)));
        }
        self.busy = true;
        let result = self.exchange(&bytes, &mut flight).await;
        self.busy = false;
        match result {
            Ok(()) if !self.decoder.is_idle() => self.kill(&ApiError::Protocol(
                "the router sent more than was asked".into(),
            )),
            Ok(()) => {}
            Err(e) => {
                self.kill(&e);
                return (flight.answered(), Some(e));
            }
        }
        (flight.answered(), None)
    }

    /// The batch on the wire, each command with a tag never used before on this connection.
    fn encode(&mut self, commands: &[Command]) -> Result<(Vec<u8>, InFlight), ApiError> {
        let mut out = Vec::new();
        let mut pending = HashMap::with_capacity(commands.len());
        for (i, c) in commands.iter().enumerate() {
            let tag = self.next_tag.to_string();
            self.next_tag += 1;
            let mut words = c.words.clone();
            words.push(format!(".tag={tag}"));
            out.extend(
                Sentence::new(words)
                    .encode()
                    .map_err(ApiError::Unencodable)?,
            );
            pending.insert(tag, i);
        }
        let flight = InFlight {
            pending,
            heads: commands.iter().map(|c| c.head().to_string()).collect(),
            replies: vec![Reply::default(); commands.len()],
            bytes: vec![0; commands.len()],
        };
        Ok((out, flight))
    }

    /// Marks the connection dead because of `e`.
    fn kill(&mut self, e: &ApiError) {
        if self.dead.is_none() {
            tracing::debug!("API connection dead: {e}");
            self.dead = Some(e.to_string());
        }
    }

    /// Marks the connection dead because of `e`, found before anything was sent: the caller's
    /// error says nothing was sent.
    fn kill_unsent(&mut self, e: ApiError) -> ApiError {
        self.kill(&e);
        ApiError::Dead(e.to_string())
    }

    /// Fails when the router has sent anything since the last exchange (bytes, the end of the
    /// stream): looked at without waiting.
    async fn check_quiet(&mut self) -> Result<(), ApiError> {
        if !self.decoder.is_idle() {
            return Err(ApiError::Protocol(
                "the router sent more than was asked".into(),
            ));
        }
        let mut chunk = [0u8; 512];
        let stream = &mut self.stream;
        let polled = std::future::poll_fn(|cx| {
            let mut buf = ReadBuf::new(&mut chunk);
            match Pin::new(&mut **stream).poll_read(cx, &mut buf) {
                Poll::Ready(r) => Poll::Ready(Some(r.map(|()| buf.filled().len()))),
                Poll::Pending => Poll::Ready(None),
            }
        })
        .await;
        match polled {
            None => Ok(()),
            Some(Ok(0)) => Err(closed()),
            Some(Ok(_)) => Err(ApiError::Protocol(
                "the router sent data nobody asked for".into(),
            )),
            Some(Err(e)) => Err(e.into()),
        }
    }

    /// Writes the batch and gathers every reply into `flight`.
    async fn exchange(&mut self, bytes: &[u8], flight: &mut InFlight) -> Result<(), ApiError> {
        let n = flight.heads.len();
        for head in &flight.heads {
            tracing::trace!(command = head.as_str(), "api send");
        }
        tokio::time::timeout(self.timeout, async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        })
        .await
        .map_err(|_| ApiError::Timeout(self.timeout))??;
        self.round_trips += 1;
        self.sentences_sent += n as u64;
        while !flight.pending.is_empty() {
            let (sentence, size) = self.read_sentence().await?;
            self.take(flight, &sentence, size)?;
        }
        Ok(())
    }

    /// Files one reply sentence under its command.
    fn take(&self, flight: &mut InFlight, s: &Sentence, size: usize) -> Result<(), ApiError> {
        if s.head() == "!fatal" {
            let reason = s.words.get(1).map(|w| clipped(w)).unwrap_or_default();
            return Err(ApiError::Fatal(reason));
        }
        let i = self.command_of(flight, s)?;
        let command = &flight.heads[i];
        // What holding the sentence costs: its bytes, and for a row the spans and slots that
        // keep it beyond them (see [`Row`]).
        let held = if s.head() == "!re" {
            size + ROW_COST + ATTR_COST * s.words.len()
        } else {
            size
        };
        flight.bytes[i] += held;
        if flight.bytes[i] > self.limits.max_reply_bytes {
            return Err(over(command, "bytes", self.limits.max_reply_bytes));
        }
        let reply = &mut flight.replies[i];
        let attrs = || -> Row { s.attrs().collect() };
        match s.head() {
            "!re" => {
                if reply.rows.len() >= self.limits.max_reply_rows {
                    return Err(over(command, "rows", self.limits.max_reply_rows));
                }
                reply.rows.push(attrs());
                reply
                    .not_utf8
                    .push(s.not_utf8_attrs().map(str::to_string).collect());
            }
            "!empty" => reply.empty = true,
            "!trap" => {
                let a = attrs();
                reply.trap = Some(Trap {
                    category: a.get("category").and_then(|c| c.parse().ok()),
                    message: a.get("message").unwrap_or_default().to_string(),
                });
            }
            "!done" => {
                reply.done = attrs()
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                // The sentence's tag is the command's (command_of found it in flight).
                if let Some(tag) = s.tag() {
                    flight.pending.remove(tag);
                }
            }
            other => {
                return Err(ApiError::Protocol(format!(
                    "reply word {} the API does not have",
                    quoted(other)
                )));
            }
        }
        Ok(())
    }

    /// The command a reply sentence is for: its tag must be one in flight.
    fn command_of(&self, flight: &InFlight, s: &Sentence) -> Result<usize, ApiError> {
        let Some(tag) = s.tag() else {
            return Err(ApiError::Protocol(format!(
                "{} without a tag",
                quoted(s.head())
            )));
        };
        if let Some(&i) = flight.pending.get(tag) {
            return Ok(i);
        }
        let earlier = tag.parse::<u64>().is_ok_and(|t| t < self.next_tag);
        Err(ApiError::Protocol(format!(
            "{} for {} tag {}",
            quoted(s.head()),
            if earlier {
                "a command already answered,"
            } else {
                "an unknown"
            },
            quoted(tag)
        )))
    }

    async fn read_sentence(&mut self) -> Result<(Sentence, usize), ApiError> {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            if let Some((words, used)) = self.decoder.next_sentence()? {
                return Ok((Sentence::from_raw(words), used));
            }
            let n = tokio::time::timeout(self.timeout, self.stream.read(&mut chunk))
                .await
                .map_err(|_| ApiError::Timeout(self.timeout))??;
            if n == 0 {
                return Err(closed());
            }
            self.decoder.feed(&chunk[..n]);
        }
    }
}

/// The router ended the stream.
fn closed() -> ApiError {
    ApiError::Io(std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        "the router closed the connection",
    ))
}

/// A reply over a limit.
fn over(command: &str, what: &'static str, limit: usize) -> ApiError {
    ApiError::Limit {
        command: command.to_string(),
        what,
        limit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{decode_sentence, encode_sentence};
    use tokio::io::{DuplexStream, duplex};
    use tokio::time::Instant;

    /// A scripted router: reads sentences, answers with canned replies echoing the tag.
    async fn scripted(
        mut io: tokio::io::DuplexStream,
        answers: Vec<Vec<Vec<&'static str>>>,
    ) -> Vec<Sentence> {
        let mut seen = Vec::new();
        let mut buf = Vec::new();
        for answer in answers {
            let s = loop {
                if let Some((w, used)) = decode_sentence(&buf).unwrap() {
                    buf.drain(..used);
                    break Sentence::from_raw(w);
                }
                let mut chunk = [0u8; 4096];
                let n = io.read(&mut chunk).await.unwrap();
                buf.extend_from_slice(&chunk[..n]);
            };
            let tag = s.tag().unwrap().to_string();
            seen.push(s);
            for mut words in answer {
                let t = format!(".tag={tag}");
                words.push(Box::leak(t.into_boxed_str()));
                io.write_all(&encode_sentence(&words).unwrap())
                    .await
                    .unwrap();
            }
        }
        seen
    }

    #[tokio::test]
    async fn legacy_login_answers_the_md5_challenge() {
        let (a, b) = duplex(4096);
        let router = tokio::spawn(scripted(
            b,
            vec![
                vec![vec!["!done", "=ret=ebddd18303a54111e2dea05a92ab46b4"]],
                vec![vec!["!done"]],
            ],
        ));
        let mut c = Connection::new(a, Duration::from_secs(2));
        c.login("admin", "").await.unwrap();
        let seen = router.await.unwrap();
        // md5(0x00 + "" + challenge) for an empty password, as librouteros computes it.
        let resp = seen[1].attr("response").unwrap();
        let mut md5 = Md5::new();
        md5.update([0u8]);
        md5.update(hex::decode("ebddd18303a54111e2dea05a92ab46b4").unwrap());
        assert_eq!(resp, format!("00{}", hex::encode(md5.finalize())));
        assert_eq!(c.round_trips(), 2);
    }

    #[tokio::test]
    async fn traps_empty_and_rows_are_gathered_per_tag() {
        let (a, b) = duplex(4096);
        let router = tokio::spawn(scripted(
            b,
            vec![
                vec![
                    vec!["!re", "=name=a"],
                    vec!["!re", "=name=b"],
                    vec!["!done"],
                ],
                vec![vec!["!empty"], vec!["!done"]],
                vec![
                    vec!["!trap", "=category=1", "=message=failure: x"],
                    vec!["!done"],
                ],
            ],
        ));
        let mut c = Connection::new(a, Duration::from_secs(2));
        let r = c
            .run(vec![
                Command::new(["/ppp/secret/print"]),
                Command::new(["/ppp/active/print"]),
                Command::new(["/ppp/secret/add", "=name=x"]),
            ])
            .await
            .unwrap();
        router.await.unwrap();
        assert_eq!(r[0].rows.len(), 2);
        assert!(r[1].empty && r[1].rows.is_empty());
        assert_eq!(r[2].trap.as_ref().unwrap().category, Some(1));
        assert_eq!(c.round_trips(), 1);
        let e = r[2].clone().ok("/ppp/secret/add").unwrap_err();
        assert_eq!(e.to_string(), "/ppp/secret/add: failure: x");
    }

    /// On tokio's paused clock: the silent router's timeout passes in virtual time.
    #[tokio::test(start_paused = true)]
    async fn fatal_and_silence_are_errors() {
        let (a, b) = duplex(4096);
        tokio::spawn(async move {
            let mut b = b;
            let mut chunk = [0u8; 256];
            let _ = b.read(&mut chunk).await;
            b.write_all(&encode_sentence(&["!fatal", "session terminated"]).unwrap())
                .await
                .unwrap();
        });
        let mut c = Connection::new(a, Duration::from_secs(2));
        let e = c.call(Command::new(["/quit"])).await.unwrap_err();
        assert!(
            matches!(e, ApiError::Fatal(ref r) if r == "session terminated"),
            "{e}"
        );

        let (a, _b) = duplex(4096);
        let mut c = Connection::new(a, Duration::from_millis(50));
        let e = c
            .call(Command::new(["/ppp/secret/print"]))
            .await
            .unwrap_err();
        assert!(matches!(e, ApiError::Timeout(_)), "{e}");
    }

    #[test]
    fn the_password_is_not_in_debug_output_of_errors() {
        let e = ApiError::Login("cannot log in".into());
        assert_eq!(e.to_string(), "login failed: cannot log in");
    }

    #[test]
    fn commands_and_replies_hide_passwords_in_debug_output() {
        let c = Command::new(["/ppp/secret/set", "=.id=*1", "=password=Zq9x-pw"]);
        let shown = format!("{c:?}");
        assert!(!shown.contains("Zq9x"), "{shown}");
        assert!(shown.contains("=password=(sensitive)"), "{shown}");
        let r = Reply {
            rows: vec![
                [("name", "juan"), ("password", "Zq9x-pw")]
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ],
            ..Reply::default()
        };
        let shown = format!("{r:?}");
        assert!(!shown.contains("Zq9x"), "{shown}");
        assert!(
            shown.contains("\"juan\"") && shown.contains("(sensitive)"),
            "{shown}"
        );
    }

    // -----------------------------------------------------------------------------------------
    // Broken reply streams: the connection dies, and nothing more is written
    // -----------------------------------------------------------------------------------------

    fn sentence(words: &[&str]) -> Vec<u8> {
        encode_sentence(words).unwrap()
    }

    /// One command as the router reads it; `None` at the end of the stream.
    async fn read_command(io: &mut DuplexStream, buf: &mut Vec<u8>) -> Option<Sentence> {
        loop {
            if let Some((w, used)) = decode_sentence(buf).unwrap() {
                buf.drain(..used);
                return Some(Sentence::from_raw(w));
            }
            let mut chunk = [0u8; 4096];
            let n = io.read(&mut chunk).await.unwrap_or(0);
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// What a breaking router answers, given the command's tag and the previous command's.
    type Break = fn(&str, &str) -> Vec<u8>;

    /// A router that answers `!done` to every command before command number `at` (from 0),
    /// answers that one with `broken`, and returns every byte it receives after that answer,
    /// up to the end of the stream (the client dropped).
    async fn breaking_router(mut io: DuplexStream, at: usize, broken: Break) -> Vec<u8> {
        let mut buf = Vec::new();
        let mut previous = "0".to_string();
        for i in 0.. {
            let Some(cmd) = read_command(&mut io, &mut buf).await else {
                return buf;
            };
            let tag = cmd.tag().unwrap().to_string();
            if i == at {
                let _ = io.write_all(&broken(&tag, &previous)).await;
                let mut after = std::mem::take(&mut buf);
                let _ = io.read_to_end(&mut after).await;
                return after;
            }
            io.write_all(&sentence(&["!done", &format!(".tag={tag}")]))
                .await
                .unwrap();
            previous = tag;
        }
        unreachable!()
    }

    /// What the client saw: the answer to the breaking command, then to the next one, and the
    /// bytes the router received after its broken answer.
    struct Broken {
        first: Result<Reply, ApiError>,
        next: Result<Reply, ApiError>,
        after: Vec<u8>,
    }

    /// `at` good commands, then the one the router breaks, then one more.
    async fn break_at(at: usize, broken: Break, limits: Limits) -> Broken {
        let (a, b) = duplex(1 << 16);
        let router = tokio::spawn(breaking_router(b, at, broken));
        let mut c = Connection::new(a, Duration::from_secs(2)).with_limits(limits);
        for _ in 0..at {
            c.call(Command::new(["/ppp/profile/print"])).await.unwrap();
        }
        let first = c.call(Command::new(["/ppp/secret/set", "=.id=*1"])).await;
        let next = c
            .call(Command::new(["/ppp/active/remove", "=.id=*2"]))
            .await;
        drop(c);
        Broken {
            first,
            next,
            after: router.await.unwrap(),
        }
    }

    /// The second command failed as dead, and the router received nothing after the break.
    #[track_caller]
    fn assert_dead_and_silent(name: &str, b: &Broken) {
        assert!(
            matches!(&b.next, Err(e @ ApiError::Dead(_)) if !e.sent()),
            "{name}: the next command was not refused as dead: {:?}",
            b.next
        );
        assert!(
            b.after.is_empty(),
            "{name}: {} byte(s) written after the broken read: {:?}",
            b.after.len(),
            String::from_utf8_lossy(&b.after)
        );
    }

    /// Every broken reply stream of issue 10, each on a paused clock (a timeout passes in
    /// virtual time).
    #[tokio::test(start_paused = true)]
    async fn a_broken_reply_stream_kills_the_connection_and_nothing_more_is_written() {
        type Check = fn(&ApiError) -> bool;
        let cases: &[(&str, usize, Break, Check)] = &[
            (
                "reserved length prefix",
                0,
                |_, _| vec![0xF8, 1, 2, 3],
                |e| matches!(e, ApiError::Codec(CodecError::Reserved(0xF8))),
            ),
            (
                "4 GB length claim",
                0,
                |_, _| vec![0xF0, 0xFF, 0xFF, 0xFF, 0xFF, b'x'],
                |e| matches!(e, ApiError::Codec(CodecError::TooLong(0xFFFF_FFFF))),
            ),
            (
                "unknown tag",
                1,
                |_, _| sentence(&["!done", ".tag=999"]),
                |e| e.to_string().contains("an unknown tag \"999\""),
            ),
            (
                "no tag",
                0,
                |_, _| sentence(&["!done"]),
                |e| e.to_string().contains("\"!done\" without a tag"),
            ),
            (
                "unknown reply word",
                0,
                |tag, _| sentence(&["!what", &format!(".tag={tag}")]),
                |e| e.to_string().contains("reply word \"!what\""),
            ),
            (
                "stray !done for an earlier tag",
                2,
                |tag, previous| {
                    let mut out = sentence(&["!done", &format!(".tag={previous}")]);
                    out.extend(sentence(&["!done", &format!(".tag={tag}")]));
                    out
                },
                |e| e.to_string().contains("already answered"),
            ),
            (
                "!re for an earlier tag",
                1,
                |_, previous| sentence(&["!re", &format!(".tag={previous}"), "=name=x"]),
                |e| e.to_string().contains("already answered"),
            ),
            (
                "a silent router",
                0,
                |_, _| Vec::new(),
                |e| matches!(e, ApiError::Timeout(_)),
            ),
            (
                "!fatal",
                0,
                |_, _| sentence(&["!fatal", "out of memory"]),
                |e| matches!(e, ApiError::Fatal(r) if r.contains("out of memory")),
            ),
            (
                "an empty sentence",
                0,
                |_, _| vec![0],
                |e| e.to_string().contains("without a tag"),
            ),
        ];
        for (name, at, broken, check) in cases {
            let b = break_at(*at, *broken, Limits::default()).await;
            match &b.first {
                Err(e) => assert!(check(e) && e.sent(), "{name}: {e}"),
                Ok(r) => panic!("{name}: answered {r:?}"),
            }
            assert_dead_and_silent(name, &b);
        }
    }

    /// Bytes after a complete answer (in the same read): the answer stands, the connection is
    /// dead.
    #[tokio::test(start_paused = true)]
    async fn anything_after_the_last_answer_kills_the_connection() {
        let cases: &[(&str, Break)] = &[
            ("garbage", |tag, _| {
                let mut out = sentence(&["!done", &format!(".tag={tag}")]);
                out.extend([0xF0, 0xFF, 0xFF, 0xFF, 0xFF, 0xF8]);
                out
            }),
            ("a stray !done after the answer", |tag, _| {
                let mut out = sentence(&["!done", &format!(".tag={tag}")]);
                out.extend(sentence(&["!done", &format!(".tag={tag}")]));
                out
            }),
            ("!trap after !done", |tag, _| {
                let mut out = sentence(&["!done", &format!(".tag={tag}")]);
                out.extend(sentence(&["!trap", &format!(".tag={tag}"), "=message=x"]));
                out
            }),
        ];
        for (name, broken) in cases {
            let b = break_at(1, *broken, Limits::default()).await;
            assert!(b.first.is_ok(), "{name}: {:?}", b.first);
            assert_dead_and_silent(name, &b);
        }
    }

    /// A stray sentence that arrives after the exchange ended, before the next command: seen
    /// before that command is written.
    #[tokio::test(start_paused = true)]
    async fn data_sent_unasked_between_commands_is_seen_before_the_next_write() {
        let (a, mut b) = duplex(4096);
        let router = tokio::spawn(async move {
            let mut buf = Vec::new();
            let cmd = read_command(&mut b, &mut buf).await.unwrap();
            let tag = cmd.tag().unwrap().to_string();
            b.write_all(&sentence(&["!done", &format!(".tag={tag}")]))
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_secs(1)).await;
            b.write_all(&sentence(&["!done", &format!(".tag={tag}")]))
                .await
                .unwrap();
            let mut after = buf;
            let _ = b.read_to_end(&mut after).await;
            after
        });
        let mut c = Connection::new(a, Duration::from_secs(5));
        c.call(Command::new(["/ppp/secret/print"])).await.unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let e = c
            .call(Command::new(["/ppp/secret/remove", "=.id=*1"]))
            .await
            .unwrap_err();
        assert!(
            matches!(e, ApiError::Dead(ref why) if why.contains("unasked") || why.contains("nobody asked")),
            "{e}"
        );
        assert!(!e.sent());
        drop(c);
        assert!(router.await.unwrap().is_empty(), "the remove was written");
    }

    /// The end of the stream, seen before the next write.
    #[tokio::test(start_paused = true)]
    async fn a_router_that_hung_up_gets_nothing_more() {
        let (a, mut b) = duplex(4096);
        let router = tokio::spawn(async move {
            let mut buf = Vec::new();
            read_command(&mut b, &mut buf).await.unwrap();
            drop(b);
        });
        let mut c = Connection::new(a, Duration::from_secs(5));
        let e = c
            .call(Command::new(["/ppp/secret/print"]))
            .await
            .unwrap_err();
        assert!(matches!(e, ApiError::Io(_)) && e.sent(), "{e}");
        router.await.unwrap();
        let e = c.call(Command::new(["/quit"])).await.unwrap_err();
        assert!(matches!(e, ApiError::Dead(_)), "{e}");
    }

    /// An exchange whose future was dropped midway (a caller's own deadline): the connection
    /// is dead, its late answer is never taken for the next command's.
    #[tokio::test(start_paused = true)]
    async fn an_exchange_abandoned_midway_kills_the_connection() {
        let (a, b) = duplex(4096);
        let router = tokio::spawn(breaking_router(b, 0, |_, _| Vec::new()));
        let mut c = Connection::new(a, Duration::from_secs(30));
        let abandoned = tokio::time::timeout(
            Duration::from_secs(1),
            c.call(Command::new(["/ppp/secret/print"])),
        )
        .await;
        assert!(abandoned.is_err(), "the silent router answered");
        let e = c
            .call(Command::new(["/ppp/secret/remove"]))
            .await
            .unwrap_err();
        assert!(
            matches!(e, ApiError::Dead(ref why) if why.contains("abandoned")),
            "{e}"
        );
        drop(c);
        assert!(router.await.unwrap().is_empty());
    }

    /// A batch whose stream breaks midway: the commands answered in full keep their replies,
    /// the others have none, and the error says they were sent.
    #[tokio::test(start_paused = true)]
    async fn a_batch_broken_midway_keeps_what_was_answered() {
        let (a, mut b) = duplex(4096);
        tokio::spawn(async move {
            let mut buf = Vec::new();
            let mut tags = Vec::new();
            for _ in 0..3 {
                let cmd = read_command(&mut b, &mut buf).await.unwrap();
                tags.push(cmd.tag().unwrap().to_string());
            }
            let mut out = sentence(&["!done", &format!(".tag={}", tags[0]), "=ret=*9"]);
            out.extend(sentence(&["!re", &format!(".tag={}", tags[1]), "=name=x"]));
            out.extend([0xF8]);
            b.write_all(&out).await.unwrap();
            let _ = b.read_to_end(&mut buf).await;
        });
        let mut c = Connection::new(a, Duration::from_secs(2));
        let (replies, e) = c
            .run_answered(vec![
                Command::new(["/ppp/secret/add", "=name=a"]),
                Command::new(["/ppp/secret/print"]),
                Command::new(["/ppp/secret/add", "=name=b"]),
            ])
            .await;
        assert_eq!(replies.len(), 3);
        assert_eq!(replies[0].as_ref().unwrap().done["ret"], "*9");
        assert!(replies[1].is_none() && replies[2].is_none());
        let e = e.unwrap();
        assert!(e.sent() && matches!(e, ApiError::Codec(_)), "{e}");
        let (replies, e) = c.run_answered(vec![Command::new(["/x"])]).await;
        assert!(replies[0].is_none());
        assert!(matches!(e, Some(ApiError::Dead(_))));
    }

    /// Tags are never reused: the tag of each command is new on the connection.
    #[tokio::test]
    async fn tags_are_never_reused_on_a_connection() {
        let (a, b) = duplex(4096);
        let router = tokio::spawn(scripted(
            b,
            vec![
                vec![vec!["!done"]],
                vec![vec!["!done"]],
                vec![vec!["!done"]],
            ],
        ));
        let mut c = Connection::new(a, Duration::from_secs(2));
        c.call(Command::new(["/a"])).await.unwrap();
        c.run(vec![Command::new(["/b"]), Command::new(["/c"])])
            .await
            .unwrap();
        let seen = router.await.unwrap();
        let tags: Vec<&str> = seen.iter().map(|s| s.tag().unwrap()).collect();
        assert_eq!(tags, ["1", "2", "3"]);
    }

    // -----------------------------------------------------------------------------------------
    // Limits
    // -----------------------------------------------------------------------------------------

    #[tokio::test(start_paused = true)]
    async fn a_reply_over_a_limit_kills_the_connection() {
        type Check = fn(&ApiError) -> bool;
        let cases: &[(&str, Limits, Break, Check)] = &[
            (
                "rows",
                Limits {
                    max_reply_rows: 3,
                    ..Limits::default()
                },
                |tag, _| {
                    let t = format!(".tag={tag}");
                    let mut out = Vec::new();
                    for _ in 0..4 {
                        out.extend(sentence(&["!re", &t, "=name=x"]));
                    }
                    out.extend(sentence(&["!done", &t]));
                    out
                },
                |e| e.to_string() == "the reply to /ppp/secret/set is over the limit of 3 rows",
            ),
            (
                "reply bytes",
                Limits {
                    max_reply_bytes: 100,
                    ..Limits::default()
                },
                |tag, _| {
                    let t = format!(".tag={tag}");
                    let mut out = Vec::new();
                    for _ in 0..10 {
                        out.extend(sentence(&["!re", &t, "=name=0123456789"]));
                    }
                    out
                },
                |e| {
                    matches!(
                        e,
                        ApiError::Limit {
                            what: "bytes",
                            limit: 100,
                            ..
                        }
                    )
                },
            ),
            (
                "words in a sentence",
                Limits {
                    max_sentence_words: 3,
                    ..Limits::default()
                },
                |tag, _| sentence(&["!re", &format!(".tag={tag}"), "=a=1", "=b=2"]),
                |e| matches!(e, ApiError::Codec(CodecError::TooManyWords { limit: 3 })),
            ),
            (
                "bytes in a sentence",
                Limits {
                    max_sentence_bytes: 64,
                    ..Limits::default()
                },
                |tag, _| {
                    sentence(&[
                        "!re",
                        &format!(".tag={tag}"),
                        &format!("={}=", "x".repeat(70)),
                    ])
                },
                |e| {
                    matches!(
                        e,
                        ApiError::Codec(CodecError::SentenceOverLimit { limit: 64 })
                    )
                },
            ),
        ];
        for (name, limits, broken, check) in cases {
            let b = break_at(0, *broken, *limits).await;
            match &b.first {
                Err(e) => assert!(check(e), "{name}: {e}"),
                Ok(r) => panic!("{name}: answered {r:?}"),
            }
            assert_dead_and_silent(name, &b);
        }
    }

    /// A length prefix announcing a word over the limit fails as soon as the prefix is read: the
    /// client neither waits for the word (the router sends nothing more) nor allocates it.
    #[tokio::test(start_paused = true)]
    async fn a_word_announced_over_the_limit_fails_at_once() {
        let b = break_at(
            0,
            |_, _| vec![0xE0, 0xA0, 0x00, 0x00], // 10 MiB announced, nothing follows
            Limits {
                max_word_bytes: 1024,
                ..Limits::default()
            },
        )
        .await;
        let e = b.first.as_ref().unwrap_err();
        assert!(
            matches!(
                e,
                ApiError::Codec(CodecError::WordOverLimit {
                    len: 0xA0_0000,
                    limit: 1024
                })
            ),
            "{e}"
        );
        assert_dead_and_silent("word over the limit", &b);
        // Not a timeout in disguise: no virtual time passed.
        let (a, b) = duplex(64);
        tokio::spawn(breaking_router(b, 0, |_, _| vec![0xE0, 0xA0, 0x00, 0x00]));
        let mut c = Connection::new(a, Duration::from_secs(2)).with_limits(Limits {
            max_word_bytes: 1024,
            ..Limits::default()
        });
        let start = Instant::now();
        c.call(Command::new(["/x"])).await.unwrap_err();
        assert_eq!(start.elapsed(), Duration::ZERO);
    }

    #[test]
    fn default_limits_hold_a_router_of_25000_secrets() {
        let l = Limits::default();
        assert!(l.max_reply_rows >= 8 * 25_000);
        // A real row: about 20 words and 500 bytes on the wire, held with its row and spans.
        let real_row = 500 + ROW_COST + 21 * ATTR_COST;
        assert!(l.max_reply_bytes >= 2 * 25_000 * real_row);
        assert!(l.max_sentence_bytes <= l.max_reply_bytes);
        assert!(l.max_word_bytes <= l.max_sentence_bytes);
    }

    #[test]
    fn errors_quote_little_of_what_the_router_sent_and_no_password() {
        let q = quoted(&format!("=password=Zq9x{}", "y".repeat(500)));
        assert!(!q.contains("Zq9x") && q.len() < 80, "{q}");
        assert_eq!(quoted("!what"), "\"!what\"");
    }
}

#[cfg(test)]
mod row_tests {
    use super::Row;

    #[test]
    fn a_row_is_a_map_in_name_order_and_a_repeated_name_keeps_its_last_value() {
        let row: Row = [
            ("name", "juan"),
            (".id", "*1"),
            ("name", "juan2"),
            ("comment", ""),
        ]
        .into_iter()
        .collect();
        assert_eq!(row.len(), 3);
        assert_eq!(row.get("name"), Some("juan2"));
        assert_eq!(&row[".id"], "*1");
        assert_eq!(row.get("comment"), Some(""));
        assert_eq!(row.get("absent"), None);
        assert!(row.contains_key(".id") && !row.contains_key("nam"));
        let keys: Vec<&str> = row.iter().map(|(k, _)| k).collect();
        assert_eq!(keys, [".id", "comment", "name"]);
    }

    #[test]
    fn a_row_costs_about_its_bytes() {
        let row: Row = (0..20)
            .map(|i| (format!("attribute-{i}"), format!("value-{i}")))
            .collect();
        let payload: usize = row.iter().map(|(k, v)| k.len() + v.len()).sum();
        // Exactly the names and values, plus 8 bytes of spans per attribute: no per-attribute
        // allocation.
        assert_eq!(row.text.len(), payload);
        assert_eq!(std::mem::size_of_val(&*row.ends), 20 * 8);
    }
}
