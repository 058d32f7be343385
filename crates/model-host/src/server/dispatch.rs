//! One small handler per request kind.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use vembed_protocol::{
    EmbedRequest, Embeddings, ErrorReply, HelloReply, HostStatus, ModelStatus, PROTOCOL_VERSION,
    Request, RequestFrame, Response, ResponseFrame, SelectToolsRequest, ToolSelections,
};

use super::connection::error;
use super::{Shared, StopReason};
use crate::outbox::{Outbox, SocketReply};
use crate::queue::{JobError, Queue, Respond};
use crate::stats;
use crate::tool_select::{self, SelectError};

/// What a handler needs of its connection and host.
pub(super) struct Ctx<'a> {
    pub shared: &'a Shared,
    pub queue: &'a Queue,
    pub outbox: &'a Arc<Outbox>,
    /// The client process (`SO_PEERCRED`), for `vembed status`.
    pub peer_pid: Option<u32>,
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
            let reply = ctx.outbox.admit(0);
            let subscriber = move |r: &Response| {
                reply.send(&ResponseFrame { id, response: r.clone() });
            };
            shared.indexer.index(req, ctx.peer_pid, Box::new(subscriber));
        }
        Request::Search(req) => match shared.indexer.search(&req, ctx.peer_pid) {
            Ok(hits) => send(Response::SearchResults(hits)),
            Err(e) => send(index_error(shared, e)),
        },
        Request::SearchRanked(req) => match shared.indexer.search_ranked(&req, ctx.peer_pid) {
            Ok(hits) => send(Response::RankedResults(hits)),
            Err(e) => send(index_error(shared, e)),
        },
        Request::Status => send(Response::Status(Box::new(status(shared, ctx.queue)))),
        Request::Shutdown => {
            tracing::info!("shutdown requested by a client");
            shared.request_stop(StopReason::Request);
            send(Response::Ok);
        }
        Request::Ping => send(Response::Ok),
        Request::Upstreams => send(Response::Upstreams(shared.infer.registry.upstreams())),
        Request::Indexes => send(Response::Indexes(shared.indexer.statuses())),
        Request::SelectTools(req) => select_tools(ctx, id, req),
    }
}

fn index_error(shared: &Shared, e: crate::indexer::IndexerError) -> Response {
    shared.stats.record_error();
    Response::Error(ErrorReply { code: e.code(), message: e.to_string() })
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
                stats.record_error();
                Response::Error(ErrorReply { code: e.code(), message: e.to_string() })
            }
        };
        reply.send(&ResponseFrame { id, response });
    });
    if let Err(e) = tool_select::select(&ctx.shared.infer, req, deliver) {
        ctx.shared.stats.record_error();
        ctx.outbox.send(&error(id, e.code(), e.to_string()));
    }
}

fn hello(shared: &Shared) -> HelloReply {
    HelloReply {
        version: PROTOCOL_VERSION,
        host_version: env!("CARGO_PKG_VERSION").to_string(),
        pid: std::process::id(),
        models: shared.infer.registry.infos(),
        limits: shared.config.limits,
    }
}

/// A job's result, answered on its connection as a frame.
struct SocketResponder {
    reply: SocketReply,
    id: u64,
}

impl Respond for SocketResponder {
    fn respond(self: Box<Self>, result: Result<Embeddings, JobError>) {
        let response = match result {
            Ok(e) => Response::Embeddings(e),
            Err(e) => Response::Error(ErrorReply { code: e.code(), message: e.to_string() }),
        };
        self.reply.send(&ResponseFrame { id: self.id, response });
    }
}

fn embed(ctx: &Ctx<'_>, id: u64, req: EmbedRequest, cached: bool) {
    let outbox = ctx.outbox;
    let queued = ctx.shared.infer.embed(req, cached, |bytes| {
        // The reply's size is reserved until it is handed to the socket.
        Box::new(SocketResponder { reply: outbox.admit(bytes), id })
    });
    if let Err(e) = queued {
        ctx.shared.stats.record_error();
        outbox.send(&error(id, e.code(), e.to_string()));
    }
}

fn status(shared: &Shared, queue: &Queue) -> HostStatus {
    let (p50, p99) = shared.stats.latency_percentiles();
    let models = shared
        .infer
        .registry
        .infos()
        .into_iter()
        .zip(shared.infer.registry.all())
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
        queue_texts: queue.queued() as u32,
        latency_p50_us: p50,
        latency_p99_us: p99,
        threads: crate::threads() as u32,
        idle_timeout_secs: shared.config.settings.idle_timeout_secs,
        limits: shared.config.limits,
        cache: shared.infer.cache.status(),
    }
}
