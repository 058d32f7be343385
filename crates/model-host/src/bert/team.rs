//! A team of threads for the small forward passes of single queries.
//!
//! A query of ten tokens runs about 25 parallel steps per forward pass, each
//! a few tens of microseconds of work. Handing each step to rayon costs a
//! wake-up of the other thread per step (about as long as the step itself on
//! these VMs), so two threads were no faster than one. A [`Team`] instead
//! keeps its helpers spinning for the whole forward pass: each step is
//! published as `n` chunks that the caller and the helpers claim one at a
//! time with a compare-and-swap, and the caller spins until all are done.
//!
//! Helpers are rayon tasks on the same pool (no extra threads), and they
//! may join late or never (when the pool is busy): the caller claims chunks
//! too, so a step always finishes, with or without them.
//!
//! Panics: a chunk that panics, on any thread, is caught where it ran and
//! still counted as done, so no panic unwinds through a rayon task and the
//! caller never returns (or unwinds) while a helper may still call through
//! the step. Once every chunk is done, [`Team::run`] re-raises the first
//! panic on the caller's thread, where the batcher turns it into an error
//! for the requests of that batch.

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// One published step: the chunk function.
struct Step<'a> {
    f: &'a (dyn Fn(usize) + Sync),
}

struct Shared {
    /// `epoch << 40 | n << 20 | next`: the step's number, its chunk count and
    /// the next unclaimed chunk.
    claim: AtomicU64,
    /// Chunks of the current step finished.
    done: AtomicUsize,
    /// The current step; valid while it has unfinished chunks.
    step: AtomicPtr<()>,
    closed: AtomicBool,
    /// The first panic of the current step, re-raised by the caller.
    panic: Mutex<Option<Box<dyn std::any::Any + Send>>>,
}

const FIELD: u64 = (1 << 20) - 1;

impl Shared {
    /// Claims one chunk of the current step and runs it. Returns false when
    /// there is nothing to claim.
    fn work_one(&self) -> bool {
        let c = self.claim.load(Ordering::Acquire);
        let (n, next) = ((c >> 20) & FIELD, c & FIELD);
        if next >= n {
            return false;
        }
        if self.claim.compare_exchange_weak(c, c + 1, Ordering::AcqRel, Ordering::Relaxed).is_err()
        {
            return true;
        }
        let step = self.step.load(Ordering::Acquire) as *const Step<'_>;
        // SAFETY: the successful claim synchronizes with the store that
        // published this epoch, which followed the store of `step`; and the
        // publisher keeps the step alive until `done` counts this chunk.
        let f = unsafe { (*step).f };
        if let Err(p) = catch_unwind(AssertUnwindSafe(|| {
            crate::fault::maybe_panic_in_team(next as usize);
            f(next as usize)
        })) {
            self.panic.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(p);
        }
        self.done.fetch_add(1, Ordering::Release);
        true
    }
}

/// The caller's handle: publishes steps; helpers leave when it drops.
pub struct Team {
    shared: Arc<Shared>,
    epoch: u64,
}

impl Team {
    /// A team of the caller plus up to `helpers` rayon tasks.
    pub fn new(helpers: usize) -> Team {
        let shared = Arc::new(Shared {
            claim: AtomicU64::new(0),
            done: AtomicUsize::new(0),
            step: AtomicPtr::new(std::ptr::null_mut()),
            closed: AtomicBool::new(false),
            panic: Mutex::new(None),
        });
        for _ in 0..helpers {
            let s = shared.clone();
            rayon::spawn(move || {
                crate::fault::mark_helper();
                while !s.closed.load(Ordering::Acquire) {
                    if !s.work_one() {
                        std::hint::spin_loop();
                    }
                }
            });
        }
        Team { shared, epoch: 0 }
    }

    /// Runs `f(0) .. f(n - 1)` across the team and returns when all are done.
    pub fn run(&mut self, n: usize, f: &(dyn Fn(usize) + Sync)) {
        assert!(n as u64 <= FIELD, "at most 2^20 chunks per step");
        if n == 0 {
            return;
        }
        let step = Step { f };
        self.epoch += 1;
        let s = &*self.shared;
        s.done.store(0, Ordering::Relaxed);
        s.step.store(&step as *const Step<'_> as *mut (), Ordering::Release);
        s.claim.store((self.epoch << 40) | ((n as u64) << 20), Ordering::Release);
        while s.work_one() {}
        while s.done.load(Ordering::Acquire) < n {
            std::hint::spin_loop();
        }
        // Every chunk is finished, so no helper holds `step` any more (a
        // helper uses it only between a successful claim and its `done`):
        // only now may a chunk's panic unwind the caller.
        if let Some(p) = s.panic.lock().unwrap_or_else(|e| e.into_inner()).take() {
            resume_unwind(p);
        }
    }
}

impl Drop for Team {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[test]
    fn every_chunk_runs_once_per_step() {
        let mut team = Team::new(2);
        for round in 0..200 {
            let n = 1 + round % 37;
            let hits: Vec<AtomicU32> = (0..n).map(|_| AtomicU32::new(0)).collect();
            team.run(n, &|i| {
                hits[i].fetch_add(1, Ordering::Relaxed);
            });
            assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1), "round {round}");
        }
    }

    #[test]
    fn a_panicking_chunk_on_any_thread_is_raised_after_the_step_and_the_team_goes_on() {
        let mut team = Team::new(2);
        let caller = std::thread::current().id();
        for round in 0..50 {
            let ran = AtomicUsize::new(0);
            let helper_only = round % 2 == 0;
            let result = catch_unwind(AssertUnwindSafe(|| {
                team.run(16, &|i| {
                    std::thread::sleep(std::time::Duration::from_micros(50));
                    ran.fetch_add(1, Ordering::Relaxed);
                    let on_helper = std::thread::current().id() != caller;
                    if i == 3 && (!helper_only || on_helper) {
                        panic!("chunk {i} failed");
                    }
                });
            }));
            // Every chunk ran to the end of the step before anything unwound.
            assert_eq!(ran.load(Ordering::Relaxed), 16, "round {round}");
            if !helper_only {
                let msg = result.unwrap_err();
                assert_eq!(
                    msg.downcast_ref::<String>().map(String::as_str),
                    Some("chunk 3 failed")
                );
            }
            // The team still works.
            let sum = AtomicUsize::new(0);
            team.run(10, &|i| {
                sum.fetch_add(i, Ordering::Relaxed);
            });
            assert_eq!(sum.load(Ordering::Relaxed), 45);
        }
    }

    #[test]
    fn finishes_without_helpers() {
        let mut team = Team::new(0);
        let sum = AtomicUsize::new(0);
        team.run(10, &|i| {
            sum.fetch_add(i, Ordering::Relaxed);
        });
        assert_eq!(sum.load(Ordering::Relaxed), 45);
    }
}
