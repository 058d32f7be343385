//! What the host's unit tests share: the inference door over the real
//! default model (fetched by `vembed model fetch`; the tests fail loudly
//! without it).

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use vembed_protocol::Limits;

use crate::cache::EmbedCache;
use crate::infer::Infer;
use crate::registry::Registry;
use crate::stats::Stats;

pub(crate) struct Door {
    pub infer: Infer,
    pub stop: Arc<AtomicBool>,
    pub stats: Arc<Stats>,
}

/// The default model, loaded.
pub(crate) fn model() -> Arc<crate::model::Embedder> {
    let settings = vembed_models::Settings::default();
    let registry =
        Registry::load(&settings, &[]).expect("the default model (run `vembed model fetch`)");
    registry.get(0)
}

/// A door over the default model with jobs of at most 4 texts and a queue
/// of `queue_texts`.
pub(crate) fn door(queue_texts: u32) -> Door {
    let settings = vembed_models::Settings::default();
    let registry = Arc::new(
        Registry::load(&settings, &[]).expect("the default model (run `vembed model fetch`)"),
    );
    let limits = Limits {
        max_frame_bytes: 32 << 20,
        max_texts_per_request: 4,
        max_text_bytes: 1000,
        max_batch_tokens: 16384,
        max_queue_texts: queue_texts,
    };
    let stats = Arc::new(Stats::default());
    let cache = Arc::new(EmbedCache::new(None));
    let queue = crate::queue::start(stats.clone(), cache.clone(), 16384, queue_texts as usize);
    let stop = Arc::new(AtomicBool::new(false));
    let infer = Infer::new(registry, cache, queue, limits, stop.clone(), stats.clone());
    Door { infer, stop, stats }
}
