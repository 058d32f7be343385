//! candle-transformers' stock `BertModel` as a [`Backend`]: batches padded
//! to their longest text, weights copied into candle's tensors. The fallback
//! for configs the native pass does not implement, and a reference.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config as BertConfig};

use super::{Backend, BackendError, Batch, Engine};
use crate::pipeline::Pipeline;
use crate::weights::Weights;

/// candle's BERT on the CPU.
pub struct CandleBackend {
    model: BertModel,
    device: Device,
    pipeline: Pipeline,
    hidden: usize,
}

fn failed(e: candle_core::Error) -> BackendError {
    BackendError::Failed { engine: Engine::Candle, message: e.to_string() }
}

impl CandleBackend {
    /// Loads `model.safetensors` from `dir` into candle tensors.
    pub fn load(dir: &Path, bert: &BertConfig, pipeline: Pipeline) -> Result<Self, BackendError> {
        let device = Device::Cpu;
        let weights_path = dir.join("model.safetensors");
        let weights = Weights::open(&weights_path).map_err(|e| BackendError::Failed {
            engine: Engine::Candle,
            message: format!("{}: {e}", weights_path.display()),
        })?;
        weights.will_need();
        let vb = VarBuilder::from_slice_safetensors(weights.bytes(), DType::F32, &device)
            .map_err(failed)?;
        let model = BertModel::load(vb, bert).map_err(failed)?;
        Ok(CandleBackend { model, device, pipeline, hidden: bert.hidden_size })
    }

    fn forward(&self, ids: &[&[u32]], seq: usize) -> candle_core::Result<Vec<f32>> {
        let batch = ids.len();
        let mut flat = vec![0u32; batch * seq];
        let mut mask = vec![0u32; batch * seq];
        for (b, row) in ids.iter().enumerate() {
            flat[b * seq..b * seq + row.len()].copy_from_slice(row);
            mask[b * seq..b * seq + row.len()].fill(1);
        }
        let input = Tensor::from_vec(flat, (batch, seq), &self.device)?;
        let types = input.zeros_like()?;
        let mask_t = Tensor::from_vec(mask, (batch, seq), &self.device)?;
        let hidden = self.model.forward(&input, &types, Some(&mask_t))?;
        hidden.flatten_all()?.to_vec1()
    }
}

impl Backend for CandleBackend {
    fn embed(&self, batch: Batch<'_>) -> Result<Vec<f32>, BackendError> {
        let (h, dim) = (self.hidden, self.dim());
        let seq = batch.ids.iter().map(|r| r.len()).max().unwrap_or(0).max(1);
        let hidden = self.forward(batch.ids, seq).map_err(failed)?;
        let mut out = vec![0f32; batch.ids.len() * dim];
        for (b, row) in batch.ids.iter().enumerate() {
            // Padding is on the right: a text's real tokens come first.
            let n = row.len();
            let tokens = &hidden[b * seq * h..(b * seq + n) * h];
            self.pipeline.finish(tokens, h, &mut out[b * dim..(b + 1) * dim]);
        }
        Ok(out)
    }

    fn dim(&self) -> usize {
        self.hidden * self.pipeline.pooling.modes()
    }

    fn pads(&self) -> bool {
        true
    }

    fn engine(&self) -> Engine {
        Engine::Candle
    }
}
