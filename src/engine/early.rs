//! Reads begun before the desired state finished loading.
//!
//! `plan` and `drift` change nothing, so they need not wait for thousands of YAML entries to
//! be parsed before connecting: once the inventory is loaded, a kind may begin reading the
//! targets it names ([`crate::kinds::def::KindDef::read_early`]), and its provider's
//! `observe` takes the read from here instead of starting one ([`EarlyReads::take`]). On a
//! router 20 ms away, connecting, logging in and reading overlap the parse.
//!
//! Each read is bounded by the target's observe deadline from the moment it begins (so a
//! target's read takes no longer in all than without reading early). A read nobody takes (the
//! folder failed to load, the file named after a target names another) is aborted when the
//! registry is dropped or cleared ([`EarlyReads::clear`], after the plan): its connection
//! closes, nothing more is sent. Commands that write (`apply`, `plan --out`) never read early:
//! their reads come after the lock, or once the folder has loaded.
//!
//! Early reads add to the engine's own bound per kind: at most [`MAX_PER_KIND`] more
//! connections of a kind at once.

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;

use std::time::Duration;

use tokio::task::JoinHandle;

/// At most this many reads of one kind begin early: the engine's default concurrency per
/// kind, so that early reads and the engine's own stay within about one kind's bound.
pub const MAX_PER_KIND: usize = 8;

/// Reads in flight, by target address (`pppoe.balanceador`).
#[derive(Default)]
pub struct EarlyReads {
    reads: Mutex<HashMap<String, Box<dyn Any + Send>>>,
}

/// Why a read begun early gave no result.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EarlyFailure {
    /// The read passed the target's observe deadline, counted from when it began.
    #[error(
        "no complete answer within its deadline of {} (deadline.observe_secs); the connection was closed",
        super::deadline::words(*.0)
    )]
    PastDeadline(Duration),
    /// The read panicked (a bug): reported, not retried.
    #[error("internal error: the read begun early failed: {0}")]
    Panicked(String),
}

/// A spawned read, aborted when dropped untaken.
struct Read<T>(JoinHandle<Result<T, EarlyFailure>>);

impl<T> Drop for Read<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl EarlyReads {
    /// Begins `read` for target `address` on the current runtime, bounded by `deadline` from
    /// now. A second read of the same target replaces (and aborts) the first.
    pub fn begin<T, F>(&self, address: String, deadline: Duration, read: F)
    where
        T: Send + 'static,
        F: Future<Output = T> + Send + 'static,
    {
        let bounded = async move {
            tokio::time::timeout(deadline, read)
                .await
                .map_err(|_| EarlyFailure::PastDeadline(deadline))
        };
        let handle: Box<dyn Any + Send> = Box::new(Read(tokio::spawn(bounded)));
        self.lock().insert(address, handle);
    }

    /// Takes the read of `address`, if one began with output type `T`; awaiting it gives the
    /// read's output or why there is none. Dropping the future before it is done aborts the
    /// read.
    pub fn take<T: Send + 'static>(
        &self,
        address: &str,
    ) -> Option<impl Future<Output = Result<T, EarlyFailure>> + use<T>> {
        let read = self.lock().remove(address)?.downcast::<Read<T>>().ok()?;
        Some(async move {
            let mut read = read;
            match (&mut read.0).await {
                Ok(result) => result,
                Err(e) => Err(EarlyFailure::Panicked(e.to_string())),
            }
        })
    }

    /// Aborts every read not taken (a plan is made: nobody will take them).
    pub fn clear(&self) {
        let untaken = std::mem::take(&mut *self.lock());
        drop(untaken);
    }

    /// How many reads are waiting to be taken.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no read is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Box<dyn Any + Send>>> {
        self.reads.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    const MINUTE: Duration = Duration::from_secs(60);

    #[tokio::test(start_paused = true)]
    async fn a_read_is_taken_once_with_its_type() {
        let early = EarlyReads::default();
        early.begin("pppoe.r1".into(), MINUTE, async { 42u32 });
        assert_eq!(early.len(), 1);
        assert!(early.take::<String>("pppoe.r1").is_none(), "wrong type");
        assert!(
            early.take::<u32>("pppoe.r1").is_none(),
            "a wrong take drops it"
        );
        early.begin("pppoe.r1".into(), MINUTE, async { 43u32 });
        let read = early.take::<u32>("pppoe.r1").expect("begun");
        assert_eq!(read.await.unwrap(), 43);
        assert!(early.take::<u32>("pppoe.r1").is_none(), "taken once");
        assert!(early.is_empty());
    }

    /// A registry with one read that takes 5 s, and the flag it sets when it finishes.
    fn slow_read() -> (EarlyReads, Arc<AtomicBool>) {
        let finished = Arc::new(AtomicBool::new(false));
        let early = EarlyReads::default();
        let f = finished.clone();
        early.begin("pppoe.r1".into(), MINUTE, async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            f.store(true, Ordering::SeqCst);
        });
        (early, finished)
    }

    #[tokio::test(start_paused = true)]
    async fn an_untaken_read_is_aborted_with_the_registry() {
        let (early, finished) = slow_read();
        tokio::task::yield_now().await;
        drop(early);
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert!(!finished.load(Ordering::SeqCst), "the read went on");
    }

    #[tokio::test(start_paused = true)]
    async fn a_taken_read_dropped_midway_is_aborted() {
        let (early, finished) = slow_read();
        let read = early.take::<()>("pppoe.r1").expect("begun");
        assert!(
            tokio::time::timeout(Duration::from_secs(1), read)
                .await
                .is_err()
        );
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert!(!finished.load(Ordering::SeqCst), "the read went on");
    }

    #[tokio::test(start_paused = true)]
    async fn cleared_reads_are_aborted() {
        let (early, finished) = slow_read();
        tokio::task::yield_now().await;
        early.clear();
        assert!(early.is_empty());
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert!(!finished.load(Ordering::SeqCst), "the read went on");
    }

    #[tokio::test(start_paused = true)]
    async fn a_read_is_bounded_by_its_deadline_from_when_it_began() {
        let early = EarlyReads::default();
        early.begin("pppoe.r1".into(), Duration::from_secs(3), async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        });
        // The desired state takes 2 s to load; the read has 1 s left once taken.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let started = tokio::time::Instant::now();
        let read = early.take::<()>("pppoe.r1").expect("begun");
        match read.await {
            Err(EarlyFailure::PastDeadline(d)) => assert_eq!(d, Duration::from_secs(3)),
            other => panic!("{other:?}"),
        }
        assert_eq!(started.elapsed(), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_panicked_read_is_reported_not_retried() {
        let early = EarlyReads::default();
        early.begin("pppoe.r1".into(), MINUTE, async {
            if true {
                panic!("a bug");
            }
        });
        let read = early.take::<()>("pppoe.r1").expect("begun");
        let failure = read.await.expect_err("it panicked");
        assert!(matches!(failure, EarlyFailure::Panicked(_)), "{failure:?}");
        assert!(failure.to_string().starts_with("internal error"));
    }
}
