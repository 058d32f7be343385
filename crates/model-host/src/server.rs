//! The socket side of the host: lock, bind, accept, one reader and one writer
//! thread per connection, handshake, limits, and graceful shutdown.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read};
use std::os::fd::AsFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};
use vembed_protocol::framing;
use vembed_protocol::{
    ABSOLUTE_MAX_FRAME_BYTES, EmbedRequest, ErrorCode, ErrorReply, HelloReply, HostStatus, Limits,
    ModelStatus, PROTOCOL_VERSION, Request, RequestFrame, Response, ResponseFrame,
};

use crate::cache::{self, EmbedCache, TextHash};
use crate::indexer::Indexer;
use crate::outbox::Outbox;
use crate::queue::{self, Job, Queue, SubmitError};
use crate::queue::{CachedJob, Reply};
use crate::registry::Registry;
use crate::stats::{self, Stats};

/// Errors that stop the host from starting.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// A file-system step failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// The step.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The socket directory is not safe to use.
    #[error("{path}: {message}")]
    UnsafeDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// A model failed to load.
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> HostError + 'a {
    move |source| HostError::Io { what, path: path.to_path_buf(), source }
}

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
    /// Connections served at once; more are refused with `Overloaded`.
    pub max_connections: usize,
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
            max_connections: 1024,
        }
    }
}

/// The host's lock, held for its whole life. The lock file is never unlinked,
/// so two hosts can never both believe they hold it.
pub struct HostLock {
    _lock: Flock<File>,
}

/// Creates the socket's directory safely and takes the exclusive lock.
/// Returns `None` when another host holds it (it is running or starting).
pub fn acquire(socket: &Path) -> Result<Option<HostLock>, HostError> {
    let dir = socket.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let default_dir = vembed_models::paths::runtime_dir();
    if !dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_err("creating", dir))?;
    }
    let meta = fs::metadata(dir).map_err(io_err("reading", dir))?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if meta.uid() != euid {
        return Err(HostError::UnsafeDir {
            path: dir.to_path_buf(),
            message: format!("owned by uid {}, not by this user ({euid})", meta.uid()),
        });
    }
    if dir == default_dir && meta.mode() & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(io_err("chmod", dir))?;
    }
    let lock_path = vembed_models::paths::lock_path_for(socket);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&lock_path)
        .map_err(io_err("opening", &lock_path))?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(Some(HostLock { _lock: lock })),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, e)) => Err(HostError::Io {
            what: "locking",
            path: lock_path,
            source: io::Error::from_raw_os_error(e as i32),
        }),
    }
}

/// Binds the socket (0600), replacing a stale socket file. Call only while
/// holding the [`HostLock`]: then no live host owns the old file.
pub fn bind(socket: &Path, _lock: &HostLock) -> Result<UnixListener, HostError> {
    match fs::remove_file(socket) {
        Ok(()) => tracing::info!("removed stale socket {}", socket.display()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("removing stale socket", socket)(e)),
    }
    // SAFETY: umask only swaps the process's file-creation mask; no thread of
    // ours creates files concurrently at this point of start-up.
    let old = unsafe { libc::umask(0o177) };
    let bound = UnixListener::bind(socket);
    // SAFETY: as above, restoring the previous mask.
    unsafe { libc::umask(old) };
    let listener = bound.map_err(io_err("binding", socket))?;
    fs::set_permissions(socket, fs::Permissions::from_mode(0o600))
        .map_err(io_err("chmod", socket))?;
    Ok(listener)
}

/// How long a stopping host waits for requests in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(60);

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

/// State shared by every thread of a host.
struct Shared {
    config: HostConfig,
    registry: Arc<Registry>,
    stats: Arc<Stats>,
    cache: Arc<EmbedCache>,
    indexer: Arc<Indexer>,
    started: Instant,
    stop: Arc<AtomicBool>,
    stop_reason: Mutex<Option<StopReason>>,
    clients: AtomicUsize,
    last_active: Mutex<Instant>,
    /// The uid every peer must have.
    euid: u32,
}

impl Shared {
    fn request_stop(&self, reason: StopReason) {
        let mut r = self.stop_reason.lock().unwrap_or_else(|p| p.into_inner());
        r.get_or_insert(reason);
        self.stop.store(true, Ordering::Release);
    }
}

/// Serves `listener` until a signal (`stop` set), a `Shutdown` request, or
/// the idle timeout; then finishes requests in flight and returns.
pub fn serve(
    listener: UnixListener,
    config: HostConfig,
    registry: Registry,
    stop: Arc<AtomicBool>,
) -> StopReason {
    let registry = Arc::new(registry);
    let stats = Arc::new(Stats::default());
    let cache = Arc::new(EmbedCache::new(config.embed_cache_dir.clone()));
    let queue = queue::start(
        registry.clone(),
        stats.clone(),
        cache.clone(),
        config.limits.max_batch_tokens as usize,
        config.limits.max_queue_texts as usize,
    );
    let indexer = Indexer::new(registry.clone(), queue.clone());
    let shared = Arc::new(Shared {
        config,
        registry,
        stats,
        cache,
        indexer,
        started: Instant::now(),
        stop,
        stop_reason: Mutex::new(None),
        clients: AtomicUsize::new(0),
        last_active: Mutex::new(Instant::now()),
        // SAFETY: geteuid has no preconditions and cannot fail.
        euid: unsafe { libc::geteuid() },
    });
    let mut connections: Vec<JoinHandle<()>> = Vec::new();
    let idle = Duration::from_secs(shared.config.settings.idle_timeout_secs);
    loop {
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
                continue;
            }
        };
        connections.retain(|h| !h.is_finished());
        let shared2 = shared.clone();
        let queue = queue.clone();
        shared.stats.connections.fetch_add(1, Ordering::Relaxed);
        let spawned = std::thread::Builder::new()
            .name("vembed-conn".into())
            .spawn(move || handle_connection(stream, shared2, queue));
        match spawned {
            Ok(h) => connections.push(h),
            Err(e) => tracing::error!("cannot spawn a connection thread: {e}"),
        }
    }
    let reason =
        shared.stop_reason.lock().unwrap_or_else(|p| p.into_inner()).unwrap_or(StopReason::Signal);
    tracing::info!("stopping ({reason:?}); finishing requests in flight");
    // New clients now find no socket (or a refused one) and start a new host.
    drop(listener);
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
    tracing::info!("stopped");
    reason
}

/// What reading one frame produced.
enum Incoming {
    Frame,
    TooLarge(u32),
    Closed,
    Stopped,
    TimedOut,
    Failed(io::Error),
}

/// Reads one frame into `buf`. Between frames it waits as long as the client
/// likes (checking for shutdown); once a frame has started it must arrive
/// within `frame_timeout`, so a stalled client only loses its own connection.
fn read_frame(stream: &mut impl Read, buf: &mut Vec<u8>, shared: &Shared) -> Incoming {
    let mut header = [0u8; 4];
    let mut got = 0;
    let mut started: Option<Instant> = None;
    while got < 4 {
        match stream.read(&mut header[got..]) {
            Ok(0) if got == 0 => return Incoming::Closed,
            Ok(0) => return Incoming::Failed(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => {
                got += n;
                started.get_or_insert_with(Instant::now);
            }
            Err(e) if is_timeout(&e) => match started {
                None if shared.stop.load(Ordering::Acquire) => return Incoming::Stopped,
                None => {}
                Some(t) if t.elapsed() > shared.config.frame_timeout => return Incoming::TimedOut,
                Some(_) => {}
            },
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Incoming::Failed(e),
        }
    }
    let started = started.unwrap_or_else(Instant::now);
    let len = u32::from_le_bytes(header);
    if len > shared.config.limits.max_frame_bytes {
        return Incoming::TooLarge(len);
    }
    buf.clear();
    buf.resize(len as usize, 0);
    match read_full(stream, buf, started, shared) {
        Ok(()) => Incoming::Frame,
        Err(e) => e,
    }
}

fn read_full(
    stream: &mut impl Read,
    buf: &mut [u8],
    started: Instant,
    shared: &Shared,
) -> Result<(), Incoming> {
    let mut got = 0;
    while got < buf.len() {
        match stream.read(&mut buf[got..]) {
            Ok(0) => return Err(Incoming::Failed(io::ErrorKind::UnexpectedEof.into())),
            Ok(n) => got += n,
            Err(e) if is_timeout(&e) => {
                if started.elapsed() > shared.config.frame_timeout {
                    return Err(Incoming::TimedOut);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Incoming::Failed(e)),
        }
    }
    Ok(())
}

/// Reads and drops the payload of a frame that was too large.
fn skip(stream: &mut impl Read, mut len: u32, shared: &Shared) -> Result<(), Incoming> {
    let started = Instant::now();
    let mut scratch = vec![0u8; 64 << 10];
    while len > 0 {
        let n = (len as usize).min(scratch.len());
        read_full(stream, &mut scratch[..n], started, shared)?;
        len -= n as u32;
    }
    Ok(())
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
}

fn error(id: u64, code: ErrorCode, message: impl Into<String>) -> ResponseFrame {
    ResponseFrame { id, response: Response::Error(ErrorReply { code, message: message.into() }) }
}

/// The request id of a payload, if it has one.
fn peek_id(payload: &[u8]) -> u64 {
    payload.get(..8).and_then(|b| b.try_into().ok()).map_or(0, u64::from_le_bytes)
}

struct ClientGuard<'a>(&'a Shared);

impl Drop for ClientGuard<'_> {
    fn drop(&mut self) {
        self.0.clients.fetch_sub(1, Ordering::AcqRel);
        *self.0.last_active.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }
}

fn handle_connection(mut stream: UnixStream, shared: Arc<Shared>, queue: Queue) {
    let clients = shared.clients.fetch_add(1, Ordering::AcqRel) + 1;
    let _guard = ClientGuard(&shared);
    *shared.last_active.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();

    // Only our own user may talk to us.
    match nix::sys::socket::getsockopt(&stream, nix::sys::socket::sockopt::PeerCredentials) {
        Ok(cred) if cred.uid() == shared.euid => {}
        Ok(cred) => {
            tracing::warn!("refused a peer with uid {} (pid {})", cred.uid(), cred.pid());
            let msg =
                format!("this host serves uid {} only; peer has uid {}", shared.euid, cred.uid());
            let _ = framing::write_frame(&mut stream, &error(0, ErrorCode::PermissionDenied, msg));
            return;
        }
        Err(e) => {
            tracing::warn!("SO_PEERCRED failed: {e}; closing");
            return;
        }
    }
    if clients > shared.config.max_connections {
        let msg = format!("too many connections ({})", shared.config.max_connections);
        let _ = framing::write_frame(&mut stream, &error(0, ErrorCode::Overloaded, msg));
        return;
    }
    if let Err(e) = stream.set_read_timeout(Some(Duration::from_millis(200))) {
        tracing::warn!("set_read_timeout: {e}");
        return;
    }
    let (outbox, write_loop) = match stream.try_clone().and_then(Outbox::new) {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!("cannot clone the connection: {e}");
            return;
        }
    };
    let Ok(writer) = std::thread::Builder::new().name("vembed-writer".into()).spawn(write_loop)
    else {
        return;
    };
    let mut stream = BufReader::with_capacity(64 << 10, stream);
    let mut buf = Vec::new();
    let mut greeted = false;
    loop {
        match read_frame(&mut stream, &mut buf, &shared) {
            Incoming::Frame => {}
            Incoming::TooLarge(len) => {
                let limit = shared.config.limits.max_frame_bytes;
                outbox.send(&error(
                    0,
                    ErrorCode::FrameTooLarge,
                    format!("frame of {len} bytes exceeds the limit of {limit} bytes"),
                ));
                // Before the handshake, or beyond any sane size, the stream is
                // not worth resynchronising: close it.
                if !greeted
                    || len > ABSOLUTE_MAX_FRAME_BYTES
                    || skip(&mut stream, len, &shared).is_err()
                {
                    break;
                }
                shared.stats.record_error();
                continue;
            }
            Incoming::Closed | Incoming::Stopped => break,
            Incoming::TimedOut => {
                tracing::info!("dropping a client that stalled mid-frame");
                break;
            }
            Incoming::Failed(e) => {
                tracing::debug!("connection read failed: {e}");
                break;
            }
        }
        if !greeted {
            match framing::peek_hello_version(&buf) {
                Some(PROTOCOL_VERSION) => {}
                Some(v) => {
                    outbox.send(&error(
                        peek_id(&buf),
                        ErrorCode::VersionMismatch,
                        format!("client speaks protocol {v}, this host speaks {PROTOCOL_VERSION}; use a matching vembed"),
                    ));
                    break;
                }
                None => {
                    outbox.send(&error(
                        peek_id(&buf),
                        ErrorCode::HandshakeRequired,
                        "the first frame must be Hello",
                    ));
                    break;
                }
            }
        }
        let frame: RequestFrame = match framing::decode(&buf) {
            Ok(f) => f,
            Err(e) => {
                shared.stats.record_error();
                outbox.send(&error(peek_id(&buf), ErrorCode::Malformed, e.to_string()));
                if greeted {
                    continue;
                }
                break;
            }
        };
        let id = frame.id;
        match frame.request {
            Request::Hello(_) => {
                greeted = true;
                let reply = HelloReply {
                    version: PROTOCOL_VERSION,
                    host_version: env!("CARGO_PKG_VERSION").to_string(),
                    pid: std::process::id(),
                    models: shared.registry.infos(),
                    limits: shared.config.limits,
                };
                outbox.send(&ResponseFrame { id, response: Response::Hello(reply) });
            }
            _ if !greeted => {
                outbox.send(&error(
                    id,
                    ErrorCode::HandshakeRequired,
                    "the first frame must be Hello",
                ));
                break;
            }
            Request::Embed(req) => {
                if let Err(reply) = submit_embed(id, req, false, &shared, &queue, &outbox) {
                    shared.stats.record_error();
                    outbox.send(&reply);
                }
            }
            Request::EmbedCached(req) => {
                if let Err(reply) = submit_embed(id, req, true, &shared, &queue, &outbox) {
                    shared.stats.record_error();
                    outbox.send(&reply);
                }
            }
            Request::Index(req) => {
                shared.indexer.index(req, Reply::Socket(Arc::clone(&outbox)), id);
            }
            Request::Search(req) => {
                let response = match shared.indexer.search(&req) {
                    Ok(hits) => Response::SearchResults(hits),
                    Err(message) => {
                        shared.stats.record_error();
                        Response::Error(ErrorReply { code: ErrorCode::Index, message })
                    }
                };
                outbox.send(&ResponseFrame { id, response });
            }
            Request::Status => {
                let status = status(&shared, &queue);
                outbox.send(&ResponseFrame { id, response: Response::Status(Box::new(status)) });
            }
            Request::Shutdown => {
                tracing::info!("shutdown requested by a client");
                shared.request_stop(StopReason::Request);
                outbox.send(&ResponseFrame { id, response: Response::Ok });
            }
            Request::Ping => {
                outbox.send(&ResponseFrame { id, response: Response::Ok });
            }
        }
    }
    // Jobs in the queue hold their own outbox: the writer ends after the last answer.
    drop(outbox);
    let _ = writer.join();
}

fn submit_embed(
    id: u64,
    req: EmbedRequest,
    cached: bool,
    shared: &Shared,
    queue: &Queue,
    outbox: &Arc<Outbox>,
) -> Result<(), ResponseFrame> {
    let limits = shared.config.limits;
    if req.texts.len() > limits.max_texts_per_request as usize {
        return Err(error(
            id,
            ErrorCode::TooManyTexts,
            format!(
                "{} texts in one request; the limit is {} (split the request)",
                req.texts.len(),
                limits.max_texts_per_request
            ),
        ));
    }
    if let Some((i, t)) =
        req.texts.iter().enumerate().find(|(_, t)| t.len() > limits.max_text_bytes as usize)
    {
        return Err(error(
            id,
            ErrorCode::TextTooLarge,
            format!("text {i} is {} bytes; the limit is {} bytes", t.len(), limits.max_text_bytes),
        ));
    }
    // A model the host was not started with is loaded now, if it is on disk.
    let model = match shared.registry.lookup_or_load(&req.model) {
        Ok(m) => m,
        Err(e) => {
            let served: Vec<String> =
                shared.registry.all().iter().map(|m| m.name.clone()).collect();
            return Err(error(
                id,
                ErrorCode::UnknownModel,
                format!("cannot serve model {:?}: {e} (serving: {})", req.model, served.join(", ")),
            ));
        }
    };
    if shared.stop.load(Ordering::Acquire) {
        return Err(error(id, ErrorCode::ShuttingDown, "the host is shutting down"));
    }
    let received = Instant::now();
    let embedder = shared.registry.get(model);
    // Cached texts are answered from the cache; only the others are embedded.
    let (texts, cached) = if cached {
        let hashes: Vec<TextHash> = req.texts.iter().map(|t| cache::text_hash(t)).collect();
        let hits = shared.cache.get(&embedder.identity, embedder.dim(), &hashes);
        let mut misses = Vec::new();
        let mut miss_hashes = Vec::new();
        for ((t, h), hit) in req.texts.iter().zip(&hashes).zip(&hits) {
            if hit.is_none() {
                misses.push(t.as_str());
                miss_hashes.push(*h);
            }
        }
        (misses, Some(CachedJob { identity: embedder.identity.clone(), hits, miss_hashes }))
    } else {
        (req.texts.iter().map(String::as_str).collect(), None)
    };
    let mut ids = Vec::with_capacity(texts.len());
    for t in texts {
        // The tokenizer is third-party code fed untrusted text: a panic in it
        // becomes this request's error, not a dead connection.
        let tokenized =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| embedder.tokenize(t)))
                .unwrap_or_else(|_| {
                    Err(crate::model::ModelError::Tokenizer("tokenizer panicked".into()))
                });
        ids.push(tokenized.map_err(|e| error(id, ErrorCode::Internal, e.to_string()))?);
    }
    let job = Job { model, ids, id, reply: Reply::Socket(Arc::clone(outbox)), received, cached };
    queue.submit(job).map_err(|e| match e {
        SubmitError::Overloaded { .. } => error(id, ErrorCode::Overloaded, e.to_string()),
        SubmitError::ShuttingDown => error(id, ErrorCode::ShuttingDown, e.to_string()),
    })
}

fn status(shared: &Shared, queue: &Queue) -> HostStatus {
    let (p50, p99) = shared.stats.latency_percentiles();
    let models = shared
        .registry
        .infos()
        .into_iter()
        .zip(shared.registry.all())
        .map(|(info, m)| ModelStatus {
            info,
            files: m
                .files
                .iter()
                .filter_map(|f| {
                    let (bytes, resident_bytes) = crate::weights::residency(f).ok()?;
                    Some(vembed_protocol::FileResidency {
                        path: f.display().to_string(),
                        bytes,
                        resident_bytes,
                    })
                })
                .collect(),
        })
        .collect();
    HostStatus {
        pid: std::process::id(),
        host_version: env!("CARGO_PKG_VERSION").to_string(),
        uptime_ms: shared.started.elapsed().as_millis() as u64,
        socket: shared.config.socket.display().to_string(),
        models,
        memory: stats::memory_of("self"),
        clients: shared.clients.load(Ordering::Acquire) as u32,
        connections_total: shared.stats.connections.load(Ordering::Relaxed),
        requests: shared.stats.requests.load(Ordering::Relaxed),
        texts: shared.stats.texts.load(Ordering::Relaxed),
        errors: shared.stats.errors.load(Ordering::Relaxed),
        batches: shared.stats.batches.load(Ordering::Relaxed),
        queue_texts: queue.queued() as u32,
        latency_p50_us: p50,
        latency_p99_us: p99,
        threads: crate::threads() as u32,
        idle_timeout_secs: shared.config.settings.idle_timeout_secs,
        limits: shared.config.limits,
        cache: shared.cache.status(),
    }
}
