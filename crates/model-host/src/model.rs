//! A sentence-transformers model: its tokenizer, its [`Pipeline`] and the
//! [`Backend`] that runs it, read from the model folder's own config files.

use std::path::{Path, PathBuf};

use candle_transformers::models::bert::Config as BertConfig;
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::backend::candle::CandleBackend;
use crate::backend::native::NativeBackend;
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
    pipeline: Pipeline,
    tokenizer: Tokenizer,
    /// The same tokenizer without truncation, to count a text's full length.
    counter: Tokenizer,
    backend: Box<dyn Backend>,
}

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
        let mut counter = Tokenizer::from_file(&tok_path)
            .map_err(|e| ModelError::Config { path: tok_path.clone(), message: e.to_string() })?;
        counter.with_padding(None);
        counter.with_truncation(None).map_err(|e| ModelError::Tokenizer(e.to_string()))?;
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
            Engine::Candle => None,
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
                    Engine::Candle => "the candle engine runs f32 weights only".to_string(),
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
            pipeline,
            tokenizer,
            counter,
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

    /// Embedding dimension.
    pub fn dim(&self) -> usize {
        self.backend.dim()
    }

    /// Word pieces kept per text.
    pub fn max_seq_length(&self) -> usize {
        self.pipeline.max_seq_length
    }

    /// The pipeline read from the folder.
    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// Word pieces of one text with special tokens, without truncation: what
    /// the model would see if it had no limit.
    pub fn count_tokens(&self, text: &str) -> Result<usize, ModelError> {
        let enc = self
            .counter
            .encode_fast(text, true)
            .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        Ok(enc.get_ids().len())
    }

    /// Token ids of one text, with special tokens, truncated to `max_seq_length`.
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>, ModelError> {
        tokenize(&self.tokenizer, text)
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
        let tok = if truncate { &self.tokenizer } else { &self.counter };
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
        self.backend.embed(Batch { ids: &rows })
    }
}

/// Token ids of one text, with special tokens, as `tokenizer` truncates.
fn tokenize(tokenizer: &Tokenizer, text: &str) -> Result<Vec<u32>, ModelError> {
    let enc =
        tokenizer.encode_fast(text, true).map_err(|e| ModelError::Tokenizer(e.to_string()))?;
    Ok(enc.get_ids().to_vec())
}
