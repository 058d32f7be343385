//! A sentence-transformers model: tokenizer, BERT encoder, pooling and
//! normalization, read from the model folder's own config files.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config as BertConfig};
use serde::Deserialize;
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::bert::{self, Bert, Scratch};
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
    /// The native encoder failed.
    #[error(transparent)]
    Native(#[from] bert::BertError),
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

enum Encoder {
    Native { bert: Bert, scratch: std::sync::Mutex<Scratch> },
    Candle { model: BertModel, device: Device },
}

impl From<candle_core::Error> for ModelError {
    fn from(e: candle_core::Error) -> Self {
        ModelError::Candle(e.to_string())
    }
}

/// How token embeddings become one sentence embedding. Several modes
/// concatenate in sentence-transformers' order: cls, max, mean, mean-sqrt-len.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pooling {
    /// The `[CLS]` token's embedding.
    pub cls: bool,
    /// Element-wise max over real tokens.
    pub max: bool,
    /// Mean over real tokens.
    pub mean: bool,
    /// Sum over real tokens divided by the square root of their count.
    pub mean_sqrt_len: bool,
}

impl Pooling {
    fn modes(&self) -> usize {
        [self.cls, self.max, self.mean, self.mean_sqrt_len].iter().filter(|&&b| b).count()
    }
}

#[derive(Deserialize)]
struct ModuleEntry {
    path: String,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct PoolingConfig {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
    #[serde(default)]
    pooling_mode_weightedmean_tokens: bool,
    #[serde(default)]
    pooling_mode_lasttoken: bool,
}

#[derive(Deserialize)]
struct SbertConfig {
    max_seq_length: Option<usize>,
}

#[derive(Deserialize)]
struct TokenizerConfig {
    model_max_length: Option<f64>,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, ModelError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| ModelError::Config { path: path.to_path_buf(), message: e.to_string() }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ModelError::Config { path: path.to_path_buf(), message: e.to_string() }),
    }
}

/// The pipeline a folder describes: pooling, normalization and sequence limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pipeline {
    /// The pooling modes.
    pub pooling: Pooling,
    /// Whether a `Normalize` module follows pooling.
    pub normalize: bool,
    /// Word pieces kept per text, counting special tokens.
    pub max_seq_length: usize,
}

impl Pipeline {
    /// Reads `modules.json`, the pooling config and `sentence_bert_config.json`
    /// as sentence-transformers does. A folder without `modules.json` is a
    /// plain transformer with mean pooling, as sentence-transformers builds it.
    pub fn read(dir: &Path, bert: &BertConfig) -> Result<Pipeline, ModelError> {
        let modules_path = dir.join("modules.json");
        let mut pooling = None;
        let mut normalize = false;
        match read_json::<Vec<ModuleEntry>>(&modules_path)? {
            // No modules.json: sentence-transformers wraps a plain transformer with mean pooling.
            None => {
                pooling = Some(Pooling { cls: false, max: false, mean: true, mean_sqrt_len: false })
            }
            Some(modules) => {
                for (i, m) in modules.iter().enumerate() {
                    let kind = m.kind.rsplit('.').next().unwrap_or(&m.kind);
                    match (i, kind) {
                        (0, "Transformer") => {}
                        (_, "Pooling") if pooling.is_none() => {
                            pooling = Some(read_pooling(&dir.join(&m.path).join("config.json"))?);
                        }
                        (_, "Normalize") if pooling.is_some() => normalize = true,
                        _ => {
                            return Err(ModelError::Unsupported {
                                path: modules_path,
                                what: "module",
                                name: m.kind.clone(),
                            });
                        }
                    }
                }
            }
        }
        let pooling = pooling.ok_or_else(|| ModelError::Config {
            path: modules_path.clone(),
            message: "no Pooling module".into(),
        })?;
        let sbert: Option<SbertConfig> = read_json(&dir.join("sentence_bert_config.json"))?;
        let tok: Option<TokenizerConfig> = read_json(&dir.join("tokenizer_config.json"))?;
        let model_max = tok
            .and_then(|t| t.model_max_length)
            .filter(|&m| m > 0.0 && m < 1e9)
            .map(|m| m as usize);
        let max_seq_length = sbert
            .and_then(|s| s.max_seq_length)
            .or(model_max)
            .unwrap_or(bert.max_position_embeddings)
            .min(bert.max_position_embeddings);
        Ok(Pipeline { pooling, normalize, max_seq_length })
    }
}

/// Reads a folder's pipeline without loading the model.
pub fn read_pipeline(dir: &Path) -> Result<Pipeline, ModelError> {
    let config_path = dir.join("config.json");
    let bert: BertConfig = read_json(&config_path)?.ok_or_else(|| ModelError::Config {
        path: config_path.clone(),
        message: "missing".into(),
    })?;
    Pipeline::read(dir, &bert)
}

fn read_pooling(path: &Path) -> Result<Pooling, ModelError> {
    let c: PoolingConfig = read_json(path)?.ok_or_else(|| ModelError::Config {
        path: path.to_path_buf(),
        message: "missing".into(),
    })?;
    for (on, name) in [
        (c.pooling_mode_weightedmean_tokens, "weightedmean pooling"),
        (c.pooling_mode_lasttoken, "lasttoken pooling"),
    ] {
        if on {
            return Err(ModelError::Unsupported {
                path: path.into(),
                what: "pooling",
                name: name.into(),
            });
        }
    }
    let p = Pooling {
        cls: c.pooling_mode_cls_token,
        max: c.pooling_mode_max_tokens,
        mean: c.pooling_mode_mean_tokens,
        mean_sqrt_len: c.pooling_mode_mean_sqrt_len_tokens,
    };
    if p.modes() == 0 {
        return Err(ModelError::Config {
            path: path.into(),
            message: "no pooling mode enabled".into(),
        });
    }
    Ok(p)
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
    /// and the pipeline, hashed (32 hex digits). Keys the embedding cache.
    pub identity: String,
    pipeline: Pipeline,
    tokenizer: Tokenizer,
    /// The same tokenizer without truncation, to count a text's full length.
    counter: Tokenizer,
    encoder: Encoder,
    hidden: usize,
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedder").field("name", &self.name).field("path", &self.path).finish()
    }
}

impl Embedder {
    /// Resolves a model name (or path) and loads it.
    pub fn load_named(name: &str, engine: Engine) -> Result<Embedder, ModelError> {
        let dir = vembed_models::resolve(name).map_err(|e| ModelError::Store(e.to_string()))?;
        let sha = dir.sha256().map_err(|e| ModelError::Store(e.to_string()))?;
        Embedder::load(&dir.name, &dir.path, sha, engine)
    }

    /// Loads the model in `dir`. The native engine reads f32 weights in
    /// place from the memory-mapped file; candle copies them into tensors.
    pub fn load(
        name: &str,
        dir: &Path,
        sha256: String,
        engine: Engine,
    ) -> Result<Embedder, ModelError> {
        let config_path = dir.join("config.json");
        let bert: BertConfig = read_json(&config_path)?.ok_or_else(|| ModelError::Config {
            path: config_path.clone(),
            message: "missing".into(),
        })?;
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
        let encoder = match native {
            Some(bert) => Encoder::Native { bert, scratch: Default::default() },
            None => {
                let device = Device::Cpu;
                let weights = Weights::open(&weights_path).map_err(|e| ModelError::Config {
                    path: weights_path.clone(),
                    message: e.to_string(),
                })?;
                weights.will_need();
                let vb = VarBuilder::from_slice_safetensors(weights.bytes(), DType::F32, &device)?;
                let model = BertModel::load(vb, &bert)?;
                Encoder::Candle { model, device }
            }
        };

        let files = ["model.safetensors", "tokenizer.json"].iter().map(|f| dir.join(f)).collect();
        let identity = {
            use sha2::Digest;
            let key = format!("{sha256}|{pipeline:?}");
            let digest = sha2::Sha256::digest(key.as_bytes());
            digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
        };
        let embedder = Embedder {
            name: name.to_string(),
            sha256,
            path: dir.to_path_buf(),
            files,
            identity,
            pipeline,
            tokenizer,
            counter,
            encoder,
            hidden: bert.hidden_size,
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
        self.hidden * self.pipeline.pooling.modes()
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
        let enc = self
            .tokenizer
            .encode_fast(text, true)
            .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Which engine runs this model.
    pub fn engine(&self) -> Engine {
        match self.encoder {
            Encoder::Native { .. } => Engine::Native,
            Encoder::Candle { .. } => Engine::Candle,
        }
    }

    /// Whether a batch costs its padded size (`texts × longest`) rather
    /// than its real token count.
    pub fn pads_batches(&self) -> bool {
        matches!(self.encoder, Encoder::Candle { .. })
    }

    /// Frees buffers a large batch left behind.
    pub fn release_buffers(&self) {
        if let Encoder::Native { bert, scratch } = &self.encoder {
            scratch.lock().unwrap_or_else(|p| p.into_inner()).release();
            bert.release_mapped();
        }
    }

    /// Embeds texts given as token ids in one forward pass.
    /// Returns `ids.len() * dim()` floats.
    pub fn embed_ids<T: AsRef<[u32]>>(&self, ids: &[T]) -> Result<Vec<f32>, ModelError> {
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
        let h = self.hidden;
        let dim = self.dim();
        let mut out = vec![0f32; ids.len() * dim];
        let mut finish = |b: usize, tokens: &[f32]| {
            let o = &mut out[b * dim..(b + 1) * dim];
            pool(tokens, h, self.pipeline.pooling, o);
            if self.pipeline.normalize {
                normalize(o);
            }
        };
        match &self.encoder {
            Encoder::Native { bert, scratch } => {
                let mut scratch = scratch.lock().unwrap_or_else(|p| p.into_inner());
                let hidden = bert.forward(ids, &mut scratch)?;
                let mut at = 0;
                for (b, row) in ids.iter().enumerate() {
                    let n = row.as_ref().len();
                    finish(b, &hidden[at * h..(at + n) * h]);
                    at += n;
                }
            }
            Encoder::Candle { model, device } => {
                let batch = ids.len();
                let seq = ids.iter().map(|r| r.as_ref().len()).max().unwrap_or(0).max(1);
                let mut flat = vec![0u32; batch * seq];
                let mut mask = vec![0u32; batch * seq];
                for (b, row) in ids.iter().map(AsRef::as_ref).enumerate() {
                    flat[b * seq..b * seq + row.len()].copy_from_slice(row);
                    mask[b * seq..b * seq + row.len()].fill(1);
                }
                let input = Tensor::from_vec(flat, (batch, seq), device)?;
                let types = input.zeros_like()?;
                let mask_t = Tensor::from_vec(mask, (batch, seq), device)?;
                let hidden = model.forward(&input, &types, Some(&mask_t))?;
                let hidden: Vec<f32> = hidden.flatten_all()?.to_vec1()?;
                for (b, row) in ids.iter().enumerate() {
                    // Padding is on the right: a text's real tokens come first.
                    let n = row.as_ref().len();
                    finish(b, &hidden[b * seq * h..(b * seq + n) * h]);
                }
            }
        }
        Ok(out)
    }
}

/// Pools one text's token embeddings (`n × h`, row-major, real tokens only).
fn pool(tokens: &[f32], h: usize, p: Pooling, out: &mut [f32]) {
    let n = (tokens.len() / h) as f32;
    let mut at = 0;
    if p.cls {
        out[..h].copy_from_slice(&tokens[..h]);
        at += h;
    }
    if p.max {
        let o = &mut out[at..at + h];
        // sentence-transformers sets padded positions to -1e9 before the max.
        o.fill(-1e9);
        for row in tokens.chunks_exact(h) {
            for (a, &x) in o.iter_mut().zip(row) {
                *a = a.max(x);
            }
        }
        at += h;
    }
    if p.mean || p.mean_sqrt_len {
        let mut sum = vec![0f64; h];
        for row in tokens.chunks_exact(h) {
            for (a, &x) in sum.iter_mut().zip(row) {
                *a += f64::from(x);
            }
        }
        // torch.clamp(sum_mask, min=1e-9)
        let n = f64::from(n).max(1e-9);
        if p.mean {
            for (o, s) in out[at..at + h].iter_mut().zip(&sum) {
                *o = (s / n) as f32;
            }
            at += h;
        }
        if p.mean_sqrt_len {
            for (o, s) in out[at..at + h].iter_mut().zip(&sum) {
                *o = (s / n.sqrt()) as f32;
            }
        }
    }
}

/// L2 normalization as `torch.nn.functional.normalize` (eps 1e-12).
fn normalize(v: &mut [f32]) {
    let norm = v.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>().sqrt().max(1e-12);
    for x in v {
        *x = (f64::from(*x) / norm) as f32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooling_modes() {
        // Two tokens, h = 2.
        let tokens = [1.0, -2.0, 3.0, 4.0];
        let all = Pooling { cls: true, max: true, mean: true, mean_sqrt_len: true };
        let mut out = [0f32; 8];
        pool(&tokens, 2, all, &mut out);
        let s = 2f32.sqrt();
        assert_eq!(out, [1.0, -2.0, 3.0, 4.0, 2.0, 1.0, 4.0 / s, 2.0 / s]);
        let mut v = [3.0, 4.0];
        normalize(&mut v);
        assert_eq!(v, [0.6, 0.8]);
        let mut z = [0.0, 0.0];
        normalize(&mut z);
        assert_eq!(z, [0.0, 0.0]);
    }
}
