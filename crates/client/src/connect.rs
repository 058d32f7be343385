//! Opening the socket, safely and within a deadline.
//!
//! Before a single byte is sent the client checks what it connects to: the
//! socket's directory must be this user's own and private
//! ([`vembed_models::private_dir`]), the socket file must be a socket this
//! user owns, and after connecting the process listening on it must run as
//! this user (`SO_PEERCRED`). Otherwise another local user could stand in for
//! the host and read everything this user embeds.

use std::io;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, UnixAddr, sockopt};
use nix::sys::time::TimeVal;
use vembed_models::private_dir;

use crate::{Error, Result};

/// How long the client waits, from the settings `connect_timeout_ms`,
/// `request_timeout_secs` and `request_timeout_per_text_ms` (config file and
/// `VEMBED_*` variables).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Connecting plus the handshake; also how long a host may stay silent
    /// before the client checks, on a second connection, that it is alive,
    /// and how long that check may take.
    pub connect: Duration,
    /// The longest wait for one reply from a host that is alive, plus
    /// [`Timeouts::per_text`] for each text the reply covers.
    pub request: Duration,
    /// Added to the reply deadline per text.
    pub per_text: Duration,
}

impl Timeouts {
    /// The timeouts these settings name.
    pub fn from_settings(s: &vembed_models::Settings) -> Timeouts {
        Timeouts {
            connect: Duration::from_millis(s.connect_timeout_ms.max(1)),
            request: Duration::from_secs(s.request_timeout_secs.max(1)),
            per_text: Duration::from_millis(s.request_timeout_per_text_ms),
        }
    }

    /// The deadline for a reply covering `texts` texts.
    pub fn for_texts(&self, texts: usize) -> Duration {
        self.request + self.per_text * texts.min(u32::MAX as usize) as u32
    }
}

impl Default for Timeouts {
    /// From the config file and environment, else the built-in defaults.
    fn default() -> Self {
        let settings = vembed_models::Settings::load().unwrap_or_default();
        Timeouts::from_settings(&settings)
    }
}

fn unsafe_socket(e: private_dir::UnsafePath) -> Error {
    Error::UnsafeSocket { path: e.path, reason: e.reason }
}

/// Connects to `socket` after checking it, waiting at most `timeout` (a host
/// that is stopped with a full listen queue would otherwise block forever),
/// and checks the uid of the process on the other end.
pub(crate) fn open(socket: &Path, timeout: Duration) -> Result<UnixStream> {
    let not_running = || Error::NotRunning { socket: socket.to_path_buf() };
    let dir = socket.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(not_running()),
        _ => private_dir::check(dir).map_err(unsafe_socket)?,
    }
    private_dir::check_socket(socket).map_err(unsafe_socket)?;

    let connect_error = |source: io::Error| Error::Connect { socket: socket.to_path_buf(), source };
    let fd = socket::socket(AddressFamily::Unix, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)
        .map_err(|e| connect_error(e.into()))?;
    let tv = TimeVal::new(timeout.as_secs() as _, timeout.subsec_micros() as _);
    // On a Unix socket, connect waits for room in the listen queue up to the send timeout.
    socket::setsockopt(&fd, sockopt::SendTimeout, &tv).map_err(|e| connect_error(e.into()))?;
    let addr = UnixAddr::new(socket).map_err(|e| connect_error(e.into()))?;
    match socket::connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &addr) {
        Ok(()) => {}
        Err(nix::errno::Errno::ENOENT | nix::errno::Errno::ECONNREFUSED) => {
            return Err(not_running());
        }
        Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::ETIMEDOUT) => {
            return Err(Error::Unresponsive {
                socket: socket.to_path_buf(),
                pid: None,
                waited_ms: timeout.as_millis() as u64,
            });
        }
        Err(e) => return Err(connect_error(e.into())),
    }
    let stream = UnixStream::from(fd);
    let cred = socket::getsockopt(&stream, sockopt::PeerCredentials)
        .map_err(|e| connect_error(e.into()))?;
    let me = private_dir::euid();
    if cred.uid() != me {
        return Err(Error::UnsafeSocket {
            path: socket.to_path_buf(),
            reason: format!(
                "the process listening on it (pid {}) runs as {}, not as this user ({}); \
                 refusing to send it anything",
                cred.pid(),
                private_dir::describe_uid(cred.uid()),
                private_dir::describe_uid(me)
            ),
        });
    }
    stream.set_write_timeout(Some(timeout))?;
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::net::UnixListener;

    fn private() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        d
    }

    const WAIT: Duration = Duration::from_secs(5);

    #[test]
    fn no_host_is_not_running_not_an_io_error() {
        let d = private();
        let e = open(&d.path().join("host.sock"), WAIT).unwrap_err();
        assert!(matches!(e, Error::NotRunning { .. }), "{e}");
        let e = open(&d.path().join("missing/host.sock"), WAIT).unwrap_err();
        assert!(matches!(e, Error::NotRunning { .. }), "{e}");
    }

    #[test]
    fn a_socket_in_a_directory_others_can_write_is_refused_before_connecting() {
        let d = tempfile::tempdir().unwrap();
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let path = d.path().join("host.sock");
        let _listener = UnixListener::bind(&path).unwrap();
        let e = open(&path, WAIT).unwrap_err();
        assert!(matches!(e, Error::UnsafeSocket { .. }), "{e}");
    }

    #[test]
    fn a_file_that_is_not_a_socket_is_refused() {
        let d = private();
        let path = d.path().join("host.sock");
        std::fs::write(&path, b"not a socket").unwrap();
        let e = open(&path, WAIT).unwrap_err();
        assert!(matches!(e, Error::UnsafeSocket { .. }), "{e}");
    }

    #[test]
    fn a_private_socket_of_this_user_connects() {
        let d = private();
        let path = d.path().join("host.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let stream = open(&path, WAIT).unwrap();
        let (peer, _) = listener.accept().unwrap();
        drop((stream, peer));
    }

    #[test]
    fn a_reply_deadline_grows_with_its_texts() {
        let t = Timeouts {
            connect: Duration::from_secs(1),
            request: Duration::from_secs(30),
            per_text: Duration::from_millis(5),
        };
        assert_eq!(t.for_texts(0), Duration::from_secs(30));
        assert_eq!(t.for_texts(1000), Duration::from_secs(35));
    }
}
