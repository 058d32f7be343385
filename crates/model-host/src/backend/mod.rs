//! The compute behind a model: a small sync trait, as TEI has it. A backend
//! embeds batches of token ids into finished sentence embeddings (pooled and
//! normalized as the model's pipeline says). vembed's own forward pass
//! ([`native`]) and candle-transformers' `BertModel` ([`candle`]) implement
//! it. [`remote`] sends texts to an embedding service instead, and runs its
//! own calls on its own lanes ([`Backend::runner`]): a job of texts goes in,
//! one answer comes out through the job's [`Sink`].

pub mod candle;
pub mod native;
pub mod remote;

/// Which implementation runs the encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Engine {
    /// vembed's own forward pass (the `bert` module): unpadded, fused, AVX-512.
    /// Models it does not implement fall back to candle.
    #[default]
    Native,
    /// candle-transformers' stock `BertModel`, batches padded.
    Candle,
    /// A remote embedding service (`[remote.NAME]` in settings).
    Remote,
}

impl std::str::FromStr for Engine {
    type Err = String;
    fn from_str(s: &str) -> Result<Engine, String> {
        match s {
            "native" => Ok(Engine::Native),
            "candle" => Ok(Engine::Candle),
            other => Err(format!("engine must be \"native\" or \"candle\", got {other:?}")),
        }
    }
}

/// Why a batch could not be embedded. `Clone`, so one failure can answer
/// every request of the batch.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// The engine reported an error.
    #[error("the {engine:?} engine failed: {message}")]
    Failed {
        /// Which engine.
        engine: Engine,
        /// What it said.
        message: String,
    },
    /// The forward pass panicked (a bug): the batch's requests get `Internal`.
    #[error("the forward pass panicked: {0}")]
    Panicked(String),
    /// A remote model's service failed, could not be reached, or answered
    /// something other than the embeddings asked for. Answered as the wire
    /// code `Upstream` (HTTP 502).
    #[error("{}", upstream_message(*status, message))]
    Upstream {
        /// The service's HTTP status; none when no answer came (refused,
        /// reset, timed out).
        status: Option<u16>,
        /// What went wrong, with the service's URL and its own words;
        /// never an API key.
        message: String,
    },
}

fn upstream_message(status: Option<u16>, message: &str) -> String {
    match status {
        Some(s) => format!("upstream answered HTTP {s}: {message}"),
        None => format!("upstream unreachable: {message}"),
    }
}

/// One batch: token ids per text, special tokens included, already
/// truncated to the model's limit; or, for a backend that reads texts
/// ([`Backend::runner`]), the texts themselves.
#[derive(Debug, Clone, Copy)]
pub struct Batch<'a> {
    /// The texts' token ids (empty for a backend that reads texts).
    pub ids: &'a [&'a [u32]],
    /// The texts (empty for a backend that reads token ids).
    pub texts: &'a [&'a str],
}

impl Batch<'_> {
    /// Texts in the batch.
    pub fn len(&self) -> usize {
        self.ids.len().max(self.texts.len())
    }

    /// Whether the batch holds no text.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How a backend that runs its own calls ([`Runner`]) feeds its service:
/// calls of at most `texts_per_call` texts, `concurrency` at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Feed {
    /// Most texts in one call.
    pub texts_per_call: usize,
    /// Calls in flight at once.
    pub concurrency: usize,
}

/// A model's compute.
pub trait Backend: Send + Sync {
    /// Embeds every text of the batch: `ids.len() × dim()` floats, in order.
    fn embed(&self, batch: Batch<'_>) -> Result<Vec<f32>, BackendError>;
    /// Floats per embedding.
    fn dim(&self) -> usize;
    /// Whether a batch costs `texts × longest` tokens (padding) rather than
    /// its real token count.
    fn pads(&self) -> bool;
    /// Which engine this is.
    fn engine(&self) -> Engine;
    /// Frees what a large batch left behind.
    fn release_buffers(&self) {}
    /// For a backend that runs its own calls on texts (a remote service,
    /// which tokenizes them itself), what takes its jobs; `None` for a local
    /// forward pass, whose jobs of token ids the batcher runs.
    fn runner(&self) -> Option<&dyn Runner> {
        None
    }
    /// A remote backend's service and counters, for `vembed status`.
    fn upstream(&self) -> Option<vembed_protocol::UpstreamStatus> {
        None
    }
}

/// What takes whole jobs of texts for a backend that runs its own calls
/// (a remote service's lanes), instead of the batcher.
pub trait Runner: Send + Sync {
    /// Embeds every text of a job, answering through `sink` once.
    fn run(&self, texts: Vec<String>, sink: Box<dyn Sink>);
    /// How the calls are cut and how many run at once (the indexer sizes
    /// its requests by it).
    fn feed(&self) -> Feed;
}

/// Where a job given to a [`Runner`] reports.
pub trait Sink: Send {
    /// One call of `texts` texts was made.
    fn called(&self, texts: usize);
    /// The job's `texts × dim` floats in order, or the first error; called
    /// once, after the last [`Sink::called`].
    fn done(self: Box<Self>, result: Result<Vec<f32>, BackendError>);
}
