//! What a sentence-transformers folder says happens around the encoder:
//! the modules (`modules.json`), the pooling (`1_Pooling/config.json`), the
//! `Normalize` module and the sequence limit (`sentence_bert_config.json`),
//! and the pooling and normalization themselves, shared by every backend.

use std::path::Path;

use serde::Deserialize;

use crate::config::{ConfigError, EncoderConfig, read_json};

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
    /// How many modes are on: the embedding is that many times the hidden size.
    pub fn modes(&self) -> usize {
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
    pub fn read(dir: &Path, encoder: &EncoderConfig) -> Result<Pipeline, ConfigError> {
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
                            return Err(ConfigError::Unsupported {
                                path: modules_path,
                                what: "module",
                                name: m.kind.clone(),
                            });
                        }
                    }
                }
            }
        }
        let pooling =
            pooling.ok_or_else(|| ConfigError::invalid(&modules_path, "no Pooling module"))?;
        let sbert: Option<SbertConfig> = read_json(&dir.join("sentence_bert_config.json"))?;
        let tok: Option<TokenizerConfig> = read_json(&dir.join("tokenizer_config.json"))?;
        let model_max = tok
            .and_then(|t| t.model_max_length)
            .filter(|&m| m > 0.0 && m < 1e9)
            .map(|m| m as usize);
        let max_seq_length = sbert
            .and_then(|s| s.max_seq_length)
            .or(model_max)
            .unwrap_or(encoder.max_tokens())
            .min(encoder.max_tokens());
        Ok(Pipeline { pooling, normalize, max_seq_length })
    }
}

/// Reads a folder's pipeline without loading the model.
pub fn read_pipeline(dir: &Path) -> Result<Pipeline, ConfigError> {
    Pipeline::read(dir, &EncoderConfig::read(dir)?)
}

fn read_pooling(path: &Path) -> Result<Pooling, ConfigError> {
    let c: PoolingConfig = read_json(path)?.ok_or_else(|| ConfigError::invalid(path, "missing"))?;
    for (on, name) in [
        (c.pooling_mode_weightedmean_tokens, "weightedmean pooling"),
        (c.pooling_mode_lasttoken, "lasttoken pooling"),
    ] {
        if on {
            return Err(ConfigError::Unsupported {
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
        return Err(ConfigError::invalid(path, "no pooling mode enabled"));
    }
    Ok(p)
}

impl Pipeline {
    /// Pools one text's last hidden states (`n × h`, real tokens only) into
    /// `out` (`dim` floats) and normalizes it when the folder says so.
    pub fn finish(&self, tokens: &[f32], h: usize, out: &mut [f32]) {
        pool(tokens, h, self.pooling, out);
        if self.normalize {
            normalize(out);
        }
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
pub(crate) fn normalize(v: &mut [f32]) {
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
