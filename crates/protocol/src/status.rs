//! What `vembed status` reads: the host's status, its remote models'
//! counters and its code indexes (the `Status`, `Upstreams` and `Indexes`
//! replies).

use serde::{Deserialize, Serialize};

use crate::{Limits, ModelInfo};

/// What `vembed status` shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostStatus {
    /// The host's process id.
    pub pid: u32,
    /// The host's package version.
    pub host_version: String,
    /// Milliseconds since the host started.
    pub uptime_ms: u64,
    /// The socket the host listens on.
    pub socket: String,
    /// Loaded models with their files' page-cache residency.
    pub models: Vec<ModelStatus>,
    /// The host's memory, from `/proc/self`.
    pub memory: MemoryStatus,
    /// Connections open now.
    pub clients: u32,
    /// Connections accepted since start.
    pub connections_total: u64,
    /// Embed requests answered with embeddings.
    pub requests: u64,
    /// Texts embedded.
    pub texts: u64,
    /// Requests answered with an error.
    pub errors: u64,
    /// Forward passes run.
    pub batches: u64,
    /// Texts waiting in the queue now.
    pub queue_texts: u32,
    /// Median embed latency in the host (queue + forward), microseconds, over the last 4096 requests.
    pub latency_p50_us: u64,
    /// 99th percentile of the same.
    pub latency_p99_us: u64,
    /// Inference threads.
    pub threads: u32,
    /// Seconds without clients before the host exits; 0 means never.
    pub idle_timeout_secs: u64,
    /// The limits in force.
    pub limits: Limits,
    /// The embedding cache (`EmbedCached`).
    pub cache: CacheStatus,
}

/// A remote model: where its service is and how its calls go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpstreamStatus {
    /// The model's name in settings.
    pub model: String,
    /// The request shape: `openai`, `ollama` or `tei`.
    pub provider: String,
    /// The service's URL, without user info or query.
    pub url: String,
    /// The model name sent to the service.
    pub remote_model: String,
    /// Floats per vector.
    pub dim: u32,
    /// Calls in flight at most.
    pub concurrency: u32,
    /// Calls answered with embeddings.
    pub calls: u64,
    /// Texts embedded.
    pub texts: u64,
    /// Calls that failed after their retries.
    pub errors: u64,
    /// Retries made.
    pub retries: u64,
    /// Calls in flight now.
    pub in_flight: u32,
    /// Median call latency, microseconds, over the last 4096 calls
    /// (retries included).
    pub latency_p50_us: u64,
    /// 99th percentile of the same.
    pub latency_p99_us: u64,
    /// The last error, if any.
    pub last_error: Option<String>,
}

/// Counters of the host's embedding cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheStatus {
    /// Texts answered from memory.
    pub hits: u64,
    /// Texts answered from the cache file on disk (then kept in memory).
    pub disk_hits: u64,
    /// Texts that had to be embedded.
    pub misses: u64,
    /// Entries in memory now, all models.
    pub entries: u64,
}

/// A loaded model and its files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelStatus {
    /// The model.
    pub info: ModelInfo,
    /// Its files and how much of each sits in the page cache.
    pub files: Vec<FileResidency>,
}

/// How much of a file is in the page cache (`mincore`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileResidency {
    /// The file.
    pub path: String,
    /// Its size.
    pub bytes: u64,
    /// Bytes of it resident in the page cache.
    pub resident_bytes: u64,
}

/// Memory of the host process, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryStatus {
    /// Resident set size.
    pub rss: u64,
    /// Proportional set size: shared pages divided among the processes sharing them.
    pub pss: u64,
    /// Anonymous resident memory (heap, stacks).
    pub rss_anon: u64,
    /// File-backed resident memory (mapped files, the binary).
    pub rss_file: u64,
    /// Peak resident set size (`VmHWM`).
    pub peak_rss: u64,
}

/// A code index the host has opened, and who used it through the host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexStatus {
    /// The repository's canonical path.
    pub root: String,
    /// Where the index lives.
    pub index_dir: String,
    /// The model that built it (`name (sha256 prefix, dim)`).
    pub model: String,
    /// Files indexed.
    pub files: u64,
    /// Snippets indexed.
    pub snippets: u64,
    /// The index's size on disk.
    pub disk_bytes: u64,
    /// When it was last written (unix seconds; 0 never).
    pub updated_unix: u64,
    /// Indexing jobs this host ran on it (requests that joined a running
    /// job are not counted again).
    pub jobs: u64,
    /// Files those jobs embedded (new or changed).
    pub files_embedded: u64,
    /// Searches this host answered from it.
    pub searches: u64,
    /// When a client last indexed or searched it through the host (unix
    /// seconds).
    pub last_used_unix: u64,
    /// The processes that indexed or searched it through the host, most
    /// recent first (at most 16; 0 for an HTTP caller). A client that
    /// opens the index itself (`vembed search` in process) is not seen.
    pub clients: Vec<u32>,
}
