//! A RouterOS API client: login (plain, and the MD5 challenge of RouterOS < 6.43), commands
//! tagged with `.tag` so that several are in flight on one connection, and replies gathered per
//! command (`!re` rows, `!done`, `!trap`, `!empty`, `!fatal`).
//!
//! Round trips are counted: [`Connection::run`] sends a batch in one write and waits for every
//! reply, which is one round trip however many commands it holds.
//!
//! It does not open the stream (TCP, TLS and their timeouts are the caller's), retry, or
//! reconnect: a connection that failed is dropped.
//!
//! # Warning
//! Sentences may hold a password (`/login`, `set =password=`); nothing here logs a sentence's
//! words, only its command, and the `Debug` output of [`Command`] and [`Reply`] shows a
//! password as `(sensitive)`.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use md5::{Digest, Md5};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::codec::{CodecError, Redacted, Sentence, decode_sentence, is_sensitive};

/// Any byte stream a connection can run over (TCP, TLS).
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// What went wrong talking to a router.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The connection failed.
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    /// The router sent bytes that are not API words.
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
    pub rows: Vec<BTreeMap<String, String>>,
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
                        (k.as_str(), v)
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

/// An open API connection.
pub struct Connection {
    stream: Box<dyn Stream>,
    buf: Vec<u8>,
    next_tag: u64,
    timeout: Duration,
    round_trips: u64,
    sentences_sent: u64,
}

impl Connection {
    /// Wraps a connected stream; every wait for a reply is bounded by `timeout`.
    pub fn new(stream: impl Stream + 'static, timeout: Duration) -> Self {
        Connection {
            stream: Box::new(stream),
            buf: Vec::with_capacity(64 * 1024),
            next_tag: 1,
            timeout,
            round_trips: 0,
            sentences_sent: 0,
        }
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
            .run(vec![Command::new([
                "/login".to_string(),
                format!("=name={user}"),
                format!("=password={password}"),
            ])])
            .await?
            .remove(0);
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
            .run(vec![Command::new([
                "/login".to_string(),
                format!("=name={user}"),
                format!("=response={response}"),
            ])])
            .await?
            .remove(0);
        match second.trap {
            Some(t) => Err(ApiError::Login(t.message)),
            None => Ok(()),
        }
    }

    /// Runs one command and returns its reply (a trap is in the reply, not an error).
    pub async fn call(&mut self, command: Command) -> Result<Reply, ApiError> {
        Ok(self.run(vec![command]).await?.remove(0))
    }

    /// Sends every command in one write, each with its own `.tag`, and waits for all replies:
    /// one round trip. Replies come back in the order of `commands`.
    pub async fn run(&mut self, commands: Vec<Command>) -> Result<Vec<Reply>, ApiError> {
        if commands.is_empty() {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        let mut pending: HashMap<String, usize> = HashMap::new();
        for (i, c) in commands.iter().enumerate() {
            let tag = self.next_tag.to_string();
            self.next_tag += 1;
            let mut words = c.words.clone();
            words.push(format!(".tag={tag}"));
            out.extend(Sentence::new(words).encode()?);
            pending.insert(tag, i);
            tracing::trace!(command = c.head(), "api send");
        }
        self.stream.write_all(&out).await?;
        self.stream.flush().await?;
        self.round_trips += 1;
        self.sentences_sent += commands.len() as u64;
        let mut replies = vec![Reply::default(); commands.len()];
        while !pending.is_empty() {
            let s = self.read_sentence().await?;
            if s.head() == "!fatal" {
                let reason = s.words.get(1).cloned().unwrap_or_default();
                return Err(ApiError::Fatal(reason));
            }
            let Some(&i) = s.tag().and_then(|t| pending.get(t)) else {
                return Err(ApiError::Protocol(format!(
                    "{} with an unknown tag {:?}",
                    s.head(),
                    s.tag()
                )));
            };
            let attrs = || -> BTreeMap<String, String> {
                s.attrs()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            };
            match s.head() {
                "!re" => {
                    replies[i].rows.push(attrs());
                    replies[i]
                        .not_utf8
                        .push(s.not_utf8_attrs().map(str::to_string).collect());
                }
                "!empty" => replies[i].empty = true,
                "!trap" => {
                    let a = attrs();
                    replies[i].trap = Some(Trap {
                        category: a.get("category").and_then(|c| c.parse().ok()),
                        message: a.get("message").cloned().unwrap_or_default(),
                    });
                }
                "!done" => {
                    replies[i].done = attrs();
                    let tag = s.tag().unwrap_or_default().to_string();
                    pending.remove(&tag);
                }
                other => return Err(ApiError::Protocol(format!("reply word {other:?}"))),
            }
        }
        Ok(replies)
    }

    async fn read_sentence(&mut self) -> Result<Sentence, ApiError> {
        loop {
            if let Some((words, used)) = decode_sentence(&self.buf)? {
                self.buf.drain(..used);
                return Ok(Sentence::from_raw(words));
            }
            let mut chunk = [0u8; 16 * 1024];
            let n = tokio::time::timeout(self.timeout, self.stream.read(&mut chunk))
                .await
                .map_err(|_| ApiError::Timeout(self.timeout))??;
            if n == 0 {
                return Err(ApiError::Io(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the router closed the connection",
                )));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::encode_sentence;
    use tokio::io::duplex;

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
}
