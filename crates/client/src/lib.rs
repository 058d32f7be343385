//! The vembed client: embeddings from the shared vembed host, with no ML
//! dependencies in your process.
//!
//! [`Client::connect_or_spawn`] finds the user's host on its Unix socket and
//! starts `vembed-host` when none runs (several processes may race to start
//! it; exactly one host wins and the rest connect to it).
//!
//! ```no_run
//! let mut client = vembed::Client::connect_or_spawn()?;
//! let vectors = client.embed(&["find the function that parses config files"])?;
//! assert_eq!(vectors[0].len(), client.hello().models[0].dim as usize);
//! Ok::<(), vembed::Error>(())
//! ```
#![warn(missing_docs)]

mod client;
mod connect;
pub mod flags;
pub mod search;
mod spawn;
pub mod tools;

pub use client::Client;
pub use connect::Timeouts;
pub use spawn::{SpawnOptions, StartupStatus};
pub use vembed_protocol::{
    Embeddings, ErrorCode, HelloReply, HostStatus, IndexProgress, IndexRequest, IndexSummary,
    Limits, ModelInfo, ModelRef, Rank, RankedSearchHit, RankedSearchRequest, Role, SearchHit,
    SearchMode, SearchRequest, SelectToolsRequest, ToolSelections,
};

use std::path::PathBuf;

/// Everything that can go wrong talking to the host.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No host listens on the socket.
    #[error("no vembed host is running on {socket}")]
    NotRunning {
        /// The socket tried.
        socket: PathBuf,
    },
    /// Connecting failed for another reason than "not running".
    #[error("cannot connect to {socket}: {source}")]
    Connect {
        /// The socket tried.
        socket: PathBuf,
        /// The error (in the message, so not also a `source()`).
        source: std::io::Error,
    },
    /// The socket, its directory or the process behind it is not this
    /// user's own: another user could be standing in for the host. Nothing
    /// was sent.
    #[error("refusing the vembed socket {path}: {reason}")]
    UnsafeSocket {
        /// The socket or its directory.
        path: PathBuf,
        /// What is wrong, naming the owner.
        reason: String,
    },
    /// The host accepted the connection but stopped answering, and a new
    /// connection got no answer either: it is stopped (SIGSTOP) or hung.
    #[error(
        "the vembed host{} on {socket} has not answered for {waited_ms} ms and does not answer a \
         new connection either: it is stopped or hung{}",
        pid.map(|p| format!(" (pid {p})")).unwrap_or_default(),
        pid.map(|p| format!("; resume it (kill -CONT {p}) or kill it (kill {p}) and retry")).unwrap_or_default()
    )]
    Unresponsive {
        /// The socket.
        socket: PathBuf,
        /// The host's pid, when the handshake told it.
        pid: Option<u32>,
        /// How long the client waited.
        waited_ms: u64,
    },
    /// A live host did not answer within the request deadline
    /// (`request_timeout_secs` plus `request_timeout_per_text_ms` per text).
    #[error(
        "the vembed host (pid {pid}) on {socket} did not answer within {waited_ms} ms; raise \
         request_timeout_secs if it is just busy"
    )]
    Timeout {
        /// The socket.
        socket: PathBuf,
        /// The host's pid.
        pid: u32,
        /// How long the client waited.
        waited_ms: u64,
    },
    /// The host could not be started.
    #[error("cannot start the vembed host: {message}")]
    Spawn {
        /// What went wrong, with where to look.
        message: String,
    },
    /// The host did not become ready in time.
    #[error("the vembed host on {socket} did not become ready within {waited_ms} ms")]
    StartTimeout {
        /// The socket waited on.
        socket: PathBuf,
        /// How long.
        waited_ms: u64,
    },
    /// The host speaks another protocol version.
    #[error("protocol mismatch: {message}")]
    VersionMismatch {
        /// The host's explanation.
        message: String,
    },
    /// The host refused the request with a typed error.
    #[error("host refused the request ({code}): {message}")]
    Host {
        /// The kind of failure.
        code: ErrorCode,
        /// The host's explanation.
        message: String,
    },
    /// The connection dropped before the answer came.
    #[error("the vembed host closed the connection")]
    Disconnected,
    /// The host answered something this client did not expect.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// Reading or writing the socket failed.
    #[error("socket i/o: {0}")]
    Io(std::io::Error),
}

impl Error {
    /// The host's error code, when the host refused the request.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Host { code, .. } => Some(*code),
            Error::VersionMismatch { .. } => Some(ErrorCode::VersionMismatch),
            _ => None,
        }
    }
}

// By hand rather than `#[from]`: the message already holds the io::Error's,
// and a `source()` would make error chains print it twice.
impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e)
    }
}

impl From<vembed_protocol::FrameError> for Error {
    fn from(e: vembed_protocol::FrameError) -> Self {
        use vembed_protocol::FrameError as F;
        match e {
            F::Closed => Error::Disconnected,
            F::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Error::Disconnected,
            F::Io(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Error::Disconnected,
            F::Io(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Error::Disconnected,
            F::Io(e) => Error::Io(e),
            other => Error::Protocol(other.to_string()),
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
