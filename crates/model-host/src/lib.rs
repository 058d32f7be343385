//! The vembed host: one process per user that memory-maps each model once,
//! runs it on the CPU (its own BERT forward pass, candle as the fallback),
//! and serves embeddings to every client over
//! a Unix socket, and, when configured, over HTTP in the OpenAI, Ollama and
//! TEI request shapes.
//!
//! The binary `vembed-host` is a thin wrapper: [`acquire`] the lock, load
//! the [`Registry`], [`bind`], then [`serve`]. [`Embedder`] can also be used
//! directly, which is what the parity tests and the forward-pass
//! benchmark do.
#![warn(missing_docs)]

mod backend;
mod bert;
mod cache;
mod config;
#[cfg(feature = "fault-injection")]
mod fault;
#[cfg(not(feature = "fault-injection"))]
#[path = "fault_off.rs"]
mod fault;
mod http;
mod index_usage;
mod index_walk;
mod indexer;
mod infer;
mod model;
mod outbox;
mod panics;
mod pipeline;
mod precision;
mod queue;
mod registry;
mod server;
mod stats;
#[cfg(test)]
mod test_support;
mod tool_select;
mod weights;

pub use backend::{Backend, BackendError, Batch, Engine};
pub use config::ConfigError;
pub use http::{HttpError, Listeners as HttpListeners, bind as bind_http};
pub use infer::InferError;
pub use model::{Embedder, ModelError, TokenInfo};
pub use pipeline::{Pipeline, Pooling};
pub use precision::Precision;
pub use queue::JobError;
pub use registry::Registry;
/// The small-batch matrix kernel and its panel packings (f32 and f16), for
/// `benches/kernels.rs`; not a stable API.
#[doc(hidden)]
pub mod kernels {
    #[cfg(target_arch = "x86_64")]
    pub use crate::bert::amx::{
        AmxWeight, available as amx_available, matmul_acc as amx_matmul_acc,
    };
    pub use crate::bert::bulk::panel_matmul_bulk;
    pub use crate::bert::gemm::gemm_acc;
    pub use crate::bert::half::{BF16, F16};
    pub use crate::bert::int8::{I8, pack_panels_i8};
    pub use crate::bert::jobs::{inline, on_rayon};
    pub use crate::bert::packed::{Packed, pack_panels};
    pub use crate::bert::qdyn::{
        QWeight, kernel as int8_dynamic_kernel, matmul_acc as int8_dynamic_matmul_acc,
    };
    pub use crate::bert::simd::{Acc, MR, NR, Panel, level, panel_matmul_acc};
}
pub use server::{
    HostConfig, HostError, HostLock, StopReason, acquire, bind, raise_fd_limit, serve,
    tune_allocator,
};

/// The thread count a setting of `n` means: 0 is one per core.
pub fn thread_count(n: u32) -> usize {
    if n == 0 { std::thread::available_parallelism().map_or(1, |n| n.get()) } else { n as usize }
}

/// Sizes rayon's global pool, which candle's kernels run on. Call it once,
/// before any model is loaded. candle also reads `RAYON_NUM_THREADS` on every
/// matmul, so the binary sets that variable to the same count at start-up.
pub fn init_thread_pool(n: usize) {
    if let Err(e) = rayon::ThreadPoolBuilder::new().num_threads(n).build_global() {
        tracing::debug!("rayon pool already set up: {e}");
    }
}

/// The number of threads candle's kernels use.
pub fn threads() -> usize {
    rayon::current_num_threads()
}
