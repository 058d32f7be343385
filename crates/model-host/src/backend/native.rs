//! vembed's own forward pass ([`crate::bert`]) as a [`Backend`]: texts
//! packed without padding, f32 weights read in place from the mapping.

use std::sync::Mutex;

use super::{Backend, BackendError, Batch};
use crate::backend::Engine;
use crate::bert::{Bert, Precision, Scratch};
use crate::pipeline::Pipeline;

/// The native encoder with its reusable buffers.
pub struct NativeBackend {
    bert: Bert,
    scratch: Mutex<Scratch>,
    pipeline: Pipeline,
    hidden: usize,
}

impl NativeBackend {
    /// Wraps a loaded encoder.
    pub fn new(bert: Bert, pipeline: Pipeline, hidden: usize) -> NativeBackend {
        NativeBackend { bert, scratch: Mutex::default(), pipeline, hidden }
    }

    /// Repacks the encoder's linear layers in `precision`; for
    /// `int8-dynamic`, smoothed by the ranges of their inputs on
    /// `calibration` (token ids of texts).
    pub fn set_precision(
        &mut self,
        precision: Precision,
        calibration: &[Vec<u32>],
    ) -> Result<(), BackendError> {
        let ranges = match precision {
            Precision::Int8Dynamic => Some(self.bert.ranges(calibration).map_err(|e| {
                BackendError::Failed { engine: Engine::Native, message: e.to_string() }
            })?),
            _ => None,
        };
        self.bert.set_precision(precision, ranges.as_ref());
        Ok(())
    }
}

impl Backend for NativeBackend {
    fn embed(&self, batch: Batch<'_>) -> Result<Vec<f32>, BackendError> {
        let (h, dim) = (self.hidden, self.dim());
        let mut out = vec![0f32; batch.ids.len() * dim];
        let mut scratch = self.scratch.lock().unwrap_or_else(|p| p.into_inner());
        let hidden = self
            .bert
            .forward(batch.ids, &mut scratch)
            .map_err(|e| BackendError::Failed { engine: Engine::Native, message: e.to_string() })?;
        let mut at = 0;
        for (b, row) in batch.ids.iter().enumerate() {
            let n = row.len();
            self.pipeline.finish(
                &hidden[at * h..(at + n) * h],
                h,
                &mut out[b * dim..(b + 1) * dim],
            );
            at += n;
        }
        Ok(out)
    }

    fn dim(&self) -> usize {
        self.hidden * self.pipeline.pooling.modes()
    }

    fn pads(&self) -> bool {
        false
    }

    fn engine(&self) -> Engine {
        Engine::Native
    }

    fn release_buffers(&self) {
        self.scratch.lock().unwrap_or_else(|p| p.into_inner()).release();
        self.bert.release_mapped();
    }
}
