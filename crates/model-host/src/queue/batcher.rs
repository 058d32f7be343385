//! The one inference thread: takes whatever is waiting (it never waits on
//! purpose to fill a batch), asks the pure planner ([`plan`]) for the next
//! batch (fewest tokens left first, aged work ahead of that, one model, a
//! token budget), runs it on the model the jobs carry, and answers each job
//! when its last text is done. A failed batch of several jobs is run again
//! job by job, so only the job that fails alone gets the error.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crossbeam_channel::Receiver;

use super::backlog::Backlog;
use super::job::{Input, Job, JobError};
use super::{answer, plan};
use crate::backend::BackendError;
use crate::cache::EmbedCache;
use crate::model::Embedder;
use crate::panics::message as panic_message;
use crate::stats::Stats;

#[cfg(test)]
#[path = "batcher_tests.rs"]
mod tests;

struct Active {
    job: Job,
    /// Text indices, longest first.
    order: Vec<usize>,
    /// Their token counts, in the same order.
    lens: Vec<usize>,
    /// The job's engine pads batches.
    padded: bool,
    next: usize,
    out: Vec<f32>,
    done: usize,
    /// Batches run in a row without any of this job's texts.
    waited: u32,
    /// Run this job alone: a batch it was in failed.
    alone: bool,
}

/// What the planner sees of an active job.
fn view(a: &Active, waited: u32) -> plan::Pending<'_> {
    plan::Pending {
        model: model_key(&a.job.model),
        padded: a.padded,
        lens: &a.lens[a.next..],
        waited,
    }
}

/// Batches a job may be passed over before it goes first: a long text
/// under a stream of short queries waits at most this many small batches.
const MAX_WAIT_BATCHES: u32 = 8;

/// Which model a job's texts need: batches hold one model's texts.
fn model_key(m: &Arc<Embedder>) -> usize {
    Arc::as_ptr(m) as *const () as usize
}

pub(super) struct Batcher {
    stats: Arc<Stats>,
    cache: Arc<EmbedCache>,
    rx: Receiver<Job>,
    backlog: Arc<Backlog>,
    max_batch_tokens: usize,
    /// A drain task is spawned or running.
    running: AtomicBool,
}

impl Batcher {
    /// The batcher of the queue's jobs.
    ///
    /// It runs *on* a thread of rayon's global pool, the pool candle's
    /// kernels use, rather than beside it: with N threads configured, exactly
    /// N threads compute, and after a forward pass one fewer pool thread
    /// spins looking for work, which leaves a core free for the reply to
    /// reach its client (measured: single query 8.1 -> 6.5 ms, bulk +25%). It
    /// runs only while there is work: a submit to an idle queue spawns it,
    /// and it returns once the queue is empty, so it never blocks a pool
    /// thread that other rayon work in the process may need.
    pub(super) fn new(
        stats: Arc<Stats>,
        cache: Arc<EmbedCache>,
        rx: Receiver<Job>,
        backlog: Arc<Backlog>,
        max_batch_tokens: usize,
    ) -> Batcher {
        Batcher { stats, cache, rx, backlog, max_batch_tokens, running: AtomicBool::new(false) }
    }

    /// Whether a drain task is spawned or running.
    pub(super) fn busy(&self) -> bool {
        self.running.load(Ordering::Acquire)
    }

    /// Makes sure a drain task runs.
    pub(super) fn wake(self: &Arc<Self>) {
        // Pairs with the fence in `drain`: either this sees `running` false
        // and spawns, or the drain task sees this job in the channel.
        std::sync::atomic::fence(Ordering::SeqCst);
        if !self.running.swap(true, Ordering::SeqCst) {
            let me = self.clone();
            rayon::spawn(move || me.drain());
        }
    }

    fn drain(self: Arc<Self>) {
        let mut active: Vec<Active> = Vec::new();
        loop {
            // Nothing unwinds through rayon: a panic anywhere in a round (a
            // backend, the planner, `finish`) becomes an `Internal` error for
            // exactly the jobs still held, and the batcher goes on.
            let round = catch_unwind(AssertUnwindSafe(|| self.run_until_empty(&mut active)));
            if let Err(p) = round {
                let why = JobError::Panicked(panic_message(&*p));
                tracing::error!("{why}");
                for a in active.drain(..) {
                    self.fail(a, why.clone());
                }
                continue;
            }
            self.running.store(false, Ordering::SeqCst);
            // The store must be visible before the channel is looked at again
            // (a store-load pair: only a SeqCst fence orders it).
            std::sync::atomic::fence(Ordering::SeqCst);
            // A job sent after the last look found `running` still set and
            // spawned nothing: take it on, unless another drain already did.
            if self.rx.is_empty() || self.running.swap(true, Ordering::SeqCst) {
                return;
            }
        }
    }

    /// Answers a job with an error.
    fn fail(&self, a: Active, why: JobError) {
        self.backlog.sub(a.job.input.len());
        self.stats.record_error();
        a.job.reply.respond(Err(why));
    }

    fn run_until_empty(&self, active: &mut Vec<Active>) {
        // The models that ran large batches, whose buffers are handed back after.
        let mut big: Vec<Arc<Embedder>> = Vec::new();
        loop {
            while let Ok(job) = self.rx.try_recv() {
                active.push(self.activate(job));
            }
            if active.is_empty() {
                if !big.is_empty() {
                    // After large batches, hand their activations' memory back.
                    for m in big.drain(..) {
                        m.release_buffers();
                    }
                    trim_heap();
                }
                return;
            }
            // Jobs with no texts to embed (none, or all cached) are answered at once.
            let mut i = 0;
            while i < active.len() {
                if active[i].job.input.is_empty() {
                    let a = active.swap_remove(i);
                    self.finish(a);
                } else {
                    i += 1;
                }
            }
            if active.is_empty() {
                continue;
            }
            let picks = self.next_batch(active);
            let embedder = active[picks[0].0].job.model.clone();
            let texts: Vec<(usize, usize)> = picks
                .iter()
                .flat_map(|&(ai, n)| {
                    let a = &active[ai];
                    a.order[a.next..a.next + n].iter().map(move |&t| (ai, t))
                })
                .collect();
            let ids: Vec<&[u32]> =
                texts.iter().map(|&(ai, t)| active[ai].job.ids()[t].as_slice()).collect();
            let longest = ids.iter().map(|t| t.len()).max().unwrap_or(0);
            if ids.len() * longest >= 256 && !big.iter().any(|m| Arc::ptr_eq(m, &embedder)) {
                big.push(embedder.clone());
            }
            let result = catch_unwind(AssertUnwindSafe(|| embedder.embed_ids(&ids)))
                .unwrap_or_else(|p| Err(BackendError::Panicked(panic_message(&*p))));
            self.stats.record_batch(ids.len());
            let dim = embedder.dim();
            for a in active.iter_mut() {
                a.waited += 1;
            }
            let jobs: Vec<usize> = picks.iter().map(|&(ai, _)| ai).collect();
            // Jobs to fail, with why: on a failed forward pass of several
            // jobs, none yet: each is run again alone, so only the job that
            // fails by itself gets the error and the others their vectors.
            // With a vector that is not finite (corrupt weights), that job.
            // A NaN is never sent and never reaches an index.
            let (vectors, mut failed, why) = match result {
                Ok(v) => {
                    let bad: Vec<usize> = texts
                        .iter()
                        .enumerate()
                        .filter(|(row, _)| {
                            !v[row * dim..(row + 1) * dim].iter().all(|x| x.is_finite())
                        })
                        .map(|(_, &(ai, _))| ai)
                        .collect();
                    (Some(v), bad, JobError::NonFinite)
                }
                Err(e) if jobs.len() > 1 => {
                    tracing::warn!(
                        "a batch of {} jobs failed ({e}); running them one by one",
                        jobs.len()
                    );
                    for &ai in &jobs {
                        active[ai].alone = true;
                    }
                    (None, Vec::new(), JobError::NonFinite)
                }
                Err(e) => (None, jobs.clone(), JobError::Backend(e)),
            };
            failed.sort_unstable();
            failed.dedup();
            if let Some(vectors) = vectors {
                for (row, &(ai, t)) in texts.iter().enumerate() {
                    if failed.binary_search(&ai).is_ok() {
                        continue;
                    }
                    let a = &mut active[ai];
                    a.out[t * dim..(t + 1) * dim]
                        .copy_from_slice(&vectors[row * dim..(row + 1) * dim]);
                    a.next += 1;
                    a.done += 1;
                    a.waited = 0;
                }
            }
            if !failed.is_empty() {
                tracing::error!("{} of {} jobs failed: {why}", failed.len(), active.len());
            }
            // Descending, so each swap_remove moves a job that stays.
            for &ai in failed.iter().rev() {
                let a = active.swap_remove(ai);
                self.fail(a, why.clone());
            }
            let mut i = 0;
            while i < active.len() {
                if active[i].done == active[i].job.input.len() {
                    let a = active.swap_remove(i);
                    self.finish(a);
                } else {
                    i += 1;
                }
            }
        }
    }

    /// The next batch, from the pure planner. Jobs to be run alone (after a
    /// failed batch) go one at a time, before anything else.
    fn next_batch(&self, active: &[Active]) -> Vec<(usize, usize)> {
        let budget = plan::Budget { max_tokens: self.max_batch_tokens, max_wait: MAX_WAIT_BATCHES };
        if let Some(ai) = active.iter().position(|a| a.alone) {
            let picks = plan::plan(&[view(&active[ai], 0)], &budget);
            return picks.into_iter().map(|(_, n)| (ai, n)).collect();
        }
        let views: Vec<plan::Pending<'_>> = active.iter().map(|a| view(a, a.waited)).collect();
        plan::plan(&views, &budget)
    }

    fn activate(&self, job: Job) -> Active {
        let ids = job.ids();
        let mut order: Vec<usize> = (0..ids.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(ids[i].len()));
        let lens = order.iter().map(|&i| ids[i].len()).collect();
        let (dim, padded) = (job.model.dim(), job.model.pads_batches());
        let out = vec![0f32; ids.len() * dim];
        Active { job, order, lens, padded, next: 0, out, done: 0, waited: 0, alone: false }
    }

    /// Answers a job whose texts are all embedded. A panic while building
    /// the answer becomes that job's `Internal` error.
    fn finish(&self, a: Active) {
        let n = a.job.input.len();
        self.backlog.sub(n);
        let Active { job, out, .. } = a;
        let Job { model: embedder, input, reply, received, cached } = job;
        let result = catch_unwind(AssertUnwindSafe(|| {
            if let Input::Ids(ids) = &input {
                crate::fault::maybe_panic_in_finish(ids);
            }
            answer::embeddings(
                &self.cache,
                &self.stats,
                &embedder,
                input.tokens(),
                out,
                cached,
                received,
            )
        }))
        .map_err(|p| {
            self.stats.record_error();
            let e = JobError::Panicked(format!("answering the request: {}", panic_message(&*p)));
            tracing::error!("{e}");
            e
        });
        // The client may have gone; its answer is then dropped.
        reply.respond(result);
    }
}

/// Returns freed heap memory to the kernel (glibc keeps it otherwise, and a
/// batch's activations are hundreds of MB).
pub(crate) fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory held by the allocator.
    unsafe {
        libc::malloc_trim(0);
    }
}
