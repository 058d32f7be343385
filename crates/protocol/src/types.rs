use serde::{Deserialize, Serialize};

use crate::status::{HostStatus, IndexStatus, UpstreamStatus};

/// Every client-to-host frame: a request id chosen by the client, echoed in
/// the matching [`ResponseFrame`], and the request itself. Ids let a client
/// pipeline several requests on one connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestFrame {
    /// Chosen by the client; echoed back unchanged.
    pub id: u64,
    /// What the client asks for.
    pub request: Request,
}

/// Every host-to-client frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResponseFrame {
    /// The id of the request this answers (0 for a reply to an unreadable frame).
    pub id: u64,
    /// The answer.
    pub response: Response,
}

/// A request. The variant order is part of the wire format: append only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// Must be the first frame on a connection (tag 0).
    Hello(Hello),
    /// Embed texts with one model (tag 1).
    Embed(EmbedRequest),
    /// Ask for the host's status (tag 2).
    Status,
    /// Ask the host to stop after finishing requests in flight (tag 3).
    Shutdown,
    /// Liveness check; answered with [`Response::Ok`] (tag 4).
    Ping,
    /// Like `Embed`, but texts the host has embedded with this model before
    /// are answered from its cache (memory, then disk) and only the others
    /// run through the model; the new ones are cached. For texts that recur
    /// across processes and restarts, such as tool descriptions (tag 5).
    EmbedCached(EmbedRequest),
    /// Build or update the code index of a repository (tag 6). The host
    /// answers with zero or more [`Response::IndexProgress`] and then one
    /// [`Response::IndexDone`] (or an error), all with this request's id.
    /// Two requests for the same index share one job.
    Index(IndexRequest),
    /// Search a repository's code index through the host, for clients that
    /// cannot open LMDB themselves (tag 7). Answered with
    /// [`Response::SearchResults`].
    Search(SearchRequest),
    /// Rank a tool set against requests on the host (tag 8): the one
    /// implementation of tool selection, for clients in every language. The
    /// host keeps the tool set's vectors (from its embedding cache) for
    /// later requests that send the same set. Answered with
    /// [`Response::ToolSelections`].
    SelectTools(SelectToolsRequest),
    /// Search a repository's code index in a chosen mode (semantic,
    /// lexical or hybrid), every hit carrying its rank and score in each
    /// ranking (tag 9). Answered with [`Response::RankedResults`]. The
    /// ranking is the one `vembed search` and the Rust API compute.
    SearchRanked(RankedSearchRequest),
    /// Ask for the remote models' counters (tag 10). Answered with
    /// [`Response::Upstreams`].
    Upstreams,
    /// Ask for the code indexes this host has opened, with who used them
    /// (tag 11). Answered with [`Response::Indexes`].
    Indexes,
}

/// Rank tools against requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SelectToolsRequest {
    /// The model (normally `Role(Tools)`).
    pub model: ModelRef,
    /// The tool set: 1 to 1000 tools, names unique and non-empty,
    /// descriptions non-empty.
    pub tools: Vec<ToolSpec>,
    /// How tools are scored.
    pub method: ToolMethod,
    /// The requests to rank tools for, at most
    /// [`Limits::max_texts_per_request`]; one selection each, in order.
    pub queries: Vec<String>,
    /// Most tools returned per request (when some pass the threshold).
    pub k: u32,
    /// Least score kept.
    pub threshold: f32,
    /// What to return when no tool reaches the threshold.
    pub fallback: ToolFallback,
}

/// One tool of a tool set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    /// Its name, as the LLM calls it.
    pub name: String,
    /// What it does.
    pub description: String,
    /// Its parameters' names.
    pub parameters: Vec<String>,
    /// Requests it serves, in the words a user would use.
    pub use_cases: Vec<String>,
}

/// How tools are scored against a request. The variant order is part of the
/// wire format: append only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ToolMethod {
    /// Victor's: cosine with one text per tool (`name. description.
    /// Parameters: a, b. Use for: x; y.`).
    Plain,
    /// Cosine with one text per tool, identifiers split into words.
    Split,
    /// The best cosine over the tool's text (split) and each use case alone.
    MaxSim,
    /// `max-sim` plus a lexical score: the idf-weighted share of the
    /// request's words found in the tool's text.
    Hybrid,
}

/// What a selection holds when no tool reaches the threshold. The variant
/// order is part of the wire format: append only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ToolFallback {
    /// Every tool, ranked (Victor's choice: let the LLM decide).
    All,
    /// The top k, whatever their scores.
    TopK,
}

/// The answer to a [`SelectToolsRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolSelections {
    /// The canonical name of the model that ranked them.
    pub model: String,
    /// One selection per request, in request order; each best first.
    pub selections: Vec<Vec<ToolPick>>,
    /// Whether the host already held this tool set's vectors.
    pub tools_cached: bool,
    /// Microseconds the host spent on the request.
    pub host_us: u64,
}

/// A selected tool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolPick {
    /// The tool's name.
    pub name: String,
    /// Its score (cosine, plus the lexical part for `hybrid`).
    pub score: f32,
}

/// Index a repository.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexRequest {
    /// The repository root (absolute, or relative to the host's cwd).
    pub repo: String,
    /// Where the index lives; `None` is the default under the cache dir.
    pub index_dir: Option<String>,
    /// Empty the index first (needed after changing the code model).
    pub rebuild: bool,
}

/// Search a repository's index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchRequest {
    /// The repository root.
    pub repo: String,
    /// Where the index lives; `None` is the default.
    pub index_dir: Option<String>,
    /// The query.
    pub query: String,
    /// How many results.
    pub k: u32,
}

/// How a code search ranks snippets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SearchMode {
    /// By the cosine of the snippet's embedding with the query's (tag 0).
    Semantic,
    /// By BM25 over code tokens, identifiers split (tag 1). No embedding.
    Lexical,
    /// Both rankings fused by normalised score (tag 2): the best on the
    /// docstring → function dev set, and the default.
    #[default]
    Hybrid,
}

impl SearchMode {
    /// The mode's name in the CLI, JSON and Python (`semantic`, ...).
    pub fn name(self) -> &'static str {
        match self {
            SearchMode::Semantic => "semantic",
            SearchMode::Lexical => "lexical",
            SearchMode::Hybrid => "hybrid",
        }
    }

    /// The mode named `name`, if any.
    pub fn from_name(name: &str) -> Option<SearchMode> {
        [SearchMode::Semantic, SearchMode::Lexical, SearchMode::Hybrid]
            .into_iter()
            .find(|m| m.name() == name)
    }
}

/// Search a repository's index in a mode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RankedSearchRequest {
    /// The repository root.
    pub repo: String,
    /// Where the index lives; `None` is the default.
    pub index_dir: Option<String>,
    /// The query.
    pub query: String,
    /// How many results (at most 10,000).
    pub k: u32,
    /// How to rank.
    pub mode: SearchMode,
}

/// A snippet's place in one ranking.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Rank {
    /// 1-based.
    pub rank: u32,
    /// Cosine similarity (semantic) or BM25 (lexical).
    pub score: f32,
}

/// One result of a [`RankedSearchRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RankedSearchHit {
    /// The snippet; its `score` is the mode's own (cosine, BM25, or the
    /// fused score).
    pub hit: SearchHit,
    /// Its place in the semantic ranking, where that ranking found it.
    pub semantic: Option<Rank>,
    /// Its place in the lexical ranking, where that ranking found it.
    pub lexical: Option<Rank>,
}

/// How an indexing job is going.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IndexProgress {
    /// Files found (after ignore rules).
    pub files_seen: u64,
    /// Files that need embedding (new or changed).
    pub files_to_index: u64,
    /// Of those, done and committed.
    pub files_indexed: u64,
    /// Snippets embedded and committed so far.
    pub chunks_added: u64,
}

/// The end of an indexing job.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IndexSummary {
    /// The index's directory.
    pub index_dir: String,
    /// Files found (after ignore rules).
    pub files_seen: u64,
    /// New or changed files, embedded.
    pub indexed: u64,
    /// Files whose content hash was unchanged.
    pub unchanged: u64,
    /// Files gone from the repository, removed from the index.
    pub deleted: u64,
    /// Files skipped: binary or larger than the limit.
    pub skipped: u64,
    /// Snippets added.
    pub chunks_added: u64,
    /// Snippets removed (of changed and deleted files).
    pub chunks_removed: u64,
    /// Word pieces embedded.
    pub tokens: u64,
    /// Wall time.
    pub seconds: f64,
}

/// One search result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchHit {
    /// Path relative to the repository root.
    pub path: String,
    /// First line, 1-based.
    pub start_line: u32,
    /// Last line, inclusive.
    pub end_line: u32,
    /// The enclosing symbol, where known.
    pub symbol: Option<String>,
    /// Cosine similarity to the query.
    pub score: f32,
    /// The snippet.
    pub text: String,
}

/// The handshake a client opens with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    /// [`crate::PROTOCOL_VERSION`] of the client. Its offset in the frame is fixed.
    pub version: u32,
    /// A free-form client name for the host's logs, such as `vembed-cli/0.1.0`.
    pub client: String,
}

/// Which model an embed request wants.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ModelRef {
    /// The model configured for a role.
    Role(Role),
    /// A model by name, alias, folder path or weights sha256. A model the
    /// host has not loaded is loaded on first use when it is on disk.
    Name(String),
}

/// As a person reads it: `"nosuch/model"`, or `the tools model
/// (embedding_model)`.
impl std::fmt::Display for ModelRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModelRef::Name(n) => write!(f, "{n:?}"),
            ModelRef::Role(Role::Unified) => {
                write!(f, "the default model (unified_embedding_model)")
            }
            ModelRef::Role(r) => write!(f, "the {} model ({})", r.job(), r.setting()),
        }
    }
}

/// The jobs a model is configured for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Role {
    /// `unified_embedding_model`: the default for both jobs.
    Unified,
    /// `embedding_model`: semantic tool selection.
    Tools,
    /// `codebase_embedding_model`: code search.
    Code,
}

impl Role {
    /// The setting that names this role's model.
    pub fn setting(self) -> &'static str {
        match self {
            Role::Unified => "unified_embedding_model",
            Role::Tools => "embedding_model",
            Role::Code => "codebase_embedding_model",
        }
    }

    /// The job, in a word: `default`, `tools` or `code`.
    pub fn job(self) -> &'static str {
        match self {
            Role::Unified => "default",
            Role::Tools => "tools",
            Role::Code => "code",
        }
    }
}

/// Texts to embed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbedRequest {
    /// The model to use.
    pub model: ModelRef,
    /// The texts, each at most [`Limits::max_text_bytes`] bytes of UTF-8.
    pub texts: Vec<String>,
}

/// A response. The variant order is part of the wire format: append only, and
/// `Error` stays tag 0 forever so any client can read a host's refusal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Response {
    /// The request failed (tag 0).
    Error(ErrorReply),
    /// The handshake succeeded (tag 1).
    Hello(HelloReply),
    /// The embeddings of an [`EmbedRequest`] (tag 2).
    Embeddings(Embeddings),
    /// The host's status (tag 3).
    Status(Box<HostStatus>),
    /// Acknowledges `Ping` and `Shutdown` (tag 4).
    Ok,
    /// Progress of an [`IndexRequest`] (tag 5).
    IndexProgress(IndexProgress),
    /// An [`IndexRequest`] is done (tag 6).
    IndexDone(IndexSummary),
    /// Results of a [`SearchRequest`], best first (tag 7).
    SearchResults(Vec<SearchHit>),
    /// The ranked tools of a [`SelectToolsRequest`] (tag 8).
    ToolSelections(ToolSelections),
    /// Results of a [`RankedSearchRequest`], best first (tag 9).
    RankedResults(Vec<RankedSearchHit>),
    /// The remote models and their counters, for [`Request::Upstreams`]
    /// (tag 10); empty when every model is local.
    Upstreams(Vec<UpstreamStatus>),
    /// The code indexes the host has opened since it started, for
    /// [`Request::Indexes`] (tag 11), most recently used first.
    Indexes(Vec<IndexStatus>),
}

/// What the host tells a client after a good handshake.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HelloReply {
    /// The host's [`crate::PROTOCOL_VERSION`].
    pub version: u32,
    /// The host's package version, such as `0.1.0`.
    pub host_version: String,
    /// The host's process id.
    pub pid: u32,
    /// The models loaded, one entry per loaded instance.
    pub models: Vec<ModelInfo>,
    /// The limits every request must respect.
    pub limits: Limits,
}

/// One loaded model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// The canonical name, such as `sentence-transformers/all-MiniLM-L6-v2`.
    pub name: String,
    /// Hex sha256 of `model.safetensors`: the model's identity.
    pub sha256: String,
    /// Embedding dimension.
    pub dim: u32,
    /// Word pieces per text after truncation, counting `[CLS]` and `[SEP]`.
    pub max_seq_length: u32,
    /// The roles this instance serves.
    pub roles: Vec<Role>,
    /// The folder it was loaded from.
    pub path: String,
    /// The weights' sha256 and the pooling pipeline, hashed: two instances
    /// give comparable embeddings exactly when their identities are equal.
    pub identity: String,
}

/// Hard limits of a host. Going over one gets a typed error reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Largest frame payload accepted, in bytes.
    pub max_frame_bytes: u32,
    /// Most texts in one [`EmbedRequest`].
    pub max_texts_per_request: u32,
    /// Largest single text, in bytes of UTF-8.
    pub max_text_bytes: u32,
    /// Tokens per forward pass (the candle engine counts padding: batch
    /// size × longest sequence).
    pub max_batch_tokens: u32,
    /// Texts waiting in the host's queue before it answers `Overloaded`.
    pub max_queue_texts: u32,
}

/// Embeddings, one row per input text, in input order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Embeddings {
    /// The canonical name of the model that produced them.
    pub model: String,
    /// Floats per embedding.
    pub dim: u32,
    /// Word pieces per text after truncation, counting `[CLS]` and `[SEP]`.
    pub tokens: Vec<u32>,
    /// `tokens.len() * dim` floats, row-major.
    pub data: Vec<f32>,
    /// Microseconds the host spent on the request, from reading it to
    /// answering (tokenizing, queueing, forward passes). A client's round trip
    /// minus this is the cost of the socket and framing.
    pub host_us: u64,
}

impl Embeddings {
    /// The number of embeddings.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The rows, one slice of `dim` floats per text.
    pub fn rows(&self) -> impl ExactSizeIterator<Item = &[f32]> {
        self.data.chunks_exact(self.dim.max(1) as usize)
    }
}

/// A failed request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorReply {
    /// What kind of failure.
    pub code: ErrorCode,
    /// One line for a human.
    pub message: String,
}

/// Kinds of failure. The variant order is part of the wire format: append only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ErrorCode {
    /// The client speaks another protocol version. The host closes the connection.
    VersionMismatch,
    /// A frame could not be decoded. The connection stays usable.
    Malformed,
    /// A frame was longer than [`Limits::max_frame_bytes`]; it was skipped.
    FrameTooLarge,
    /// More texts than [`Limits::max_texts_per_request`].
    TooManyTexts,
    /// A text longer than [`Limits::max_text_bytes`].
    TextTooLarge,
    /// The queue is full; retry later.
    Overloaded,
    /// The model asked for is not loaded and cannot be loaded (not on disk).
    UnknownModel,
    /// The peer runs as another user. The host closes the connection.
    PermissionDenied,
    /// A request came before the handshake. The host closes the connection.
    HandshakeRequired,
    /// The host is shutting down and takes no new work.
    ShuttingDown,
    /// The model failed on this input (a bug or a broken model, never bad input).
    Internal,
    /// A code index cannot be used: built by another model, another schema,
    /// missing, or an I/O error. The message says how to fix it.
    Index,
    /// The request decoded but its content is not valid (an empty or
    /// duplicate tool name, say); the message says what to change.
    InvalidRequest,
    /// A remote model's service failed, was unreachable, or answered
    /// something that is not the embeddings asked for; the message has its
    /// HTTP status and what it said. Retry later; local models still serve.
    Upstream,
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}
