//! The socket side of the host: start-up ([`startup`]), the accept loop and
//! shutdown (here), one reader thread per connection with its deadlines and
//! memory bounds ([`connection`]), and one small handler per request kind
//! ([`dispatch`]).

mod connection;
mod dispatch;
mod startup;
mod workers;

pub use startup::{HostError, HostLock, acquire, bind, raise_fd_limit, tune_allocator};

use std::collections::VecDeque;
use std::fs;
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use vembed_protocol::{ErrorCode, Limits};

use crate::cache::EmbedCache;
use crate::indexer::Indexer;
use crate::infer::Infer;
use crate::queue;
use crate::registry::Registry;
use crate::stats::Stats;
use workers::Workers;

/// Everything the host needs to run.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// The socket path.
    pub socket: PathBuf,
    /// Models, batching and idle settings.
    pub settings: vembed_models::Settings,
    /// Models to load besides the configured roles.
    pub extra_models: Vec<String>,
    /// Limits advertised in the handshake and enforced.
    pub limits: Limits,
    /// How long a started frame may take to arrive in full.
    pub frame_timeout: Duration,
    /// How long a new connection may take to send its `Hello`.
    pub hello_timeout: Duration,
    /// How long a client may leave its replies unread (no progress at all)
    /// before the host drops the connection.
    pub write_timeout: Duration,
    /// Connections served at once; more are refused with `Overloaded`.
    pub max_connections: usize,
    /// Bytes of partly received frames held across all connections at once;
    /// past it, connections wait for room before reading more.
    pub max_inflight_bytes: usize,
    /// Where `EmbedCached` keeps its files (`None`: memory only).
    pub embed_cache_dir: Option<PathBuf>,
}

impl HostConfig {
    /// A config with the default limits for these settings.
    pub fn new(socket: PathBuf, settings: vembed_models::Settings) -> HostConfig {
        let limits = Limits {
            max_frame_bytes: 32 << 20,
            max_texts_per_request: 2048,
            max_text_bytes: 1 << 20,
            max_batch_tokens: settings.max_batch_tokens.max(1),
            max_queue_texts: settings.max_queue_texts.max(1),
        };
        HostConfig {
            socket,
            settings,
            extra_models: Vec::new(),
            limits,
            embed_cache_dir: Some(vembed_models::paths::cache_dir().join("embeddings")),
            frame_timeout: Duration::from_secs(10),
            hello_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(30),
            max_connections: 1024,
            max_inflight_bytes: 256 << 20,
        }
    }
}

/// Threads socket searches run on: one per core of the machines vembed
/// targets; a search beyond them waits for one, never a connection's reader.
const SEARCH_THREADS: usize = 2;

/// How long a stopping host waits for requests in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(60);
/// How long a refused connection stays open (its write side shut) so the
/// client can send its Hello without a broken pipe and read the reason.
const REFUSAL_LINGER: Duration = Duration::from_secs(1);
/// How often, at most, the heap is trimmed after connections closed.
const TRIM_EVERY: Duration = Duration::from_secs(1);
/// Refused connections kept lingering at most; older ones are closed first.
const MAX_LINGERING: usize = 256;

/// Why the host stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// SIGTERM or SIGINT.
    Signal,
    /// A client sent `Shutdown`.
    Request,
    /// No clients for the idle timeout.
    Idle,
}

/// Bytes of partly received frames across all connections.
struct InFlight {
    used: AtomicUsize,
    limit: usize,
}

impl InFlight {
    /// Takes `n` bytes of the budget, or refuses. With nothing in flight,
    /// any one frame may proceed, however large.
    fn try_acquire(&self, n: usize) -> bool {
        let mut cur = self.used.load(Ordering::Relaxed);
        loop {
            if cur > 0 && cur + n > self.limit {
                return false;
            }
            match self.used.compare_exchange_weak(cur, cur + n, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(now) => cur = now,
            }
        }
    }

    fn release(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::AcqRel);
    }
}

/// State shared by every thread of a host.
struct Shared {
    config: HostConfig,
    stats: Arc<Stats>,
    indexer: Arc<Indexer>,
    infer: Arc<Infer>,
    /// The tool sets whose vectors `SelectTools` keeps.
    tools: Arc<crate::tool_select::Rankers>,
    /// The threads socket searches run on, off the connections' readers.
    searches: Workers,
    started: Instant,
    stop: Arc<AtomicBool>,
    stop_reason: Mutex<Option<StopReason>>,
    clients: AtomicUsize,
    /// Connections closed since the heap was last trimmed.
    closed: AtomicUsize,
    last_active: Mutex<Instant>,
    inflight: InFlight,
    /// The uid every peer must have.
    euid: u32,
}

impl Shared {
    fn request_stop(&self, reason: StopReason) {
        let mut r = self.stop_reason.lock().unwrap_or_else(|p| p.into_inner());
        r.get_or_insert(reason);
        self.stop.store(true, Ordering::Release);
    }

    fn touch(&self) {
        *self.last_active.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }
}

/// Serves `listener` until a signal (`stop` set), a `Shutdown` request, or
/// the idle timeout; then finishes requests in flight and returns. When
/// `http` holds listeners, the HTTP front door serves them too, through the
/// same inference layer, and the host never idles out.
pub fn serve(
    listener: UnixListener,
    mut config: HostConfig,
    registry: Registry,
    stop: Arc<AtomicBool>,
    http: crate::http::Listeners,
) -> StopReason {
    let registry = Arc::new(registry);
    let stats = Arc::new(Stats::default());
    let cache = Arc::new(EmbedCache::new(config.embed_cache_dir.clone()));
    let queue = queue::start(
        stats.clone(),
        cache.clone(),
        config.limits.max_batch_tokens as usize,
        config.limits.max_queue_texts as usize,
    );
    let infer = Arc::new(Infer::new(
        registry,
        cache,
        queue.clone(),
        config.limits,
        stop.clone(),
        stats.clone(),
    ));
    let indexer = Indexer::new(infer.clone());
    let http = Some(http).filter(|l| !l.is_empty()).and_then(|listeners| {
        let endpoints = listeners.describe();
        let s = &config.settings;
        let private: Vec<PathBuf> = [Some(&config.socket), s.http_socket.as_ref()]
            .into_iter()
            .flatten()
            .chain(s.http_token_file.as_ref())
            .chain(config.embed_cache_dir.as_ref())
            .cloned()
            .collect();
        match crate::http::start(
            listeners,
            infer.clone(),
            stats.clone(),
            indexer.clone(),
            SHUTDOWN_GRACE / 4,
            private,
        ) {
            Ok(h) => {
                tracing::info!("HTTP endpoints on {endpoints}");
                Some(h)
            }
            Err(e) => {
                tracing::error!("cannot start the HTTP front door: {e}");
                None
            }
        }
    });
    if http.is_some() {
        // HTTP clients (Victor's Ollama provider, say) expect the endpoint
        // to be there when they start: no idle exit (status shows 0).
        config.settings.idle_timeout_secs = 0;
    }
    let inflight = InFlight { used: AtomicUsize::new(0), limit: config.max_inflight_bytes };
    let shared = Arc::new(Shared {
        config,
        stats,
        indexer,
        infer,
        tools: Default::default(),
        searches: Workers::start("vembed-search", SEARCH_THREADS),
        started: Instant::now(),
        stop,
        stop_reason: Mutex::new(None),
        clients: AtomicUsize::new(0),
        closed: AtomicUsize::new(0),
        last_active: Mutex::new(Instant::now()),
        inflight,
        euid: vembed_models::private_dir::euid(),
    });
    let mut connections: Vec<JoinHandle<()>> = Vec::new();
    let mut lingering: VecDeque<(UnixStream, Instant)> = VecDeque::new();
    let idle = Duration::from_secs(shared.config.settings.idle_timeout_secs);
    let mut trimmed = Instant::now();
    loop {
        // Connections free their buffers on their own threads, in the
        // allocator's arenas: hand what they left back to the kernel now and
        // then, or connection churn would keep its peak.
        if trimmed.elapsed() >= TRIM_EVERY && shared.closed.swap(0, Ordering::AcqRel) > 0 {
            crate::queue::trim_heap();
            trimmed = Instant::now();
        }
        while lingering.front().is_some_and(|(_, t)| t.elapsed() >= REFUSAL_LINGER) {
            lingering.pop_front();
        }
        if shared.stop.load(Ordering::Acquire) {
            shared.request_stop(StopReason::Signal);
            break;
        }
        if idle > Duration::ZERO
            && shared.clients.load(Ordering::Acquire) == 0
            && shared.last_active.lock().unwrap_or_else(|p| p.into_inner()).elapsed() >= idle
        {
            shared.request_stop(StopReason::Idle);
            break;
        }
        let mut fds = [nix::poll::PollFd::new(listener.as_fd(), nix::poll::PollFlags::POLLIN)];
        match nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(100u16)) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                tracing::error!("poll on the listener failed: {e}");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        }
        let stream = match listener.accept() {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
        };
        shared.stats.connections.fetch_add(1, Ordering::Relaxed);
        // Only our own user may talk to us; and only so many at once. A
        // refusal costs no thread: the reason is written at once, and the
        // connection lingers briefly so the client can still read it.
        if let Err((code, message)) = admission(&stream, &shared) {
            connection::refuse(&stream, code, &message);
            if lingering.len() >= MAX_LINGERING {
                lingering.pop_front();
            }
            lingering.push_back((stream, Instant::now()));
            continue;
        }
        connections.retain(|h| !h.is_finished());
        shared.clients.fetch_add(1, Ordering::AcqRel);
        shared.touch();
        let shared2 = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("vembed-conn".into())
            .spawn(move || connection::run(stream, shared2));
        match spawned {
            Ok(h) => connections.push(h),
            Err(e) => {
                shared.clients.fetch_sub(1, Ordering::AcqRel);
                tracing::error!("cannot spawn a connection thread: {e}");
            }
        }
    }
    let reason =
        shared.stop_reason.lock().unwrap_or_else(|p| p.into_inner()).unwrap_or(StopReason::Signal);
    tracing::info!("stopping ({reason:?}); finishing requests in flight");
    // New clients now find no socket (or a refused one) and start a new host.
    drop(listener);
    drop(lingering);
    if let Err(e) = fs::remove_file(&shared.config.socket) {
        tracing::warn!("removing {}: {e}", shared.config.socket.display());
    }
    queue.close();
    // Should a request never finish (a bug), exit anyway rather than hold
    // the lock forever: clients would then wait on a host that never comes.
    std::thread::spawn(|| {
        std::thread::sleep(SHUTDOWN_GRACE);
        tracing::error!("requests in flight did not finish within {SHUTDOWN_GRACE:?}; exiting");
        std::process::exit(1);
    });
    for h in connections {
        let _ = h.join();
    }
    queue.wait_idle();
    if let Some(h) = http {
        // The queue is drained: every HTTP request in flight has its answer.
        h.shutdown(Duration::from_secs(5));
    }
    tracing::info!("stopped");
    reason
}

/// Whether a new connection may be served, or the typed reason it may not.
fn admission(stream: &UnixStream, shared: &Shared) -> Result<(), (ErrorCode, String)> {
    match nix::sys::socket::getsockopt(stream, nix::sys::socket::sockopt::PeerCredentials) {
        Ok(cred) if cred.uid() == shared.euid => {}
        Ok(cred) => {
            tracing::warn!("refused a peer with uid {} (pid {})", cred.uid(), cred.pid());
            return Err((
                ErrorCode::PermissionDenied,
                format!("this host serves uid {} only; peer has uid {}", shared.euid, cred.uid()),
            ));
        }
        Err(e) => {
            tracing::warn!("SO_PEERCRED failed: {e}");
            return Err((ErrorCode::PermissionDenied, format!("cannot check the peer: {e}")));
        }
    }
    let clients = shared.clients.load(Ordering::Acquire);
    if clients >= shared.config.max_connections {
        tracing::warn!("refused a connection: {clients} open");
        return Err((
            ErrorCode::Overloaded,
            format!(
                "too many connections ({} open, the limit); retry shortly",
                shared.config.max_connections
            ),
        ));
    }
    Ok(())
}
