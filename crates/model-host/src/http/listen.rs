//! Binding the HTTP listeners, the bearer token, and the accept loops.
//!
//! Listeners come from the settings (`http_listen`: a TCP address;
//! `http_socket`: a Unix socket path) and from systemd socket activation
//! (`LISTEN_PID`/`LISTEN_FDS`). Bounds on every connection: its headers
//! within [`HEADER_TIMEOUT`], its body within [`super::BODY_TIMEOUT`] and
//! the size limit, and at most [`MAX_CONNECTIONS`] open at once; past that,
//! a connection gets a 503 and is closed at once.

use std::io;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use vembed_models::Settings;

use super::caller::Peer;
use super::{HEADER_TIMEOUT, MAX_CONNECTIONS, State};

/// Why the HTTP front door cannot start. The host does not start either: a
/// configured endpoint that is silently missing would send clients such as
/// Victor to their fallbacks.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// `http_listen` is not a TCP address.
    #[error("http_listen {value:?} is not a TCP address such as 127.0.0.1:11435: {reason}")]
    BadAddress {
        /// What was configured.
        value: String,
        /// Why it does not parse.
        reason: String,
    },
    /// Binding failed: the port is in use, or not ours to take.
    #[error("cannot serve HTTP on {what}: {source}")]
    Bind {
        /// The address or path.
        what: String,
        /// The error (in the message, so not also a `source()`).
        source: io::Error,
    },
    /// The token file cannot be used.
    #[error("http_token_file {path}: {reason}")]
    Token {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The Unix socket's directory is not private.
    #[error(transparent)]
    UnsafeDir(#[from] vembed_models::private_dir::UnsafePath),
}

/// The bound listeners and the token, ready to serve.
pub struct Listeners {
    tcp: Vec<TcpListener>,
    /// Each Unix listener, with the path to remove on exit (none for
    /// systemd's, which systemd owns).
    unix: Vec<(UnixListener, Option<PathBuf>)>,
    pub(super) token: Option<String>,
}

impl Listeners {
    /// Whether there is nothing to serve.
    pub fn is_empty(&self) -> bool {
        self.tcp.is_empty() && self.unix.is_empty()
    }

    /// The endpoints, for the log: `http://127.0.0.1:11435`, `unix:/path`.
    pub fn describe(&self) -> String {
        let tcp =
            self.tcp.iter().filter_map(|l| l.local_addr().ok()).map(|a| format!("http://{a}"));
        let unix = self.unix.iter().map(|(l, path)| match path {
            Some(p) => format!("unix:{}", p.display()),
            None => format!("unix:fd {}", l.as_raw_fd()),
        });
        tcp.chain(unix).collect::<Vec<_>>().join(", ")
    }
}

/// Binds what `settings` configures plus what systemd passed us.
pub fn bind(settings: &Settings) -> Result<Listeners, HttpError> {
    let mut out = Listeners { tcp: Vec::new(), unix: Vec::new(), token: None };
    systemd_listeners(&mut out);
    if let Some(value) = settings.http_listen.as_deref().filter(|v| !v.trim().is_empty()) {
        let addr = parse_addr(value)?;
        let l = TcpListener::bind(addr)
            .map_err(|source| HttpError::Bind { what: format!("http://{addr}"), source })?;
        deepen_backlog(&l);
        if !addr.ip().is_loopback() {
            tracing::warn!(
                "HTTP listens on {addr}, which is not a loopback address: other machines can reach it"
            );
        }
        out.tcp.push(l);
    }
    if let Some(path) = settings.http_socket.as_deref().filter(|p| !p.as_os_str().is_empty()) {
        let path = expand_home(path);
        out.unix.push((bind_unix(&path)?, Some(path)));
    }
    if let Some(path) = &settings.http_token_file {
        out.token = Some(read_token(&expand_home(path))?);
    }
    Ok(out)
}

/// `~/x` as `$HOME/x`, as a shell would (config files are not run by one).
fn expand_home(path: &Path) -> PathBuf {
    match (path.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => path.to_path_buf(),
    }
}

/// `127.0.0.1:11435`, `[::1]:11435`, `localhost:11435`, with or without `http://`.
fn parse_addr(value: &str) -> Result<SocketAddr, HttpError> {
    let v = value.trim().trim_start_matches("http://").trim_end_matches('/');
    let bad = |reason: String| HttpError::BadAddress { value: value.to_string(), reason };
    let addrs: Vec<SocketAddr> = v.to_socket_addrs().map_err(|e| bad(e.to_string()))?.collect();
    // `localhost` may resolve to ::1 first; clients mostly try 127.0.0.1.
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| bad("it resolves to no address".into()))
}

/// A Unix socket at `path`, 0600, in a private directory (created 0700 if
/// missing). A stale socket file nobody listens on is replaced.
fn bind_unix(path: &Path) -> Result<UnixListener, HttpError> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    vembed_models::private_dir::ensure(dir)?;
    let what = || format!("unix:{}", path.display());
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(HttpError::Bind {
            what: what(),
            source: io::Error::new(io::ErrorKind::AddrInUse, "another process listens on it"),
        });
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()) => {
            let _ = std::fs::remove_file(path);
        }
        Ok(_) => {
            return Err(HttpError::Bind {
                what: what(),
                source: io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "a file that is not a socket is there",
                ),
            });
        }
        Err(_) => {}
    }
    let l = UnixListener::bind(path).map_err(|source| HttpError::Bind { what: what(), source })?;
    deepen_backlog(&l);
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|source| HttpError::Bind { what: what(), source })?;
    Ok(l)
}

/// Connections the kernel queues for `accept`. std listens with a backlog
/// of 128: a burst of a thousand connects (agents starting together) then
/// overflows the queue while the accept loop catches up, and the overflow
/// is reset with no answer. The kernel caps this at `net.core.somaxconn`.
const BACKLOG: i32 = 4096;

/// Listens again on a bound socket with [`BACKLOG`] (Linux takes a second
/// `listen` as a new backlog).
fn deepen_backlog(l: &impl AsRawFd) {
    // SAFETY: listen on a socket fd we own; it only changes the queue length.
    if unsafe { libc::listen(l.as_raw_fd(), BACKLOG) } != 0 {
        tracing::warn!("cannot raise the HTTP accept backlog: {}", io::Error::last_os_error());
    }
}

/// The token in `path` (see [`vembed_models::private_dir::read_secret`]).
fn read_token(path: &Path) -> Result<String, HttpError> {
    vembed_models::private_dir::read_secret(path)
        .map_err(|reason| HttpError::Token { path: path.to_path_buf(), reason })
}

/// The sockets systemd passed (socket activation): `LISTEN_FDS` of them from
/// fd 3, when `LISTEN_PID` is this process.
fn systemd_listeners(out: &mut Listeners) {
    let ours = std::env::var("LISTEN_PID").ok().and_then(|p| p.parse::<u32>().ok())
        == Some(std::process::id());
    let n = std::env::var("LISTEN_FDS").ok().and_then(|n| n.parse::<RawFd>().ok()).unwrap_or(0);
    if !ours {
        return;
    }
    for fd in 3..3 + n {
        use nix::sys::socket::SockaddrLike;
        let family = nix::sys::socket::getsockname::<nix::sys::socket::SockaddrStorage>(fd)
            .ok()
            .and_then(|a| a.family());
        // The fd stays open for the life of the process; no child inherits it.
        // SAFETY: F_SETFD on an fd number only sets a flag; an fd that is not
        // open makes it fail with EBADF, which is ignored.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        match family {
            Some(
                nix::sys::socket::AddressFamily::Inet | nix::sys::socket::AddressFamily::Inet6,
            ) => {
                // SAFETY: systemd passed this fd to this process (LISTEN_PID is
                // ours) as a listening socket; it is taken exactly once, here.
                out.tcp.push(unsafe { TcpListener::from_raw_fd(fd) });
            }
            Some(nix::sys::socket::AddressFamily::Unix) => {
                // SAFETY: as above, a listening Unix socket systemd passed us, taken once.
                out.unix.push((unsafe { UnixListener::from_raw_fd(fd) }, None));
            }
            other => tracing::warn!("systemd passed fd {fd} of family {other:?}; not serving it"),
        }
    }
}

/// Serves every listener until `stop`, then gives connections `grace` to
/// finish the requests they have in flight.
pub(super) async fn serve_all(
    listeners: Listeners,
    state: Arc<State>,
    stop: watch::Receiver<bool>,
    grace: Duration,
) {
    let mut loops = tokio::task::JoinSet::new();
    for l in listeners.tcp {
        let (state, stop) = (state.clone(), stop.clone());
        let l = l.set_nonblocking(true).and_then(|()| tokio::net::TcpListener::from_std(l));
        match l {
            Ok(l) => {
                loops.spawn(async move {
                    accept_loop(
                        || async {
                            let (s, _) = l.accept().await?;
                            s.set_nodelay(true)?;
                            Ok((s, Some(Peer::Network)))
                        },
                        state,
                        stop,
                    )
                    .await
                });
            }
            Err(e) => tracing::error!("cannot serve a TCP listener: {e}"),
        }
    }
    let mut paths = Vec::new();
    for (l, path) in listeners.unix {
        paths.extend(path);
        let (state, stop) = (state.clone(), stop.clone());
        let l = l.set_nonblocking(true).and_then(|()| tokio::net::UnixListener::from_std(l));
        match l {
            Ok(l) => {
                let euid = vembed_models::private_dir::euid();
                loops.spawn(async move {
                    accept_loop(
                        || async {
                            let (s, _) = l.accept().await?;
                            // The same rule as the host's socket: this user only.
                            let same = s.peer_cred().map(|c| c.uid() == euid).unwrap_or(false);
                            Ok((s, same.then_some(Peer::SameUser)))
                        },
                        state,
                        stop,
                    )
                    .await
                });
            }
            Err(e) => tracing::error!("cannot serve a Unix listener: {e}"),
        }
    }
    let mut waiter = stop.clone();
    let _ = waiter.wait_for(|s| *s).await;
    loops.shutdown().await;
    for p in paths {
        let _ = std::fs::remove_file(p);
    }
    // Connections were told to finish (graceful shutdown); wait for them.
    let deadline = tokio::time::Instant::now() + grace;
    while state.metrics.open.load(Ordering::Acquire) > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Accepts connections with `accept` (which also says who the peer is, or
/// `None` when it may not be served) and serves each on a task of its own.
async fn accept_loop<S, F, Fut>(accept: F, state: Arc<State>, stop: watch::Receiver<bool>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = io::Result<(S, Option<Peer>)>>,
{
    loop {
        let (stream, peer) = match accept().await {
            Ok(s) => s,
            Err(e) => {
                // EMFILE and the like: back off instead of spinning.
                tracing::warn!("HTTP accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let open = state.metrics.open.fetch_add(1, Ordering::AcqRel) as usize;
        let Some(peer) = peer.filter(|_| open < MAX_CONNECTIONS) else {
            state.metrics.open.fetch_sub(1, Ordering::AcqRel);
            state.metrics.refused.fetch_add(1, Ordering::Relaxed);
            let (status, message) = if peer.is_some() {
                (
                    "503 Service Unavailable",
                    format!("too many HTTP connections ({MAX_CONNECTIONS} open); retry shortly"),
                )
            } else {
                ("403 Forbidden", "this socket serves its owner's processes only".to_string())
            };
            tokio::spawn(refuse(stream, status, message));
            continue;
        };
        let (state, stop) = (state.clone(), stop.clone());
        tokio::spawn(async move {
            serve_connection(stream, peer, state.clone(), stop).await;
            state.metrics.open.fetch_sub(1, Ordering::AcqRel);
        });
    }
}

/// Writes one short error response and closes, reading nothing.
async fn refuse<S: AsyncWrite + Unpin>(mut stream: S, status: &str, message: String) {
    let body = serde_json::json!({ "error": message }).to_string();
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let write = async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body.as_bytes()).await?;
        stream.shutdown().await
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), write).await;
}

/// Serves HTTP/1.1 on one connection until it closes, or until `stop`, when
/// the request in flight is finished first.
async fn serve_connection<S>(
    stream: S,
    peer: Peer,
    state: Arc<State>,
    mut stop: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service =
        hyper::service::service_fn(move |req| super::route::handle(state.clone(), peer, req));
    let mut builder = hyper::server::conn::http1::Builder::new();
    // Headers within HEADER_TIMEOUT (hyper's timer also bounds how long an
    // idle keep-alive connection waits for its next request).
    builder.timer(TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT).max_buf_size(64 * 1024);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let mut stopping = false;
    loop {
        if stopping {
            let _ = conn.as_mut().await;
            return;
        }
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!("HTTP connection ended: {e}");
                }
                return;
            }
            _ = stop.wait_for(|s| *s) => {
                conn.as_mut().graceful_shutdown();
                stopping = true;
            }
        }
    }
}
