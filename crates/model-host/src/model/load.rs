//! Loading a model: a sentence-transformers folder (each config file read
//! once; the native encoder, or candle for what it does not implement;
//! reduced-precision weights only past the quality gate; one warm-up pass),
//! or a remote model from its settings.

use std::path::{Path, PathBuf};

use super::embedder::Embedder;
use super::error::ModelError;
use super::tokenize::{Counter, Tokens, untruncated};
use crate::backend::candle::CandleBackend;
use crate::backend::native::NativeBackend;
use crate::backend::remote::{self, RemoteBackend};
use crate::backend::{Backend, Engine};
use crate::bert::{self, Bert};
use crate::config::{ConfigError, EncoderConfig};
use crate::pipeline::Pipeline;
use crate::precision::{self, Precision};
use crate::weights::Weights;

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
        let config = EncoderConfig::read(dir)?;
        let pipeline = Pipeline::read(dir, &config)?;
        let weights_path = dir.join("model.safetensors");
        let weights =
            Weights::open(&weights_path).map_err(|e| ConfigError::invalid(&weights_path, e))?;
        crate::weights::check_finite(weights.bytes())
            .map_err(|message| ConfigError::invalid(&weights_path, message))?;
        drop(weights);
        let tokens = Tokens::local(name, dir, pipeline.max_seq_length)?;
        let backend = backend(name, dir, &config, &pipeline, &tokens, engine, precision)?;
        let files = ["model.safetensors", "tokenizer.json"].iter().map(|f| dir.join(f)).collect();
        let embedder = Embedder {
            name: name.to_string(),
            sha256: sha256.clone(),
            path: dir.to_path_buf(),
            files,
            identity: identity(&sha256, &pipeline, precision),
            precision,
            max_seq_length: pipeline.max_seq_length,
            pipeline: Some(pipeline),
            tokens,
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
            tokens: Tokens::remote(name, counter),
            max_seq_length,
            backend: Box::new(backend),
        })
    }
}

/// What makes two instances give the same vectors: the weights' sha256 and
/// the pipeline, hashed (32 hex digits), and the precision when it is not
/// f32. f32 keeps the key it always had, so existing indexes and caches stay
/// valid; another precision gives other vectors and another key.
fn identity(sha256: &str, pipeline: &Pipeline, precision: Precision) -> String {
    use sha2::Digest;
    let key = match precision {
        Precision::F32 => format!("{sha256}|{pipeline:?}"),
        p => format!("{sha256}|{pipeline:?}|weights={}", p.name()),
    };
    let digest = sha2::Sha256::digest(key.as_bytes());
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// The backend that runs a local model: the native encoder (its weights in
/// `precision` once they pass the quality gate), or candle for a config the
/// native encoder does not implement (f32 only).
fn backend(
    name: &str,
    dir: &Path,
    config: &EncoderConfig,
    pipeline: &Pipeline,
    tokens: &Tokens,
    engine: Engine,
    precision: Precision,
) -> Result<Box<dyn Backend>, ModelError> {
    let refuse = |message: String| ModelError::Precision {
        model: name.to_string(),
        precision: precision.name(),
        message,
    };
    let architecture = config.architecture;
    let no_candle = || {
        format!("candle-transformers has no encoder for model_type {:?}", architecture.model_type)
    };
    let native = match engine {
        Engine::Native => match Bert::load(dir, &config.native, architecture.arch) {
            Ok(bert) => Some(bert),
            Err(bert::BertError::Unsupported(why)) if !architecture.candle => {
                return Err(ModelError::Native(bert::BertError::Unsupported(format!(
                    "{why}; and {}, so nothing else can run it",
                    no_candle()
                ))));
            }
            Err(e @ bert::BertError::Unsupported(_)) => {
                tracing::warn!("{}: {e}; using candle", dir.display());
                None
            }
            Err(e) => return Err(e.into()),
        },
        Engine::Candle | Engine::Remote => None,
    };
    let Some(bert) = native else {
        let Some(candle) = config.candle.as_ref() else {
            return Err(ModelError::Backend(crate::backend::BackendError::Failed {
                engine: Engine::Candle,
                message: format!("{}: use engine = \"native\"", no_candle()),
            }));
        };
        if precision != Precision::F32 {
            return Err(refuse(match engine {
                Engine::Candle | Engine::Remote => {
                    "the candle engine runs f32 weights only".to_string()
                }
                Engine::Native => "the native encoder does not implement this model, and candle \
                                   runs f32 weights only"
                    .to_string(),
            }));
        }
        return Ok(Box::new(CandleBackend::load(dir, candle, pipeline.clone())?));
    };
    let mut native = NativeBackend::new(bert, pipeline.clone(), config.native.hidden_size);
    if let Some(why) = precision.unsupported() {
        return Err(refuse(why));
    }
    if precision != Precision::F32 {
        let texts = precision::probe_texts();
        let ids = texts.iter().map(|t| tokens.ids(t)).collect::<Result<Vec<_>, _>>()?;
        let reference = precision::embed_alone(&native, &ids)?;
        let calibration = precision::calibration_texts()
            .iter()
            .map(|t| tokens.ids(t))
            .collect::<Result<Vec<_>, _>>()?;
        native.set_precision(precision, &calibration)?;
        let reduced = precision::embed_alone(&native, &ids)?;
        let report = precision::compare(&texts, &reference, &reduced);
        if !report.passes(precision) {
            return Err(refuse(format!(
                "it fails the quality gate: the least cosine to f32 over {} probe texts is {:.7} \
                 (on {:?}), the mean {:.7}; the gate is {}. Use weights = \"f32\"",
                texts.len(),
                report.least,
                report.worst,
                report.mean,
                precision::threshold(precision)
            )));
        }
        tracing::info!(
            "{name}: {} weights pass the quality gate (least cosine to f32 {:.7}, mean {:.7}, \
             over {} probe texts; the gate is {})",
            precision.name(),
            report.least,
            report.mean,
            texts.len(),
            precision::threshold(precision)
        );
    }
    Ok(Box::new(native))
}
