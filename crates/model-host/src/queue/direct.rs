//! Jobs of a model that runs its own calls (a remote model, whose backend
//! has a [`Runner`](crate::backend::Runner)): the queue hands the texts to
//! the model and answers the job from what its [`Sink`] hears, through the
//! same cache and counters as a job of the batcher.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Instant;

use super::answer;
use super::backlog::Backlog;
use super::job::{CachedJob, Input, Job, JobError, Respond};
use crate::backend::{BackendError, Sink};
use crate::cache::EmbedCache;
use crate::model::Embedder;
use crate::stats::Stats;

/// What every such job's answer needs.
pub(super) struct Direct {
    pub(super) stats: Arc<Stats>,
    pub(super) cache: Arc<EmbedCache>,
    pub(super) backlog: Arc<Backlog>,
}

/// One job out with its model's runner.
struct JobSink {
    direct: Arc<Direct>,
    model: Arc<Embedder>,
    texts: usize,
    tokens: Vec<u32>,
    cached: Option<CachedJob>,
    reply: Box<dyn Respond>,
    received: Instant,
}

impl Direct {
    /// Hands a job's texts (counted in the backlog already) to its model,
    /// or gives the job back when its model has no runner of its own.
    pub(super) fn run(self: &Arc<Self>, job: Job) -> Option<Job> {
        let model = job.model.clone();
        let Some(runner) = model.runner() else {
            return Some(job);
        };
        let Job { model: _, input, reply, received, cached } = job;
        let Input::Texts { texts, tokens } = input else {
            // The door gives such a model texts, never token ids.
            self.backlog.sub(input.len());
            self.stats.record_error();
            let why = format!("model {} reads texts, and was given token ids", model.name);
            reply.respond(Err(JobError::Panicked(why)));
            return None;
        };
        let sink = JobSink {
            direct: self.clone(),
            model: model.clone(),
            texts: texts.len(),
            tokens,
            cached,
            reply,
            received,
        };
        runner.run(texts, Box::new(sink));
        None
    }
}

impl Sink for JobSink {
    fn called(&self, texts: usize) {
        self.direct.stats.record_batch(texts);
    }

    fn done(self: Box<Self>, result: Result<Vec<f32>, BackendError>) {
        let JobSink { direct, model, texts, tokens, cached, reply, received } = *self;
        direct.backlog.sub(texts);
        let out = match result {
            Ok(out) if out.len() == texts * model.dim() => out,
            Ok(out) => {
                let message = format!("{} floats for {texts} texts", out.len());
                direct.stats.record_error();
                let why = BackendError::Upstream { status: None, message };
                reply.respond(Err(JobError::Backend(why)));
                return;
            }
            Err(e) => {
                direct.stats.record_error();
                reply.respond(Err(JobError::Backend(e)));
                return;
            }
        };
        let answered = catch_unwind(AssertUnwindSafe(|| {
            answer::embeddings(&direct.cache, &direct.stats, &model, tokens, out, cached, received)
        }))
        .map_err(|p| {
            direct.stats.record_error();
            JobError::Panicked(format!("answering the request: {}", crate::panics::message(&*p)))
        });
        reply.respond(answered);
    }
}
