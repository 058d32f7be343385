//! The queue's bound: texts waiting or being embedded, against a limit. A
//! caller that must not be refused (the indexer) waits here for room,
//! woken when a job is answered, instead of polling.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use super::job::SubmitError;

/// Texts in the queue, and the callers waiting for room.
pub(crate) struct Backlog {
    texts: AtomicUsize,
    limit: usize,
    waiters: AtomicUsize,
    lock: Mutex<()>,
    room: Condvar,
}

/// How often a waiter looks again whether the queue was closed.
const CLOSED_CHECK: Duration = Duration::from_millis(100);

impl Backlog {
    pub(crate) fn new(limit: usize) -> Backlog {
        Backlog {
            texts: AtomicUsize::new(0),
            limit,
            waiters: AtomicUsize::new(0),
            lock: Mutex::new(()),
            room: Condvar::new(),
        }
    }

    /// Texts waiting or being embedded now.
    pub(crate) fn texts(&self) -> usize {
        self.texts.load(Ordering::Acquire)
    }

    /// Counts `n` more texts in, unless that would pass the limit (an empty
    /// queue takes any job, so one larger than the limit still runs).
    pub(crate) fn try_add(&self, n: usize) -> Result<(), SubmitError> {
        let mut cur = self.texts.load(Ordering::SeqCst);
        loop {
            if cur > 0 && cur + n > self.limit {
                return Err(SubmitError::Overloaded { queued: cur, limit: self.limit });
            }
            match self.texts.compare_exchange_weak(cur, cur + n, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return Ok(()),
                Err(now) => cur = now,
            }
        }
    }

    /// Counts `n` more texts in, waiting for room as long as it takes;
    /// `ShuttingDown` once `closed` is set.
    pub(crate) fn add_waiting(&self, n: usize, closed: &AtomicBool) -> Result<(), SubmitError> {
        if self.try_add(n).is_ok() {
            return Ok(());
        }
        self.waiters.fetch_add(1, Ordering::SeqCst);
        let mut guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let result = loop {
            if closed.load(Ordering::Acquire) {
                break Err(SubmitError::ShuttingDown);
            }
            // Looked at under the lock: a `sub` after this finds the waiter
            // counted and notifies once the wait has released the lock.
            if self.try_add(n).is_ok() {
                break Ok(());
            }
            guard =
                self.room.wait_timeout(guard, CLOSED_CHECK).unwrap_or_else(|p| p.into_inner()).0;
        };
        drop(guard);
        self.waiters.fetch_sub(1, Ordering::SeqCst);
        result
    }

    /// `n` texts are answered (or were never queued).
    pub(crate) fn sub(&self, n: usize) {
        self.texts.fetch_sub(n, Ordering::SeqCst);
        if self.waiters.load(Ordering::SeqCst) > 0 {
            let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
            self.room.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_full_backlog_refuses_then_takes_a_waiter_when_room_is_made() {
        let b = Arc::new(Backlog::new(10));
        b.try_add(8).unwrap();
        assert_eq!(b.try_add(5), Err(SubmitError::Overloaded { queued: 8, limit: 10 }));
        assert_eq!(b.texts(), 8);
        let closed = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = {
            let (b, closed) = (b.clone(), closed.clone());
            std::thread::spawn(move || tx.send(b.add_waiting(5, &closed)).unwrap())
        };
        // The waiter cannot get in while 8 of 10 are held ...
        assert!(rx.recv_timeout(Duration::from_millis(300)).is_err());
        // ... and gets in as soon as they are answered.
        b.sub(8);
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), Ok(()));
        waiter.join().unwrap();
        assert_eq!(b.texts(), 5);
        // An empty backlog takes a job larger than its limit.
        b.sub(5);
        b.try_add(50).unwrap();
    }

    #[test]
    fn a_waiter_is_let_go_when_the_queue_closes() {
        let b = Backlog::new(1);
        b.try_add(1).unwrap();
        let closed = AtomicBool::new(true);
        assert_eq!(b.add_waiting(1, &closed), Err(SubmitError::ShuttingDown));
        assert_eq!(b.texts(), 1);
    }
}
