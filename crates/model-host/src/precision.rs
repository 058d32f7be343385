//! Reduced-precision weights and the quality gate they must pass.
//!
//! The encoder's linear layers can be held as f16 or bf16 panels (the
//! `weights` setting). Before a model is served that way, every text of a
//! built-in probe set (the golden texts vembed's parity tests use: short
//! queries, code, prose, non-Latin scripts, emoji, and two texts truncated
//! at 256 tokens) is embedded with the f32 weights and with the reduced
//! ones, each text alone, and the least cosine between the two must reach
//! [`threshold`]. A precision that falls short is refused for that model,
//! with the figures in the error.
//!
//! The reduced path computes a text's embedding identically alone or in a
//! batch (the bulk kernel reads the same panels in the same order; see
//! `bert::bulk`), so probing texts alone covers bulk work too.

use crate::backend::{Backend, BackendError, Batch};
pub use crate::bert::Precision;

/// Least cosine to the f32 embedding every probe text must reach:
/// 0.999 for the half formats, 0.99 for int8, or the stricter bar
/// `VEMBED_WEIGHTS_MIN_COSINE` sets (a value that would loosen the gate is
/// ignored).
pub fn threshold(precision: Precision) -> f32 {
    let bar = match precision {
        Precision::F32 => return 1.0,
        Precision::F16 | Precision::BF16 | Precision::AmxBf16 => 0.999,
        Precision::Int8 | Precision::Int8Dynamic => 0.99,
    };
    std::env::var("VEMBED_WEIGHTS_MIN_COSINE")
        .ok()
        .and_then(|v| v.trim().parse::<f32>().ok())
        .filter(|v| *v > bar && *v <= 1.0)
        .unwrap_or(bar)
}

/// The probe texts.
pub fn probe_texts() -> Vec<String> {
    serde_json::from_str(include_str!("precision_probe.json")).expect("the built-in probe set")
}

/// The texts `int8-dynamic` measures its activations' ranges on (see
/// [`crate::bert::calibrate`]): queries, code in a dozen languages, prose in
/// five, a log line, numbers, and a text past the 256-token limit, none of
/// them a probe text, so the gate judges the result on texts it was not
/// fitted to.
pub fn calibration_texts() -> Vec<String> {
    serde_json::from_str(include_str!("calibration_texts.json"))
        .expect("the built-in calibration set")
}

/// What the gate measured.
#[derive(Debug, Clone, PartialEq)]
pub struct GateReport {
    /// The least cosine to f32 over the probe texts.
    pub least: f32,
    /// The mean cosine.
    pub mean: f32,
    /// The text with the least cosine (its first 60 characters).
    pub worst: String,
}

impl GateReport {
    /// Whether `precision` passes.
    pub fn passes(&self, precision: Precision) -> bool {
        self.least >= threshold(precision)
    }
}

/// Embeds each probe text alone: one normalized or raw vector per text.
pub fn embed_alone(backend: &dyn Backend, ids: &[Vec<u32>]) -> Result<Vec<Vec<f32>>, BackendError> {
    ids.iter().map(|t| backend.embed(Batch { ids: &[t.as_slice()], texts: &[] })).collect()
}

/// A probe text as a message quotes it: its first 60 characters.
fn shortened(text: &str) -> String {
    match text.char_indices().nth(60) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

/// Compares the reduced precision's embeddings with f32's, text by text.
pub fn compare(texts: &[String], reference: &[Vec<f32>], reduced: &[Vec<f32>]) -> GateReport {
    let mut least = f32::INFINITY;
    let mut worst = String::new();
    let mut sum = 0.0;
    for ((t, a), b) in texts.iter().zip(reference).zip(reduced) {
        let c = cosine(a, b);
        sum += c;
        // NaN counts as the worst possible cosine.
        if c.is_nan() || c < least {
            least = if c.is_nan() { f32::NEG_INFINITY } else { c };
            worst = shortened(t);
        }
    }
    GateReport { least, mean: sum / texts.len().max(1) as f32, worst }
}

/// Cosine similarity, in f64.
fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        ab += x as f64 * y as f64;
        aa += x as f64 * x as f64;
        bb += y as f64 * y as f64;
    }
    (ab / (aa.sqrt() * bb.sqrt())) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_passes_close_vectors_and_refuses_far_ones_naming_the_text() {
        let texts = vec!["a".to_string(), "b".to_string()];
        let reference = vec![vec![1.0, 0.0], vec![0.0, 1.0]];
        let close = vec![vec![1.0, 0.01], vec![0.01, 1.0]];
        let r = compare(&texts, &reference, &close);
        assert!(r.passes(Precision::F16), "{r:?}");
        let far = vec![vec![1.0, 0.01], vec![0.1, 1.0]];
        let r = compare(&texts, &reference, &far);
        assert!(!r.passes(Precision::BF16), "{r:?}");
        assert_eq!(r.worst, "b");
        assert!((r.least - 0.995).abs() < 1e-3, "{r:?}");
        let nan = vec![vec![1.0, 0.0], vec![f32::NAN, 1.0]];
        let r = compare(&texts, &reference, &nan);
        assert!(!r.passes(Precision::F16) && r.worst == "b", "{r:?}");
    }

    #[test]
    fn the_probe_set_is_the_golden_texts() {
        let texts = probe_texts();
        assert_eq!(texts.len(), 16);
        assert!(texts.iter().any(|t| t.is_empty()) && texts.iter().any(|t| t.len() > 1000));
    }
}
