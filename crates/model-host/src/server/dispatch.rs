//! One small handler per request kind.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use vembed_protocol::{
    EmbedRequest, ErrorCode, ErrorReply, HelloReply, HostStatus, ModelStatus, PROTOCOL_VERSION,
    Request, RequestFrame, Response, ResponseFrame,
};

use super::connection::error;
use super::{Shared, StopReason};
use crate::cache::{self, TextHash};
use crate::outbox::Outbox;
use crate::queue::{CachedJob, Job, Queue, Reply, SubmitError};
use crate::stats;

/// What a handler needs of its connection and host.
pub(super) struct Ctx<'a> {
    pub shared: &'a Shared,
    pub queue: &'a Queue,
    pub outbox: &'a Arc<Outbox>,
}

/// Answers one request (now, or later through the queue or the indexer).
pub(super) fn handle(ctx: &Ctx<'_>, frame: RequestFrame) {
    let RequestFrame { id, request } = frame;
    let shared = ctx.shared;
    let send = |response| ctx.outbox.send(&ResponseFrame { id, response });
    match request {
        Request::Hello(_) => send(Response::Hello(hello(shared))),
        Request::Embed(req) => embed(ctx, id, req, false),
        Request::EmbedCached(req) => embed(ctx, id, req, true),
        Request::Index(req) => {
            shared.indexer.index(req, Reply::Socket(ctx.outbox.admit(0)), id);
        }
        Request::Search(req) => match shared.indexer.search(&req) {
            Ok(hits) => send(Response::SearchResults(hits)),
            Err(message) => {
                shared.stats.record_error();
                send(Response::Error(ErrorReply { code: ErrorCode::Index, message }));
            }
        },
        Request::Status => send(Response::Status(Box::new(status(shared, ctx.queue)))),
        Request::Shutdown => {
            tracing::info!("shutdown requested by a client");
            shared.request_stop(StopReason::Request);
            send(Response::Ok);
        }
        Request::Ping => send(Response::Ok),
    }
}

fn hello(shared: &Shared) -> HelloReply {
    HelloReply {
        version: PROTOCOL_VERSION,
        host_version: env!("CARGO_PKG_VERSION").to_string(),
        pid: std::process::id(),
        models: shared.registry.infos(),
        limits: shared.config.limits,
    }
}

fn embed(ctx: &Ctx<'_>, id: u64, req: EmbedRequest, cached: bool) {
    if let Err(reply) = submit_embed(ctx, id, req, cached) {
        ctx.shared.stats.record_error();
        ctx.outbox.send(&reply);
    }
}

fn submit_embed(
    ctx: &Ctx<'_>,
    id: u64,
    req: EmbedRequest,
    cached: bool,
) -> Result<(), ResponseFrame> {
    let shared = ctx.shared;
    let limits = shared.config.limits;
    if req.texts.len() > limits.max_texts_per_request as usize {
        return Err(error(
            id,
            ErrorCode::TooManyTexts,
            format!(
                "{} texts in one request; the limit is {} (split the request)",
                req.texts.len(),
                limits.max_texts_per_request
            ),
        ));
    }
    if let Some((i, t)) =
        req.texts.iter().enumerate().find(|(_, t)| t.len() > limits.max_text_bytes as usize)
    {
        return Err(error(
            id,
            ErrorCode::TextTooLarge,
            format!("text {i} is {} bytes; the limit is {} bytes", t.len(), limits.max_text_bytes),
        ));
    }
    // A model the host was not started with is loaded now, if it is on disk.
    // Loading runs third-party code on files from disk: a panic is this
    // request's error.
    let loaded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        shared.registry.lookup_or_load(&req.model)
    }))
    .unwrap_or_else(|_| Err(crate::model::ModelError::Store("loading the model panicked".into())));
    let model = match loaded {
        Ok(m) => m,
        Err(e) => {
            let served: Vec<String> =
                shared.registry.all().iter().map(|m| m.name.clone()).collect();
            return Err(error(
                id,
                ErrorCode::UnknownModel,
                format!("cannot serve model {:?}: {e} (serving: {})", req.model, served.join(", ")),
            ));
        }
    };
    if shared.stop.load(Ordering::Acquire) {
        return Err(error(id, ErrorCode::ShuttingDown, "the host is shutting down"));
    }
    let received = Instant::now();
    let embedder = shared.registry.get(model);
    // Cached texts are answered from the cache; only the others are embedded.
    let (texts, cached) = if cached {
        let hashes: Vec<TextHash> = req.texts.iter().map(|t| cache::text_hash(t)).collect();
        let hits = shared.cache.get(&embedder.identity, embedder.dim(), &hashes);
        let mut misses = Vec::new();
        let mut miss_hashes = Vec::new();
        for ((t, h), hit) in req.texts.iter().zip(&hashes).zip(&hits) {
            if hit.is_none() {
                misses.push(t.as_str());
                miss_hashes.push(*h);
            }
        }
        (misses, Some(CachedJob { identity: embedder.identity.clone(), hits, miss_hashes }))
    } else {
        (req.texts.iter().map(String::as_str).collect(), None)
    };
    let mut ids = Vec::with_capacity(texts.len());
    for t in texts {
        // The tokenizer is third-party code fed untrusted text: a panic in it
        // becomes this request's error, not a dead connection.
        let tokenized =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| embedder.tokenize(t)))
                .unwrap_or_else(|_| {
                    Err(crate::model::ModelError::Tokenizer("tokenizer panicked".into()))
                });
        ids.push(tokenized.map_err(|e| error(id, ErrorCode::Internal, e.to_string()))?);
    }
    // The reply's size, reserved until it is handed to the socket.
    let reply_bytes = req.texts.len() * (embedder.dim() * 4 + 4) + 64;
    let reply = Reply::Socket(ctx.outbox.admit(reply_bytes));
    let job = Job { model, ids, id, reply, received, cached };
    ctx.queue.submit(job).map_err(|e| match e {
        SubmitError::Overloaded { .. } => error(id, ErrorCode::Overloaded, e.to_string()),
        SubmitError::ShuttingDown => error(id, ErrorCode::ShuttingDown, e.to_string()),
    })
}

fn status(shared: &Shared, queue: &Queue) -> HostStatus {
    let (p50, p99) = shared.stats.latency_percentiles();
    let models = shared
        .registry
        .infos()
        .into_iter()
        .zip(shared.registry.all())
        .map(|(info, m)| ModelStatus {
            info,
            files: m
                .files
                .iter()
                .filter_map(|f| {
                    let (bytes, resident_bytes) = crate::weights::residency(f).ok()?;
                    Some(vembed_protocol::FileResidency {
                        path: f.display().to_string(),
                        bytes,
                        resident_bytes,
                    })
                })
                .collect(),
        })
        .collect();
    HostStatus {
        pid: std::process::id(),
        host_version: env!("CARGO_PKG_VERSION").to_string(),
        uptime_ms: shared.started.elapsed().as_millis() as u64,
        socket: shared.config.socket.display().to_string(),
        models,
        memory: stats::memory_of("self"),
        clients: shared.clients.load(Ordering::Acquire) as u32,
        connections_total: shared.stats.connections.load(Ordering::Relaxed),
        requests: shared.stats.requests.load(Ordering::Relaxed),
        texts: shared.stats.texts.load(Ordering::Relaxed),
        errors: shared.stats.errors.load(Ordering::Relaxed),
        batches: shared.stats.batches.load(Ordering::Relaxed),
        queue_texts: queue.queued() as u32,
        latency_p50_us: p50,
        latency_p99_us: p99,
        threads: crate::threads() as u32,
        idle_timeout_secs: shared.config.settings.idle_timeout_secs,
        limits: shared.config.limits,
        cache: shared.cache.status(),
    }
}
