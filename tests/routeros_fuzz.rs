//! Property-based fuzzing of the RouterOS API codec, the client's reader and the lab server:
//! random and mutated byte streams never panic, never hang past the timeout, a client whose
//! command failed writes nothing more, and a lab router fed garbage on one connection keeps
//! serving the others. (No coverage-guided fuzzer can be
//! built here: cargo-fuzz needs a nightly toolchain.)

use std::time::Duration;

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use routeros_api::client::{ApiError, Command, Connection};
use routeros_api::codec::{Sentence, decode_sentence, encode_sentence};
use routeros_api::server::{RouterConfig, RouterLab, Version};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A valid reply stream, then mutated: bytes flipped, cut, or spliced with noise.
fn mutated_stream() -> impl Strategy<Value = Vec<u8>> {
    let words = prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 0..6);
    (
        prop::collection::vec(words, 1..4),
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        any::<Option<prop::sample::Index>>(),
    )
        .prop_map(|(sentences, flips, cut)| {
            let mut bytes = Vec::new();
            for mut s in sentences {
                s.retain(|w| !w.is_empty());
                bytes.extend(encode_sentence(&s).unwrap());
            }
            for (at, b) in flips {
                if !bytes.is_empty() {
                    let i = at.index(bytes.len());
                    bytes[i] = b;
                }
            }
            if let Some(c) = cut
                && !bytes.is_empty()
            {
                bytes.truncate(c.index(bytes.len()));
            }
            bytes
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn decoding_any_stream_never_panics_and_never_overreads(bytes in mutated_stream()) {
        let mut rest = bytes.as_slice();
        while let Ok(Some((words, used))) = decode_sentence(rest) {
            prop_assert!(used <= rest.len());
            prop_assert!(used > 0);
            let _ = Sentence::from_raw(words);
            rest = &rest[used..];
        }
    }
}

/// A router that reads one command, answers `bytes`, and returns how many sentences it
/// received in all (until the client is gone).
async fn answer_then_count(mut io: tokio::io::DuplexStream, bytes: Vec<u8>) -> usize {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut sentences = 0;
    let mut answered = false;
    loop {
        while let Ok(Some((_, used))) = decode_sentence(&buf) {
            buf.drain(..used);
            sentences += 1;
        }
        if sentences > 0 && !answered {
            answered = true;
            let _ = io.write_all(&bytes).await;
        }
        match io.read(&mut chunk).await {
            Ok(0) | Err(_) => return sentences,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Any reply stream: never a panic, never a hang, and once a command failed, nothing more
    /// is written on the connection.
    #[test]
    fn the_client_survives_any_reply_stream(bytes in mutated_stream()) {
        // On tokio's paused clock: the client's own timeout and the hang check below pass in
        // virtual time, so a slow machine cannot fail the test and a quick one waits for nothing.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            let (a, b) = tokio::io::duplex(1 << 16);
            let router = tokio::spawn(answer_then_count(b, bytes));
            let mut c = Connection::new(a, Duration::from_millis(200));
            // An error or (rarely) a reply: never a panic, never a hang.
            let first = tokio::time::timeout(
                Duration::from_secs(2),
                c.call(Command::new(["/ppp/secret/print"])),
            )
            .await
            .expect("the client hung");
            if first.is_err() {
                let next = c.call(Command::new(["/ppp/secret/remove", "=.id=*1"])).await;
                assert!(
                    matches!(next, Err(ApiError::Dead(_))),
                    "a command after a failed one: {next:?}"
                );
                drop(c);
                assert_eq!(router.await.unwrap(), 1, "written after the failure");
            }
        });
    }
}

#[test]
fn the_lab_router_survives_garbage_and_keeps_serving() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let lab = RouterLab::start(RouterConfig::new(Version::V7).with_user("u", "p"))
            .await
            .unwrap();
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        for _ in 0..200 {
            let bytes = mutated_stream().new_tree(&mut runner).unwrap().current();
            let mut s = tokio::net::TcpStream::connect(lab.addr()).await.unwrap();
            let _ = s.write_all(&bytes).await;
            // Reserved prefixes too.
            let _ = s.write_all(&[0xF8, 0xFF, 0x00]).await;
            drop(s);
        }
        let stream = tokio::net::TcpStream::connect(lab.addr()).await.unwrap();
        let mut c = Connection::new(stream, Duration::from_secs(2));
        c.login("u", "p").await.unwrap();
        let r = c.call(Command::new(["/ppp/profile/print"])).await.unwrap();
        assert!(!r.rows.is_empty(), "the lab stopped answering");
    });
}
