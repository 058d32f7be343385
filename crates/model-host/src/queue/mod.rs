//! The one queue: jobs in, each answered once through its own [`Respond`].
//!
//! The inference door ([`crate::infer`]) tokenizes and [`Queue::submit`]s
//! jobs; a job goes to the [`batcher`], which owns the forward passes, or,
//! when its model runs its own calls (a remote model), to that model
//! ([`direct`]). The queue is
//! bounded in texts ([`backlog`]): a submit that would pass the bound fails
//! at once with [`SubmitError::Overloaded`], or, for work that must not be
//! refused, waits for room ([`Queue::submit_waiting`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crossbeam_channel::Sender;

mod answer;
mod backlog;
mod batcher;
mod direct;
mod job;
mod plan;

pub(crate) use batcher::trim_heap;
pub use job::{CachedJob, Input, Job, JobError, Respond, SubmitError};

use crate::cache::EmbedCache;
use crate::stats::Stats;

/// The submitting side of the queue. Cheap to clone.
#[derive(Clone)]
pub struct Queue {
    tx: Sender<Job>,
    backlog: Arc<backlog::Backlog>,
    closed: Arc<AtomicBool>,
    batcher: Arc<batcher::Batcher>,
    direct: Arc<direct::Direct>,
}

impl Queue {
    /// Queues a job, or refuses it at once when the queue is full.
    pub fn submit(&self, job: Job) -> Result<(), SubmitError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(SubmitError::ShuttingDown);
        }
        self.backlog.try_add(job.input.len())?;
        self.enqueue(job)
    }

    /// Queues a job, waiting for room when the queue is full (the indexer:
    /// clients come first, and it waits behind them).
    pub fn submit_waiting(&self, job: Job) -> Result<(), SubmitError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(SubmitError::ShuttingDown);
        }
        self.backlog.add_waiting(job.input.len(), &self.closed)?;
        self.enqueue(job)
    }

    /// Sends a job counted in the backlog to the batcher, or to its model
    /// when the model runs its own calls.
    fn enqueue(&self, job: Job) -> Result<(), SubmitError> {
        let Some(job) = self.direct.run(job) else {
            return Ok(());
        };
        let n = job.input.len();
        self.tx.send(job).map_err(|_| {
            self.backlog.sub(n);
            SubmitError::ShuttingDown
        })?;
        self.batcher.wake();
        Ok(())
    }

    /// Blocks until every queued job is answered and the batcher is idle.
    pub fn wait_idle(&self) {
        while self.queued() > 0 || self.batcher.busy() {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// Texts waiting or being embedded now.
    pub fn queued(&self) -> usize {
        self.backlog.texts()
    }

    /// Refuses new jobs from now on; jobs already queued still run.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }
}

/// Creates the queue and its batcher.
pub fn start(
    stats: Arc<Stats>,
    cache: Arc<EmbedCache>,
    max_batch_tokens: usize,
    limit: usize,
) -> Queue {
    let (tx, rx) = crossbeam_channel::unbounded();
    let backlog = Arc::new(backlog::Backlog::new(limit));
    let direct = Arc::new(direct::Direct {
        stats: stats.clone(),
        cache: cache.clone(),
        backlog: backlog.clone(),
    });
    let batcher =
        Arc::new(batcher::Batcher::new(stats, cache, rx, backlog.clone(), max_batch_tokens));
    Queue { tx, backlog, closed: Arc::new(AtomicBool::new(false)), batcher, direct }
}
