//! One small handler per request kind.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use vembed_protocol::{
    EmbedRequest, ErrorCode, ErrorReply, HelloReply, HostStatus, ModelStatus, PROTOCOL_VERSION,
    Request, RequestFrame, Response, ResponseFrame, SelectToolsRequest, ToolSelections,
};

use super::{Shared, StopReason};
use crate::indexer::{Indexer, IndexerError};
use crate::infer::{Model, Work};
use crate::outbox::{EmbedReply, Outbox, error};
use crate::panics::message as panic_message;
use crate::stats;
use crate::tool_select::{self, SelectError};

/// What a handler needs of its connection and host.
pub(super) struct Ctx<'a> {
    pub shared: &'a Shared,
    pub outbox: &'a Arc<Outbox>,
    /// The client process (`SO_PEERCRED`), for `vembed status`.
    pub peer_pid: Option<u32>,
}

/// Answers one request: now when it is quick (status, hello), else later
/// from the inference door, the indexer or a search thread; the reader goes
/// on to the next request meanwhile.
pub(super) fn handle(ctx: &Ctx<'_>, frame: RequestFrame) {
    let RequestFrame { id, request } = frame;
    let shared = ctx.shared;
    let send = |response| ctx.outbox.send(&ResponseFrame { id, response });
    match request {
        Request::Hello(_) => send(Response::Hello(hello(shared))),
        Request::Embed(req) => embed(ctx, id, req, false),
        Request::EmbedCached(req) => embed(ctx, id, req, true),
        Request::Index(req) => {
            let reply = ctx.outbox.admit(0);
            let subscriber = move |r: &Response| {
                reply.send(&ResponseFrame { id, response: r.clone() });
            };
            shared.indexer.index(req, ctx.peer_pid, Box::new(subscriber));
        }
        Request::Search(req) => {
            search(ctx, id, move |ix, pid| ix.search(&req, pid).map(Response::SearchResults))
        }
        Request::SearchRanked(req) => {
            search(ctx, id, move |ix, pid| ix.search_ranked(&req, pid).map(Response::RankedResults))
        }
        Request::Status => send(Response::Status(Box::new(status(shared)))),
        Request::Shutdown => {
            tracing::info!("shutdown requested by a client");
            shared.request_stop(StopReason::Request);
            send(Response::Ok);
        }
        Request::Ping => send(Response::Ok),
        Request::Upstreams => send(Response::Upstreams(shared.infer.upstreams())),
        Request::Indexes => send(Response::Indexes(shared.indexer.statuses())),
        Request::SelectTools(req) => select_tools(ctx, id, req),
    }
}

/// Runs a search on a search thread and answers it from there, so the
/// requests pipelined behind it are read and answered meanwhile.
fn search(
    ctx: &Ctx<'_>,
    id: u64,
    run: impl FnOnce(&Indexer, Option<u32>) -> Result<Response, IndexerError> + Send + 'static,
) {
    let reply = ctx.outbox.admit(0);
    let (indexer, stats, pid) =
        (ctx.shared.indexer.clone(), ctx.shared.stats.clone(), ctx.peer_pid);
    ctx.shared.searches.run(move || {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&indexer, pid)));
        let response = match result {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                stats.record_error();
                Response::Error(ErrorReply { code: e.code(), message: e.to_string() })
            }
            Err(p) => {
                stats.record_error();
                let message = format!("the search failed inside the host: {}", panic_message(&*p));
                tracing::error!("{message}");
                Response::Error(ErrorReply { code: ErrorCode::Internal, message })
            }
        };
        reply.send(&ResponseFrame { id, response });
    });
}

fn select_tools(ctx: &Ctx<'_>, id: u64, req: SelectToolsRequest) {
    // The reply names every tool at most once per query.
    let names: usize = req.tools.iter().map(|t| t.name.len() + 16).sum();
    let reply = ctx.outbox.admit(req.queries.len().saturating_mul(names) + 256);
    let stats = ctx.shared.stats.clone();
    let deliver = Box::new(move |result: Result<ToolSelections, SelectError>| {
        let response = match result {
            Ok(s) => Response::ToolSelections(s),
            Err(e) => {
                // The door and the queue counted their own errors.
                if !matches!(e, SelectError::Infer(_)) {
                    stats.record_error();
                }
                Response::Error(ErrorReply { code: e.code(), message: e.to_string() })
            }
        };
        reply.send(&ResponseFrame { id, response });
    });
    if let Err(e) = tool_select::select(&ctx.shared.infer, &ctx.shared.tools, req, deliver) {
        ctx.shared.stats.record_error();
        ctx.outbox.send(&error(id, e.code(), e.to_string()));
    }
}

fn hello(shared: &Shared) -> HelloReply {
    HelloReply {
        version: PROTOCOL_VERSION,
        host_version: env!("CARGO_PKG_VERSION").to_string(),
        pid: std::process::id(),
        models: shared.infer.infos(),
        limits: shared.config.limits,
    }
}

fn embed(ctx: &Ctx<'_>, id: u64, req: EmbedRequest, cached: bool) {
    let EmbedRequest { model, texts } = req;
    let max = ctx.shared.config.limits.max_texts_per_request as usize;
    let work = Work { cached, ..Work::new(texts, Model::Named(model), max) };
    // The reply's size is reserved until it is handed to the socket.
    let outbox = ctx.outbox;
    ctx.shared.infer.embed(work, |bytes| Box::new(EmbedReply::new(outbox.admit(bytes), id)));
}

fn status(shared: &Shared) -> HostStatus {
    let (p50, p99) = shared.stats.latency_percentiles();
    let models = shared
        .infer
        .infos()
        .into_iter()
        .zip(shared.infer.models())
        .map(|(info, m)| ModelStatus {
            info,
            files: m
                .files
                .iter()
                .filter_map(|f| {
                    let (bytes, resident_bytes) = vembed_models::os::residency(f).ok()?;
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
        queue_texts: shared.infer.queued() as u32,
        latency_p50_us: p50,
        latency_p99_us: p99,
        threads: crate::threads() as u32,
        idle_timeout_secs: shared.config.settings.idle_timeout_secs,
        limits: shared.config.limits,
        cache: shared.infer.cache_status(),
    }
}
