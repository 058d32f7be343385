//! A sentence-transformers model: its tokenizer, its [`Pipeline`] and the
//! [`Backend`] that runs it, read from the model folder's own config files.

use std::path::{Path, PathBuf};

use candle_transformers::models::bert::Config as BertConfig;
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::backend::candle::CandleBackend;
use crate::backend::native::NativeBackend;
use crate::backend::remote::{self, RemoteBackend, RemoteError};
use crate::backend::{Backend, BackendError, Batch};
use crate::bert::{self, Bert};
use crate::pipeline::{Pipeline, read_json};
use crate::precision::{self, Precision};
use crate::weights::Weights;

/// Errors loading or running a model.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ModelError {
    /// A config file is missing or invalid.
    #[error("{path}: {message}")]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The folder uses a sentence-transformers module vembed does not implement.
    #[error("{path}: unsupported {what}: {name}")]
    Unsupported {
        /// The file that names it.
        path: PathBuf,
        /// What kind of thing.
        what: &'static str,
        /// Its name.
        name: String,
    },
    /// The tokenizer failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// candle failed.
    #[error("model: {0}")]
    Candle(String),
    /// Model lookup failed.
    #[error("{0}")]
    Store(String),
    /// The native encoder failed to load.
    #[error(transparent)]
    Native(#[from] bert::BertError),
    /// The warm-up forward pass failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// A remote model could not be set up.
    #[error(transparent)]
    Remote(#[from] RemoteError),
    /// Reduced-precision weights were asked for and cannot be used: they
    /// failed the quality gate on this model, or the engine has no such form.
    #[error("{model}: weights = \"{precision}\" refused: {message}")]
    Precision {
        /// The model.
        model: String,
        /// The precision asked for.
        precision: &'static str,
        /// Why, with the gate's figures.
        message: String,
    },
}

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

impl From<candle_core::Error> for ModelError {
    fn from(e: candle_core::Error) -> Self {
        ModelError::Candle(e.to_string())
    }
}

/// One token of a text (see [`Embedder::tokens_of`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    /// Its id in the model's vocabulary.
    pub id: u32,
    /// The text it covers (the token itself for a special token).
    pub text: String,
    /// `[CLS]`, `[SEP]` and the like.
    pub special: bool,
    /// Its byte range in the input; none for a special token.
    pub range: Option<(usize, usize)>,
}

/// A loaded model, ready to embed.
pub struct Embedder {
    /// Canonical name.
    pub name: String,
    /// Hex sha256 of the weights.
    pub sha256: String,
    /// The folder.
    pub path: PathBuf,
    /// Files worth reporting page-cache residency for.
    pub files: Vec<PathBuf>,
    /// What makes two instances give the same vectors: the weights' sha256
    /// and the pipeline, hashed (32 hex digits), and the weights' precision
    /// when it is not f32. Keys the embedding cache; indexes store it.
    pub identity: String,
    /// How the linear layers' weights are held.
    pub precision: Precision,
    /// None for a remote model: its service pools and normalizes.
    pipeline: Option<Pipeline>,
    /// None for a remote model: its service tokenizes.
    tokenizer: Option<Tokenizer>,
    /// Counts a text's full length.
    counter: Counter,
    max_seq_length: usize,
    backend: Box<dyn Backend>,
}

/// How a model counts a text's tokens.
enum Counter {
    /// Exactly, with the model's tokenizer (truncation off).
    Tokenizer(Box<Tokenizer>),
    /// Exactly for OpenAI's embedding models: cl100k_base.
    Cl100k,
    /// An estimate for a remote model without a local tokenizer: one
    /// token per 4 bytes.
    Estimate,
}

/// Bytes per token a remote model without a tokenizer is estimated at.
const BYTES_PER_TOKEN: usize = 4;

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedder").field("name", &self.name).field("path", &self.path).finish()
    }
}

impl Embedder {
    /// Resolves a model name (or path) and loads it with f32 weights.
    pub fn load_named(name: &str, engine: Engine) -> Result<Embedder, ModelError> {
        Embedder::load_named_with(name, engine, Precision::F32)
    }

    /// Resolves a model name (or path) and loads it with its linear layers
    /// in `precision` (which must pass the quality gate).
    pub fn load_named_with(
        name: &str,
        engine: Engine,
        precision: Precision,
    ) -> Result<Embedder, ModelError> {
        let dir = vembed_models::resolve(name).map_err(|e| ModelError::Store(e.to_string()))?;
        let sha = dir.sha256().map_err(|e| ModelError::Store(e.to_string()))?;
        Embedder::load(&dir.name, &dir.path, sha, engine, precision)
    }

    /// Loads the model in `dir`. The native engine reads f32 weights in
    /// place from the memory-mapped file and packs the linear layers in
    /// `precision`; candle copies f32 weights into tensors.
    pub fn load(
        name: &str,
        dir: &Path,
        sha256: String,
        engine: Engine,
        precision: Precision,
    ) -> Result<Embedder, ModelError> {
        let config_path = dir.join("config.json");
        let bert: BertConfig = read_json(&config_path)?.ok_or_else(|| ModelError::Config {
            path: config_path.clone(),
            message: "missing".into(),
        })?;
        let bert_hidden = bert.hidden_size;
        let pipeline = Pipeline::read(dir, &bert)?;
        let weights_path = dir.join("model.safetensors");
        let weights = Weights::open(&weights_path).map_err(|e| ModelError::Config {
            path: weights_path.clone(),
            message: e.to_string(),
        })?;
        crate::weights::check_finite(weights.bytes())
            .map_err(|message| ModelError::Config { path: weights_path.clone(), message })?;
        drop(weights);
        let tok_path = dir.join("tokenizer.json");
        let counter = untruncated(&tok_path)?;
        let mut tokenizer = Tokenizer::from_file(&tok_path)
            .map_err(|e| ModelError::Config { path: tok_path.clone(), message: e.to_string() })?;
        // tokenizer.json may carry its own truncation and fixed padding (all-MiniLM-L6-v2:
        // 128 and 128). sentence-transformers truncates at max_seq_length and pads per batch.
        tokenizer
            .with_truncation(Some(TruncationParams {
                direction: TruncationDirection::Right,
                max_length: pipeline.max_seq_length,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
            }))
            .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        tokenizer.with_padding(None);

        let native = match engine {
            Engine::Native => {
                let config: bert::Config = read_json(&config_path)?.ok_or_else(|| {
                    ModelError::Config { path: config_path.clone(), message: "missing".into() }
                })?;
                match Bert::load(dir, &config) {
                    Ok(bert) => Some(bert),
                    Err(e @ bert::BertError::Unsupported(_)) => {
                        tracing::warn!("{}: {e}; using candle", dir.display());
                        None
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Engine::Candle | Engine::Remote => None,
        };
        let refuse = |message: String| ModelError::Precision {
            model: name.to_string(),
            precision: precision.name(),
            message,
        };
        let backend: Box<dyn Backend> = match native {
            Some(bert) => {
                let mut native = NativeBackend::new(bert, pipeline.clone(), bert_hidden);
                if let Some(why) = precision.unsupported() {
                    return Err(refuse(why));
                }
                if precision != Precision::F32 {
                    let texts = precision::probe_texts();
                    let ids = texts
                        .iter()
                        .map(|t| tokenize(&tokenizer, t))
                        .collect::<Result<Vec<_>, _>>()?;
                    let reference = precision::embed_alone(&native, &ids)?;
                    native.set_precision(precision);
                    let reduced = precision::embed_alone(&native, &ids)?;
                    let report = precision::compare(&texts, &reference, &reduced);
                    if !report.passes(precision) {
                        return Err(refuse(format!(
                            "it fails the quality gate: the least cosine to f32 over {} probe texts is {:.7} (on {:?}), the mean {:.7}; the gate is {}. Use weights = \"f32\"",
                            texts.len(),
                            report.least,
                            report.worst,
                            report.mean,
                            precision::threshold(precision)
                        )));
                    }
                    tracing::info!(
                        "{name}: {} weights pass the quality gate (least cosine to f32 {:.7}, mean {:.7}, over {} probe texts; the gate is {})",
                        precision.name(),
                        report.least,
                        report.mean,
                        texts.len(),
                        precision::threshold(precision)
                    );
                }
                Box::new(native)
            }
            None if precision != Precision::F32 => {
                return Err(refuse(match engine {
                    Engine::Candle | Engine::Remote => {
                        "the candle engine runs f32 weights only".to_string()
                    }
                    Engine::Native => {
                        "the native encoder does not implement this model, and candle runs f32 weights only"
                            .to_string()
                    }
                }));
            }
            None => Box::new(CandleBackend::load(dir, &bert, pipeline.clone())?),
        };

        let files = ["model.safetensors", "tokenizer.json"].iter().map(|f| dir.join(f)).collect();
        let identity = {
            use sha2::Digest;
            // f32 keeps the key it always had, so existing indexes and caches
            // stay valid; another precision gives other vectors and another key.
            let key = match precision {
                Precision::F32 => format!("{sha256}|{pipeline:?}"),
                p => format!("{sha256}|{pipeline:?}|weights={}", p.name()),
            };
            let digest = sha2::Sha256::digest(key.as_bytes());
            digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
        };
        let embedder = Embedder {
            name: name.to_string(),
            sha256,
            path: dir.to_path_buf(),
            files,
            identity,
            precision,
            max_seq_length: pipeline.max_seq_length,
            pipeline: Some(pipeline),
            tokenizer: Some(tokenizer),
            counter: Counter::Tokenizer(Box::new(counter)),
            backend,
        };
        if crate::fault::armed() {
            crate::fault::set_marker(embedder.tokenize(crate::fault::MARKER)?);
        }
        // Warm start: one real forward pass so the first request pays no first-touch costs.
        embedder.embed_ids(&[embedder.tokenize("warm up")?])?;
        // Packing read every mapped weight; a query needs none of them again.
        embedder.release_buffers();
        Ok(embedder)
    }

    /// Sets up the remote model `name` (`[remote.NAME]` in settings): its
    /// API key, its dimension (declared, or asked of the service), and what
    /// counts its tokens.
    pub fn remote(name: &str, config: &vembed_models::RemoteModel) -> Result<Embedder, ModelError> {
        let backend = RemoteBackend::connect(name, config)?;
        let (counter, local_max) = match &config.tokenizer {
            Some(t) => {
                let dir = vembed_models::resolve(t).map_err(|e| {
                    ModelError::Store(format!("[remote.{name}] tokenizer {t:?}: {e}"))
                })?;
                let max = crate::pipeline::read_pipeline(&dir.path).ok().map(|p| p.max_seq_length);
                (Counter::Tokenizer(Box::new(untruncated(&dir.path.join("tokenizer.json"))?)), max)
            }
            None if config.provider == vembed_models::Provider::Openai => (Counter::Cl100k, None),
            None => (Counter::Estimate, None),
        };
        let max_seq_length = config
            .max_input_tokens
            .map(|n| n as usize)
            .or(local_max)
            .unwrap_or(config.provider.default_max_input_tokens() as usize);
        let dim = backend.dim();
        Ok(Embedder {
            name: name.to_string(),
            sha256: String::new(),
            path: PathBuf::from(config.public_url()),
            files: Vec::new(),
            identity: remote::identity(config, dim),
            precision: Precision::F32,
            pipeline: None,
            tokenizer: None,
            counter,
            max_seq_length,
            backend: Box::new(backend),
        })
    }

    /// Embedding dimension.
    pub fn dim(&self) -> usize {
        self.backend.dim()
    }

    /// Tokens kept per text: word pieces for a local model, the service's
    /// input limit for a remote one.
    pub fn max_seq_length(&self) -> usize {
        self.max_seq_length
    }

    /// The pipeline read from the folder; none for a remote model.
    pub fn pipeline(&self) -> Option<&Pipeline> {
        self.pipeline.as_ref()
    }

    /// Whether its vectors come out unit length: as its pipeline says for a
    /// local model; always for a remote one (OpenAI's and Ollama's are, and
    /// TEI is asked to normalize).
    pub fn normalizes(&self) -> bool {
        self.pipeline.as_ref().is_none_or(|p| p.normalize)
    }

    /// Whether this is a remote model (its service tokenizes and embeds).
    pub fn is_remote(&self) -> bool {
        self.backend.feed().is_some()
    }

    /// Whether [`Embedder::count_tokens`] is exact rather than an estimate.
    pub fn counts_exactly(&self) -> bool {
        !matches!(self.counter, Counter::Estimate)
    }

    /// Tokens of one text (special tokens included), without truncation:
    /// what the model would see if it had no limit. An estimate for a remote
    /// model without a tokenizer ([`Embedder::counts_exactly`]).
    pub fn count_tokens(&self, text: &str) -> Result<usize, ModelError> {
        match &self.counter {
            Counter::Tokenizer(t) => {
                let enc =
                    t.encode_fast(text, true).map_err(|e| ModelError::Tokenizer(e.to_string()))?;
                Ok(enc.get_ids().len())
            }
            Counter::Cl100k => Ok(tiktoken_rs::cl100k_base_singleton().encode_ordinary(text).len()),
            Counter::Estimate => Ok(text.len().div_ceil(BYTES_PER_TOKEN)),
        }
    }

    /// Token ids of one text, with special tokens, truncated to `max_seq_length`.
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>, ModelError> {
        tokenize(self.local_tokenizer()?, text)
    }

    fn local_tokenizer(&self) -> Result<&Tokenizer, ModelError> {
        self.tokenizer.as_ref().ok_or_else(|| {
            ModelError::Tokenizer(format!(
                "{} is a remote model: its service tokenizes, and token ids are not available here",
                self.name
            ))
        })
    }

    /// The tokens of one text as TEI's `/tokenize` lists them: id, text,
    /// whether it is a special token, and its byte range in `text` (none
    /// for special tokens). Truncated to `max_seq_length` when `truncate`.
    pub fn tokens_of(
        &self,
        text: &str,
        add_special_tokens: bool,
        truncate: bool,
    ) -> Result<Vec<TokenInfo>, ModelError> {
        let tok = match (&self.counter, truncate) {
            (Counter::Tokenizer(c), false) if self.tokenizer.is_some() => c,
            _ => self.local_tokenizer()?,
        };
        let enc = tok
            // `encode` tracks byte offsets; `encode_fast` does not.
            .encode(text, add_special_tokens)
            .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        let special = enc.get_special_tokens_mask();
        Ok(enc
            .get_ids()
            .iter()
            .zip(enc.get_tokens())
            .zip(enc.get_offsets())
            .zip(special)
            .map(|(((&id, token), &(start, stop)), &sp)| {
                let special = sp == 1;
                let range = (!special).then_some((start, stop));
                let text = range
                    .and_then(|(a, b)| text.get(a..b))
                    .map_or_else(|| token.clone(), str::to_string);
                TokenInfo { id, text, special, range }
            })
            .collect())
    }

    /// Which engine runs this model.
    pub fn engine(&self) -> Engine {
        self.backend.engine()
    }

    /// Whether a batch costs its padded size (`texts × longest`) rather
    /// than its real token count.
    pub fn pads_batches(&self) -> bool {
        self.backend.pads()
    }

    /// Frees buffers a large batch left behind.
    pub fn release_buffers(&self) {
        self.backend.release_buffers();
    }

    /// How a remote model is fed (texts per call, calls in flight); none
    /// for a local model, whose jobs go through the batcher.
    pub fn feed(&self) -> Option<crate::backend::Feed> {
        self.backend.feed()
    }

    /// A remote model's service and counters.
    pub fn upstream(&self) -> Option<vembed_protocol::UpstreamStatus> {
        self.backend.upstream()
    }

    /// Embeds texts on a remote model's service (one call, retried as its
    /// settings say). Returns `texts.len() * dim()` floats.
    pub fn embed_texts(&self, texts: &[&str]) -> Result<Vec<f32>, BackendError> {
        self.backend.embed(Batch { ids: &[], texts })
    }

    /// Embeds texts given as token ids in one forward pass.
    /// Returns `ids.len() * dim()` floats.
    pub fn embed_ids<T: AsRef<[u32]>>(&self, ids: &[T]) -> Result<Vec<f32>, BackendError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        struct Disarm;
        impl Drop for Disarm {
            fn drop(&mut self) {
                crate::fault::after_forward();
            }
        }
        let _disarm = Disarm;
        crate::fault::before_forward(ids);
        let rows: Vec<&[u32]> = ids.iter().map(AsRef::as_ref).collect();
        self.backend.embed(Batch { ids: &rows, texts: &[] })
    }
}

/// The tokenizer in `path` with truncation and padding off, to count a
/// text's full length.
fn untruncated(path: &Path) -> Result<Tokenizer, ModelError> {
    let mut t = Tokenizer::from_file(path)
        .map_err(|e| ModelError::Config { path: path.to_path_buf(), message: e.to_string() })?;
    t.with_padding(None);
    t.with_truncation(None).map_err(|e| ModelError::Tokenizer(e.to_string()))?;
    Ok(t)
}

/// Token ids of one text, with special tokens, as `tokenizer` truncates.
fn tokenize(tokenizer: &Tokenizer, text: &str) -> Result<Vec<u32>, ModelError> {
    let enc =
        tokenizer.encode_fast(text, true).map_err(|e| ModelError::Tokenizer(e.to_string()))?;
    Ok(enc.get_ids().to_vec())
}
