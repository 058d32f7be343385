//! The one queue and the one inference thread.
//!
//! Connection threads tokenize and [`Queue::submit`] jobs; the batcher thread
//! owns the models' forward passes. It takes whatever is waiting (it never
//! waits on purpose to fill a batch), asks the pure planner ([`plan`]) for
//! the next batch (fewest tokens left first, aged work ahead of that, one
//! model, a token budget), and answers each job when its last text is done.
//! A failed batch of several jobs is run again job by job, so only the job
//! that fails alone gets the error. The queue is bounded in texts: a submit that would pass
//! the bound fails at once with [`SubmitError::Overloaded`].

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};

mod answer;
mod lane;
mod plan;

use vembed_protocol::Embeddings;

use crate::backend::BackendError;
use crate::cache::{EmbedCache, Entry, TextHash};
use crate::registry::Registry;
use crate::stats::Stats;

/// One embed request, tokenized.
pub struct Job {
    /// Index of the model in the registry.
    pub model: usize,
    /// What to embed.
    pub input: Input,
    /// Where the result goes, once.
    pub reply: Box<dyn Respond>,
    /// When the request was read.
    pub received: Instant,
    /// For `EmbedCached`: the texts answered from the cache; `input` is the rest.
    pub cached: Option<CachedJob>,
}

/// What a job embeds.
#[derive(Debug, Clone)]
pub enum Input {
    /// Token ids per text, already truncated, for a local model (the batcher).
    Ids(Vec<Vec<u32>>),
    /// Texts, for a remote model, whose service tokenizes them (its lane).
    Texts {
        /// The texts.
        texts: Vec<String>,
        /// Tokens per text, capped at the model's limit; 0 when the model
        /// has no exact count.
        tokens: Vec<u32>,
    },
}

impl Input {
    /// Texts to embed.
    pub fn len(&self) -> usize {
        match self {
            Input::Ids(ids) => ids.len(),
            Input::Texts { texts, .. } => texts.len(),
        }
    }

    /// Whether there is nothing to embed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Tokens per text, as the answer reports them.
    pub fn tokens(&self) -> Vec<u32> {
        match self {
            Input::Ids(ids) => ids.iter().map(|t| t.len() as u32).collect(),
            Input::Texts { tokens, .. } => tokens.clone(),
        }
    }
}

impl Job {
    /// The token ids of a local model's job (none for a remote model's).
    fn ids(&self) -> &[Vec<u32>] {
        match &self.input {
            Input::Ids(ids) => ids,
            Input::Texts { .. } => &[],
        }
    }
}

/// Why a job got no embeddings. Every variant is the host's fault, never
/// the input's: the front doors answer it as `Internal`.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum JobError {
    /// The forward pass failed or panicked.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// A vector came out NaN or infinite (corrupt weights).
    #[error("{NON_FINITE}")]
    NonFinite,
    /// The batcher itself panicked while holding the job.
    #[error("internal error in the batcher: {0}")]
    Panicked(String),
}

impl JobError {
    /// The wire code: `Upstream` for a remote model's service, else `Internal`.
    pub fn code(&self) -> vembed_protocol::ErrorCode {
        match self {
            JobError::Backend(BackendError::Upstream { .. }) => {
                vembed_protocol::ErrorCode::Upstream
            }
            _ => vembed_protocol::ErrorCode::Internal,
        }
    }
}

/// Where a job's result goes: called exactly once, from the batcher.
pub trait Respond: Send {
    /// Delivers the result; a receiver that is gone drops it.
    fn respond(self: Box<Self>, result: Result<Embeddings, JobError>);
}

/// A host thread waiting on a channel (the indexer).
impl Respond for Sender<Result<Embeddings, JobError>> {
    fn respond(self: Box<Self>, result: Result<Embeddings, JobError>) {
        let _ = self.send(result);
    }
}

/// The cached part of an `EmbedCached` job.
pub struct CachedJob {
    /// The model's identity in the cache.
    pub identity: String,
    /// One per text of the request: its cached embedding, or `None` when it
    /// is among the job's `ids` (in order).
    pub hits: Vec<Option<Entry>>,
    /// The cache keys of the texts in `ids`.
    pub miss_hashes: Vec<TextHash>,
}

/// Why a job was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// The queue holds too many texts already.
    #[error("queue full: {queued} texts waiting, limit {limit}")]
    Overloaded {
        /// Texts waiting now.
        queued: usize,
        /// The bound.
        limit: usize,
    },
    /// The host is stopping.
    #[error("host is shutting down")]
    ShuttingDown,
}

/// The submitting side of the queue. Cheap to clone.
#[derive(Clone)]
pub struct Queue {
    tx: Sender<Job>,
    queued: Arc<AtomicUsize>,
    limit: usize,
    closed: Arc<AtomicBool>,
    batcher: Arc<Batcher>,
    lanes: Arc<lane::Lanes>,
}

impl Queue {
    /// Queues a job, or refuses it at once.
    pub fn submit(&self, job: Job) -> Result<(), SubmitError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(SubmitError::ShuttingDown);
        }
        let n = job.input.len();
        let before = self.queued.fetch_add(n, Ordering::AcqRel);
        if before + n > self.limit && before > 0 {
            self.queued.fetch_sub(n, Ordering::AcqRel);
            return Err(SubmitError::Overloaded { queued: before, limit: self.limit });
        }
        // A remote model's job goes out on its lane, never through the batcher.
        if let Input::Texts { .. } = job.input {
            self.lanes.submit(job);
            return Ok(());
        }
        self.tx.send(job).map_err(|_| {
            self.queued.fetch_sub(n, Ordering::AcqRel);
            SubmitError::ShuttingDown
        })?;
        self.batcher.wake();
        Ok(())
    }

    /// Blocks until every queued job is answered and the batcher is idle.
    pub fn wait_idle(&self) {
        while self.queued() > 0 || self.batcher.running.load(Ordering::Acquire) {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// Texts waiting or being embedded now.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }

    /// Refuses new jobs from now on; jobs already queued still run.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }
}

/// Creates the queue and its batcher.
///
/// The batcher runs *on* a thread of rayon's global pool, the pool candle's
/// kernels use, rather than beside it: with N threads configured, exactly N
/// threads compute, and after a forward pass one fewer pool thread spins
/// looking for work, which leaves a core free for the reply to reach its
/// client (measured: single query 8.1 -> 6.5 ms, bulk +25%). It runs only
/// while there is work: a submit to an idle queue spawns it, and it returns
/// once the queue is empty, so it never blocks a pool thread that other rayon
/// work in the process may need.
pub fn start(
    registry: Arc<Registry>,
    stats: Arc<Stats>,
    cache: Arc<EmbedCache>,
    max_batch_tokens: usize,
    limit: usize,
) -> Queue {
    let (tx, rx) = crossbeam_channel::unbounded();
    let queued = Arc::new(AtomicUsize::new(0));
    let lanes =
        Arc::new(lane::Lanes::new(registry.clone(), stats.clone(), cache.clone(), queued.clone()));
    let batcher = Arc::new(Batcher {
        registry,
        stats,
        cache,
        rx,
        queued: queued.clone(),
        max_batch_tokens,
        running: AtomicBool::new(false),
    });
    Queue { tx, queued, limit, closed: Arc::new(AtomicBool::new(false)), batcher, lanes }
}

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
    plan::Pending { model: a.job.model, padded: a.padded, lens: &a.lens[a.next..], waited }
}

/// Batches a job may be passed over before it goes first: a long text
/// under a stream of short queries waits at most this many small batches.
const MAX_WAIT_BATCHES: u32 = 8;

/// The message of a caught panic.
pub(crate) fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".into())
}

struct Batcher {
    registry: Arc<Registry>,
    stats: Arc<Stats>,
    cache: Arc<EmbedCache>,
    rx: Receiver<Job>,
    queued: Arc<AtomicUsize>,
    max_batch_tokens: usize,
    /// A drain task is spawned or running.
    running: AtomicBool,
}

impl Batcher {
    /// Makes sure a drain task runs.
    fn wake(self: &Arc<Self>) {
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
        self.queued.fetch_sub(a.job.input.len(), Ordering::AcqRel);
        self.stats.record_error();
        a.job.reply.respond(Err(why));
    }

    fn run_until_empty(&self, active: &mut Vec<Active>) {
        let mut big_batch = false;
        loop {
            while let Ok(job) = self.rx.try_recv() {
                active.push(self.activate(job));
            }
            if active.is_empty() {
                if big_batch {
                    // After large batches, hand their activations' memory back.
                    for m in self.registry.all() {
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
            let embedder = self.registry.get(active[picks[0].0].job.model);
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
            big_batch |= ids.len() * longest >= 256;
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
        let embedder = self.registry.get(job.model);
        let (dim, padded) = (embedder.dim(), embedder.pads_batches());
        let out = vec![0f32; ids.len() * dim];
        Active { job, order, lens, padded, next: 0, out, done: 0, waited: 0, alone: false }
    }

    /// Answers a job whose texts are all embedded. A panic while building
    /// the answer becomes that job's `Internal` error.
    fn finish(&self, a: Active) {
        let n = a.job.input.len();
        self.queued.fetch_sub(n, Ordering::AcqRel);
        let Active { job, out, .. } = a;
        let Job { model, input, reply, received, cached } = job;
        let embedder = self.registry.get(model);
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

/// Why a job whose vector came out NaN or infinite fails.
const NON_FINITE: &str = "the model produced a non-finite embedding (NaN or infinity): its weights \
    are probably corrupt; fetch or import the model again (vembed model fetch)";

/// Returns freed heap memory to the kernel (glibc keeps it otherwise, and a
/// batch's activations are hundreds of MB).
pub(crate) fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory held by the allocator.
    unsafe {
        libc::malloc_trim(0);
    }
}
