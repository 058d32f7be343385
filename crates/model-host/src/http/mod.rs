//! The HTTP front door (opt-in): the OpenAI, Ollama and TEI request shapes,
//! in front of the same inference layer the socket calls.
//!
//! It lives in the host, not in a gateway process: a handler calls
//! [`Infer`] directly, so an HTTP request pays no second socket hop and no
//! second copy of the vectors, and there is one process to start, watch and
//! stop. It runs on a small tokio runtime of its own thread; the socket
//! side keeps its threads.
//!
//! - [`listen`]: binding (TCP, a Unix socket path, systemd's sockets), the
//!   bearer token, and the accept loops with their connection limits.
//! - [`route`]: which handler answers a method and path, the token check,
//!   and which routes are the host user's only.
//! - [`caller`]: who is asking (the host's user or any local user), and
//!   what an anonymous caller is never shown.
//! - [`body`]: reading a JSON body within its size and time limits.
//! - [`embed`]: texts in, vectors out, through [`Infer`] in host-sized jobs.
//! - [`models`]: the names clients send, mapped to the models served.
//! - [`openai`], [`ollama`], [`tei`]: one file per API shape.
//! - [`search`]: vembed's own code search, `POST /vembed/v1/search`.
//! - [`error`]: one error, answered in each API's own shape.
//! - [`metrics`]: the Prometheus text of `GET /metrics`.
//! - [`cl100k`]: token-id inputs decoded back to text.

mod body;
mod caller;
mod cl100k;
mod embed;
mod error;
mod listen;
mod metrics;
mod models;
mod ollama;
mod openai;
mod route;
mod search;
mod tei;

pub use listen::{HttpError, Listeners, bind};

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::indexer::Indexer;
use crate::infer::Infer;
use crate::stats::Stats;

/// How long a client may take to send a request's headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to send a request's body, once its headers are in.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// HTTP connections open at once; more are answered 503 and closed.
pub const MAX_CONNECTIONS: usize = 2048;
/// Inputs in one HTTP request; the host embeds them in jobs of at most its
/// socket limit (`max_texts_per_request`) each.
pub const MAX_INPUTS: usize = 16_384;

/// What every handler shares.
pub(crate) struct State {
    pub infer: Arc<Infer>,
    pub stats: Arc<Stats>,
    /// Code search reads the host's indexes through it.
    pub indexer: Arc<Indexer>,
    pub metrics: metrics::HttpMetrics,
    /// The bearer token every request must carry, when one is configured.
    pub token: Option<String>,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    pub started: Instant,
    /// The user's places an anonymous caller is never shown (the models'
    /// folders are added as they load: [`State::private_paths`]).
    pub private: caller::Private,
    /// Texts of anonymous callers in flight, against their share of the queue.
    pub anonymous_texts: embed::AnonymousTexts,
}

impl State {
    /// Every private path of this host now, the loaded models' folders included.
    pub fn private_paths(&self) -> caller::Private {
        let mut p = self.private.clone();
        for m in self.infer.models().iter() {
            if m.path.is_absolute() {
                p.add(&m.path);
            }
        }
        p
    }
}

/// The running front door: stop it with [`HttpHandle::shutdown`].
pub struct HttpHandle {
    stop: tokio::sync::watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HttpHandle {
    /// Stops accepting, lets requests in flight finish (up to `grace`), and
    /// returns once the runtime is gone.
    pub fn shutdown(mut self, grace: Duration) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let deadline = Instant::now() + grace + Duration::from_secs(1);
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}

/// Starts serving `listeners` on a runtime thread of its own.
pub(crate) fn start(
    listeners: Listeners,
    infer: Arc<Infer>,
    stats: Arc<Stats>,
    indexer: Arc<Indexer>,
    grace: Duration,
    private: Vec<std::path::PathBuf>,
) -> std::io::Result<HttpHandle> {
    let max_body_bytes = infer.limits().max_frame_bytes as usize;
    let state = Arc::new(State {
        infer,
        stats,
        indexer,
        metrics: metrics::HttpMetrics::default(),
        token: listeners.token.clone(),
        max_body_bytes,
        started: Instant::now(),
        private: caller::Private::of_this_host(&private),
        anonymous_texts: Default::default(),
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(64)
        .thread_name("vembed-http")
        .enable_all()
        .build()?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let thread = std::thread::Builder::new().name("vembed-http-main".into()).spawn(move || {
        runtime.block_on(listen::serve_all(listeners, state, stopped, grace));
        runtime.shutdown_timeout(Duration::from_millis(100));
    })?;
    Ok(HttpHandle { stop, thread: Some(thread) })
}
