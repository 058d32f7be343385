//! Start-up: the private socket directory, the host's lock, the socket.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

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
        /// The error (in the message, so not also a `source()`).
        source: io::Error,
    },
    /// The socket directory is not safe to use (a symbolic link, another
    /// user's, or writable by others). Nothing was changed in it.
    #[error(transparent)]
    UnsafeDir(#[from] vembed_models::private_dir::UnsafePath),
    /// A model failed to load.
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> HostError + 'a {
    move |source| HostError::Io { what, path: path.to_path_buf(), source }
}

/// The host's lock, held for its whole life. The lock file is never unlinked,
/// so two hosts can never both believe they hold it.
pub struct HostLock {
    _lock: Flock<File>,
}

/// Makes sure the socket's directory is private (creating it 0700 with
/// `mkdir`, never following a link or chmodding what it finds) and takes the
/// exclusive lock. Returns `None` when another host holds it (it is running
/// or starting).
pub fn acquire(socket: &Path) -> Result<Option<HostLock>, HostError> {
    let dir = socket.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    vembed_models::private_dir::ensure(dir)?;
    let lock_path = vembed_models::paths::lock_path_for(socket);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        // A planted link must not make us create or lock a file elsewhere.
        .custom_flags(libc::O_NOFOLLOW)
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
    match fs::symlink_metadata(socket) {
        Ok(m) if m.file_type().is_socket() => {
            fs::remove_file(socket).map_err(io_err("removing stale socket", socket))?;
            tracing::info!("removed stale socket {}", socket.display());
        }
        Ok(_) => {
            return Err(HostError::Io {
                what: "binding",
                path: socket.to_path_buf(),
                source: io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "something other than a socket is in the way; remove it",
                ),
            });
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("inspecting", socket)(e)),
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

/// Raises this process's open-file limit to its hard limit: every client
/// connection is a descriptor, and the default soft limit (often 1024) would
/// refuse clients long before `max_connections`.
pub fn raise_fd_limit() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one rlimit into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 && lim.rlim_cur < lim.rlim_max
    {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: setrlimit reads the struct; raising the soft limit up to the
        // hard one needs no privilege.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    }
}

/// Fixes glibc's mmap threshold at 1 MiB, so that large buffers (a bulk
/// request's replies and frames) are always their own mappings and go back
/// to the kernel when freed. By default glibc raises the threshold after the
/// first large free, and later large buffers then stay in the heap after they
/// are freed. Not lower: gemm allocates packing buffers of about 0.6 and
/// 0.8 MiB per product, which must stay in the heap to be reused without
/// page faults.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes the allocator's tuning parameters.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}
