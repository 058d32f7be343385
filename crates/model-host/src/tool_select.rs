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

use crate::infer::{Infer, InferError, Model, Reply, Work};

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
pub fn select(
    infer: &Infer,
    rankers: &Arc<Rankers>,
    req: SelectToolsRequest,
    deliver: Deliver,
) -> Result<(), SelectError> {
    let started = Instant::now();
    vembed_tools::validate(&req.tools)?;
    let embedder = infer.model(&req.model)?;
    let key = key(&embedder.identity, req.method, &req.tools);
    let cached = rankers.get(&key);
    let opts =
        SelectOptions { k: req.k as usize, threshold: req.threshold, fallback: req.fallback };
    let (texts, owner) = match cached {
        Some(_) => (Vec::new(), Vec::new()),
        None => vembed_tools::texts_to_embed(&req.tools, req.method),
    };
    let queries = req.queries;
    let parts = usize::from(!texts.is_empty()) + usize::from(!queries.is_empty());
    let state = Arc::new(Mutex::new(Pending {
        started,
        key,
        rankers: rankers.clone(),
        model: embedder.name.clone(),
        tools: if cached.is_none() { req.tools } else { Vec::new() },
        method: req.method,
        owner,
        tools_cached: cached.is_some(),
        ranker: cached,
        tool_vectors: None,
        queries: queries.clone(),
        query_vectors: None,
        // Every request to the door, and this function until it has made
        // them all: whichever finishes last ranks and answers.
        remaining: parts + 1,
        opts,
        deliver: Some(deliver),
    }));
    let max = infer.limits().max_texts_per_request as usize;
    // The queries first: the queue serves the fewest tokens first anyway.
    if !queries.is_empty() {
        let work = Work::new(queries, Model::Loaded(embedder.clone()), max);
        infer.embed(work, |_| Box::new(Part { state: state.clone(), slot: Slot::Queries }));
    }
    if !texts.is_empty() {
        // The tool texts come from a validated tool set of any size: the
        // door splits them into jobs, and caches each.
        let work = Work { cached: true, ..Work::new(texts, Model::Loaded(embedder), usize::MAX) };
        infer.embed(work, |_| Box::new(Part { state: state.clone(), slot: Slot::Tools }));
    }
    state.lock().unwrap_or_else(|p| p.into_inner()).done_one();
    Ok(())
}

enum Slot {
    Tools,
    Queries,
}

/// One embedding request of a selection.
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
    tool_vectors: Option<Embeddings>,
    queries: Vec<String>,
    query_vectors: Option<Embeddings>,
    remaining: usize,
    opts: SelectOptions,
    deliver: Option<Deliver>,
}

impl Reply for Part {
    fn reply(self: Box<Self>, result: Result<Embeddings, InferError>) {
        let mut p = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if p.deliver.is_none() {
            return;
        }
        match result {
            Err(e) => {
                if let Some(deliver) = p.deliver.take() {
                    deliver(Err(SelectError::Infer(e)));
                }
            }
            Ok(e) => {
                match self.slot {
                    Slot::Tools => p.tool_vectors = Some(e),
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
            let (dim, vectors) =
                p.tool_vectors.take().map_or((0, Vec::new()), |e| (e.dim as usize, e.data));
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
