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

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};

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
        f(next as usize);
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
        });
        for _ in 0..helpers {
            let s = shared.clone();
            rayon::spawn(move || {
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
        // helper uses it only between a successful claim and its `done`).
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
    fn finishes_without_helpers() {
        let mut team = Team::new(0);
        let sum = AtomicUsize::new(0);
        team.run(10, &|i| {
            sum.fetch_add(i, Ordering::Relaxed);
        });
        assert_eq!(sum.load(Ordering::Relaxed), 45);
    }
}
