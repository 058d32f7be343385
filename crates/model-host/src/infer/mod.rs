//! The inference door: the one way in for embedding work, from every front
//! door (the socket, HTTP, tool selection, the indexer).
//!
//! A [`Work`] goes in with the caller's [`Reply`]; exactly one result comes
//! out through it: every vector in input order, or one typed
//! [`InferError`]. On the way the door validates the request against the
//! limits, resolves the model (loading one named on first use), answers
//! what it can from the embedding cache, splits the rest into jobs of the
//! host's size, tokenizes them on the caller's thread, and queues them
//! (refused at once in a full queue, or, for [`Class::Background`] work,
//! waiting for room); [`whole`] reassembles the parts. Nothing else builds a
//! job or touches the queue.

mod error;
mod prepare;
#[cfg(test)]
mod tests;
mod whole;
mod work;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use vembed_protocol::{Limits, ModelInfo, ModelRef, UpstreamStatus};

pub use error::InferError;
pub use work::{Class, Model, Reply, Work};

use crate::cache::{self, EmbedCache, TextHash};
use crate::model::{Embedder, ModelError};
use crate::queue::{CachedJob, Job, Queue, SubmitError};
use crate::registry::Registry;
use crate::stats::Stats;

/// What every front door shares to embed.
pub struct Infer {
    registry: Arc<Registry>,
    cache: Arc<EmbedCache>,
    queue: Queue,
    limits: Limits,
    stop: Arc<AtomicBool>,
    stats: Arc<Stats>,
}

impl Infer {
    /// The door in front of `queue`, for the models of `registry`.
    pub fn new(
        registry: Arc<Registry>,
        cache: Arc<EmbedCache>,
        queue: Queue,
        limits: Limits,
        stop: Arc<AtomicBool>,
        stats: Arc<Stats>,
    ) -> Infer {
        Infer { registry, cache, queue, limits, stop, stats }
    }

    /// Embeds `work`. `reply` is given the size of the answer to expect, in
    /// bytes (0 for an error), and returns where the result goes; it is
    /// called once, before anything is queued. The result comes through it
    /// later, or now when the request is refused.
    pub fn embed(&self, work: Work, reply: impl FnOnce(usize) -> Box<dyn Reply>) {
        let received = Instant::now();
        let model = match self.admit(&work) {
            Ok(m) => m,
            Err(e) => return self.refuse(reply(0), e),
        };
        let bytes = vembed_protocol::embeddings_reply_bytes(work.texts.len(), model.dim());
        let reply = reply(bytes);
        if work.texts.is_empty() {
            let empty = vembed_protocol::Embeddings {
                model: model.name.clone(),
                dim: model.dim() as u32,
                tokens: Vec::new(),
                data: Vec::new(),
                host_us: received.elapsed().as_micros() as u64,
            };
            return reply.reply(Ok(empty));
        }
        let step = (self.limits.max_texts_per_request as usize).max(1);
        let parts = work.texts.len().div_ceil(step);
        let whole = whole::Whole::new(parts, reply);
        for (index, texts) in work.texts.chunks(step).enumerate() {
            let first = index * step;
            let job = self.job(&model, texts, first, &work, received, whole.part(index));
            let queued = job.and_then(|job| {
                match work.class {
                    Class::Interactive => self.queue.submit(job),
                    Class::Background => self.queue.submit_waiting(job),
                }
                .map_err(|e| match e {
                    SubmitError::Overloaded { queued, limit } => {
                        InferError::Overloaded { queued, limit }
                    }
                    SubmitError::ShuttingDown => InferError::ShuttingDown,
                })
            });
            if let Err(e) = queued {
                // Parts already queued run, and find the request answered.
                self.stats.record_error();
                return whole.fail(e);
            }
        }
    }

    /// Checks a request before anything of it is queued: the host is
    /// running, the count and sizes are within the limits, and the model is
    /// served. (A text too long for the model, when it must not be
    /// truncated, is found as it is tokenized.)
    fn admit(&self, work: &Work) -> Result<Arc<Embedder>, InferError> {
        if self.stop.load(Ordering::Acquire) {
            return Err(InferError::ShuttingDown);
        }
        self.check(&work.texts, work.max_texts)?;
        let model = match &work.model {
            Model::Loaded(m) => m.clone(),
            Model::Named(r) => self.model(r)?,
        };
        Ok(model)
    }

    /// Checks texts against the limits: at most `max_texts` of them, each
    /// at most `max_text_bytes` long.
    pub fn check(&self, texts: &[String], max_texts: usize) -> Result<(), InferError> {
        if texts.len() > max_texts {
            return Err(InferError::TooManyTexts { n: texts.len(), limit: max_texts });
        }
        let max_bytes = self.limits.max_text_bytes;
        if let Some((index, t)) =
            texts.iter().enumerate().find(|(_, t)| t.len() > max_bytes as usize)
        {
            return Err(InferError::TextTooLarge { index, bytes: t.len(), limit: max_bytes });
        }
        Ok(())
    }

    /// One job of a request: the texts `all`, which start at text `first`
    /// of `work`; its cached texts answered from the cache, the rest
    /// tokenized.
    fn job(
        &self,
        model: &Arc<Embedder>,
        all: &[String],
        first: usize,
        work: &Work,
        received: Instant,
        reply: Box<dyn crate::queue::Respond>,
    ) -> Result<Job, InferError> {
        let (texts, places, cached) = if work.cached {
            let hashes: Vec<TextHash> = all.iter().map(|t| cache::text_hash(t)).collect();
            let hits = self.cache.get(&model.identity, model.dim(), &hashes);
            let (mut misses, mut places, mut miss_hashes) = (Vec::new(), Vec::new(), Vec::new());
            for (i, ((t, h), hit)) in all.iter().zip(&hashes).zip(&hits).enumerate() {
                if hit.is_none() {
                    misses.push(t.as_str());
                    places.push(first + i);
                    miss_hashes.push(*h);
                }
            }
            let cached = CachedJob { identity: model.identity.clone(), hits, miss_hashes };
            (misses, Some(places), Some(cached))
        } else {
            (all.iter().map(String::as_str).collect(), None, None)
        };
        let place = |i: usize| places.as_ref().map_or(first + i, |p| p[i]);
        let input = prepare::input(model, &texts, place, work.truncate)?;
        Ok(Job { model: model.clone(), input, reply, received, cached })
    }

    /// Answers a refused request.
    fn refuse(&self, reply: Box<dyn Reply>, e: InferError) {
        self.stats.record_error();
        reply.reply(Err(e));
    }

    /// The model a request names, loading a model the host was not started
    /// with if it is on disk.
    pub fn model(&self, model: &ModelRef) -> Result<Arc<Embedder>, InferError> {
        // Loading runs third-party code on files: a panic is this request's error.
        let loaded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.registry.lookup_or_load(model)
        }))
        .unwrap_or_else(|_| Err(ModelError::Store("loading it panicked".into())));
        loaded.map(|i| self.registry.get(i)).map_err(|e| InferError::UnknownModel {
            model: model.to_string(),
            reason: e.to_string(),
            served: self.registry.all().iter().map(|m| m.name.clone()).collect(),
        })
    }

    /// Every model loaded now, in registry order.
    pub fn models(&self) -> Vec<Arc<Embedder>> {
        self.registry.all()
    }

    /// What `Hello` and `/v1/models` list of the loaded models.
    pub fn infos(&self) -> Vec<ModelInfo> {
        self.registry.infos()
    }

    /// The remote models' services and counters.
    pub fn upstreams(&self) -> Vec<UpstreamStatus> {
        self.registry.upstreams()
    }

    /// The limits a request must keep.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Texts waiting in the queue or being embedded now.
    pub fn queued(&self) -> usize {
        self.queue.queued()
    }

    /// The embedding cache's counters.
    pub fn cache_status(&self) -> vembed_protocol::CacheStatus {
        self.cache.status()
    }

    /// Whether the host has stopped taking work.
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }
}
