//! Tool selection in the host: the `SelectTools` request.
//!
//! The scoring is `vembed_tools`, the one implementation every client
//! reaches through this request. A tool set's vectors come from the
//! embedding cache (as `EmbedCached`) and are kept, ranked-ready, for the
//! next request that sends the same set with the same model and method; the
//! requests' own embeddings go through the queue like any `Embed`. All of it
//! is asynchronous: the parts are queued jobs, and the last part to finish
//! ranks and answers.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use sha2::{Digest, Sha256};
use vembed_protocol::{Embeddings, SelectToolsRequest, ToolSelections};
use vembed_tools::{Method, Ranker, SelectOptions, ToolSpec, ToolsError};

use crate::infer::{Infer, InferError};
use crate::queue::{JobError, Respond};

/// Tool sets kept at most.
const MAX_SETS: usize = 32;
/// Vector bytes kept at most, all sets together.
const MAX_BYTES: usize = 64 << 20;

/// Why a selection failed.
#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    /// The tool set is not valid.
    #[error("invalid tool set: {0}")]
    Invalid(#[from] ToolsError),
    /// Embedding failed or was refused.
    #[error(transparent)]
    Infer(#[from] InferError),
    /// The embeddings did not fit the tool set (a bug).
    #[error("internal error: {0}")]
    Internal(String),
}

impl SelectError {
    /// The wire error code.
    pub fn code(&self) -> vembed_protocol::ErrorCode {
        match self {
            SelectError::Invalid(_) => vembed_protocol::ErrorCode::InvalidRequest,
            SelectError::Infer(e) => e.code(),
            SelectError::Internal(_) => vembed_protocol::ErrorCode::Internal,
        }
    }
}

/// Where a selection's result goes.
pub type Deliver = Box<dyn FnOnce(Result<ToolSelections, SelectError>) + Send>;

type Key = [u8; 32];

/// The tool sets whose vectors the host holds, most recently used last.
#[derive(Default)]
pub struct Rankers {
    sets: Mutex<Vec<(Key, Arc<Ranker>)>>,
}

impl Rankers {
    fn get(&self, key: &Key) -> Option<Arc<Ranker>> {
        let mut sets = self.sets.lock().unwrap_or_else(|p| p.into_inner());
        let i = sets.iter().position(|(k, _)| k == key)?;
        let entry = sets.remove(i);
        let ranker = entry.1.clone();
        sets.push(entry);
        Some(ranker)
    }

    fn insert(&self, key: Key, ranker: Arc<Ranker>) {
        let mut sets = self.sets.lock().unwrap_or_else(|p| p.into_inner());
        sets.retain(|(k, _)| *k != key);
        sets.push((key, ranker));
        let bytes =
            |s: &[(Key, Arc<Ranker>)]| s.iter().map(|(_, r)| r.vector_bytes()).sum::<usize>();
        while sets.len() > 1 && (sets.len() > MAX_SETS || bytes(&sets) > MAX_BYTES) {
            sets.remove(0);
        }
    }
}

/// The cache key of a tool set: the model's identity, the method and every
/// field of every tool, each length-prefixed.
fn key(identity: &str, method: Method, tools: &[ToolSpec]) -> Key {
    let mut h = Sha256::new();
    let mut put = |s: &str| {
        h.update((s.len() as u64).to_le_bytes());
        h.update(s.as_bytes());
    };
    put(identity);
    put(vembed_tools::method_name(method));
    for t in tools {
        put(&t.name);
        put(&t.description);
        for list in [&t.parameters, &t.use_cases] {
            put(&list.len().to_string());
            list.iter().for_each(|s| put(s));
        }
    }
    h.finalize().into()
}

/// Ranks a tool set against a request's queries; the result goes to
/// `deliver`, now or when the embeddings are done. An `Err` here means
/// `deliver` was not called and will not be.
pub fn select(infer: &Infer, req: SelectToolsRequest, deliver: Deliver) -> Result<(), SelectError> {
    let started = Instant::now();
    vembed_tools::validate(&req.tools)?;
    infer.check(&req.queries)?;
    let model = infer.resolve(&req.model)?;
    let embedder = infer.registry.get(model);
    let key = key(&embedder.identity, req.method, &req.tools);
    let cached = infer.tools.get(&key);
    let opts =
        SelectOptions { k: req.k as usize, threshold: req.threshold, fallback: req.fallback };
    let (texts, owner) = match cached {
        Some(_) => (Vec::new(), Vec::new()),
        None => vembed_tools::texts_to_embed(&req.tools, req.method),
    };
    let per = infer.limits.max_texts_per_request.max(1) as usize;
    for chunk in texts.chunks(per) {
        infer.check(chunk)?;
    }
    let tool_parts = texts.len().div_ceil(per);
    let queries = req.queries;
    let state = Arc::new(Mutex::new(Pending {
        started,
        key,
        rankers: infer.tools.clone(),
        model: embedder.name.clone(),
        tools: if cached.is_none() { req.tools } else { Vec::new() },
        method: req.method,
        owner,
        tools_cached: cached.is_some(),
        ranker: cached,
        parts: vec![None; tool_parts],
        queries: Vec::new(),
        query_vectors: None,
        // Every queued part, and this function until it has queued them all:
        // whichever finishes last ranks and answers.
        remaining: tool_parts + usize::from(!queries.is_empty()) + 1,
        opts,
        deliver: Some(deliver),
    }));
    let submit = |texts: &[String], slot: Slot, cached: bool| {
        let part = Box::new(Part { state: state.clone(), slot });
        infer.embed_on(model, texts, cached, |_| part)
    };
    // The queries first: the queue serves the fewest tokens first anyway.
    let mut submitted =
        if queries.is_empty() { Ok(()) } else { submit(&queries, Slot::Queries, false) };
    for (i, chunk) in texts.chunks(per).enumerate() {
        if submitted.is_err() {
            break;
        }
        submitted = submit(chunk, Slot::Tools(i), true);
    }
    let mut p = state.lock().unwrap_or_else(|p| p.into_inner());
    if let Err(e) = submitted {
        // Parts already queued find no one to deliver to when they finish;
        // if one of them failed already, it has answered.
        return match p.deliver.take() {
            Some(_) => Err(e.into()),
            None => Ok(()),
        };
    }
    p.queries = queries;
    p.done_one();
    Ok(())
}

enum Slot {
    Tools(usize),
    Queries,
}

/// One queued embedding of a selection.
struct Part {
    state: Arc<Mutex<Pending>>,
    slot: Slot,
}

/// A selection waiting for its embeddings.
struct Pending {
    started: Instant,
    key: Key,
    rankers: Arc<Rankers>,
    model: String,
    tools: Vec<ToolSpec>,
    method: Method,
    owner: Vec<usize>,
    tools_cached: bool,
    ranker: Option<Arc<Ranker>>,
    parts: Vec<Option<Embeddings>>,
    queries: Vec<String>,
    query_vectors: Option<Embeddings>,
    remaining: usize,
    opts: SelectOptions,
    deliver: Option<Deliver>,
}

impl Respond for Part {
    fn respond(self: Box<Self>, result: Result<Embeddings, JobError>) {
        let mut p = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if p.deliver.is_none() {
            return;
        }
        match result {
            Err(e) => {
                if let Some(deliver) = p.deliver.take() {
                    deliver(Err(SelectError::Infer(InferError::Job(e))));
                }
            }
            Ok(e) => {
                match self.slot {
                    Slot::Tools(i) => p.parts[i] = Some(e),
                    Slot::Queries => p.query_vectors = Some(e),
                }
                p.done_one();
            }
        }
    }
}

impl Pending {
    /// One part is in; the last one ranks and answers.
    fn done_one(&mut self) {
        self.remaining -= 1;
        if self.remaining == 0 {
            finish(self);
        }
    }
}

/// Builds the ranker if the set was new, ranks every query and answers.
fn finish(p: &mut Pending) {
    let Some(deliver) = p.deliver.take() else { return };
    let ranker = match p.ranker.take() {
        Some(r) => r,
        None => {
            let parts: Vec<Embeddings> = p.parts.drain(..).flatten().collect();
            let dim = parts.first().map_or(0, |e| e.dim as usize);
            let vectors: Vec<f32> = parts.into_iter().flat_map(|e| e.data).collect();
            if dim == 0 || vectors.len() != p.owner.len() * dim {
                let message = format!(
                    "tool vectors: {} floats for {} texts of dim {dim}",
                    vectors.len(),
                    p.owner.len()
                );
                deliver(Err(SelectError::Internal(message)));
                return;
            }
            let owner = std::mem::take(&mut p.owner);
            let r = Arc::new(Ranker::new(&p.tools, p.method, owner, dim, vectors));
            p.rankers.insert(p.key, r.clone());
            r
        }
    };
    let selections = match &p.query_vectors {
        Some(e) => {
            p.queries.iter().zip(e.rows()).map(|(q, v)| ranker.rank(q, v, &p.opts)).collect()
        }
        None => Vec::new(),
    };
    deliver(Ok(ToolSelections {
        model: std::mem::take(&mut p.model),
        selections,
        tools_cached: p.tools_cached,
        host_us: p.started.elapsed().as_micros() as u64,
    }));
}
