//! The one rule for the directory that holds the host's socket and lock,
//! applied by the host before it binds and by every client before it
//! connects: a real directory (not a symbolic link), owned by this user, and
//! writable by nobody else. Anyone who could write there could put their own
//! socket in the host's place and read what this user embeds.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Why a socket directory or socket may not be used.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct UnsafePath {
    /// The directory or socket.
    pub path: PathBuf,
    /// What is wrong with it, naming its owner where that is the problem.
    pub reason: String,
}

fn unsafe_path(path: &Path, reason: String) -> UnsafePath {
    UnsafePath { path: path.to_path_buf(), reason }
}

/// This process's effective uid.
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// `uid 1000 (alice)`, or just `uid 1000` when the name is unknown.
pub fn describe_uid(uid: u32) -> String {
    match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        Ok(Some(u)) => format!("uid {uid} ({})", u.name),
        _ => format!("uid {uid}"),
    }
}

/// Checks that `dir` is safe to hold this user's host socket: not a symbolic
/// link, a directory, owned by this user, and neither group- nor
/// world-writable. Nothing is changed on disk.
pub fn check(dir: &Path) -> Result<(), UnsafePath> {
    let meta = fs::symlink_metadata(dir)
        .map_err(|e| unsafe_path(dir, format!("cannot inspect the socket directory: {e}")))?;
    check_meta(dir, &meta)
}

fn check_meta(dir: &Path, meta: &fs::Metadata) -> Result<(), UnsafePath> {
    if meta.file_type().is_symlink() {
        return Err(unsafe_path(
            dir,
            format!(
                "the socket directory is a symbolic link (owned by {}); vembed refuses to follow it. \
                 Remove it, or set XDG_RUNTIME_DIR or VEMBED_RUNTIME_DIR to a private directory",
                describe_uid(meta.uid())
            ),
        ));
    }
    if !meta.is_dir() {
        return Err(unsafe_path(dir, "the socket directory is not a directory".into()));
    }
    let me = euid();
    if meta.uid() != me {
        return Err(unsafe_path(
            dir,
            format!(
                "the socket directory is owned by {}, not by this user ({}); another user may have \
                 created it to intercept this user's embeddings. Remove it, or set XDG_RUNTIME_DIR \
                 or VEMBED_RUNTIME_DIR to a private directory",
                describe_uid(meta.uid()),
                describe_uid(me)
            ),
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(unsafe_path(
            dir,
            format!(
                "the socket directory is writable by other users (mode {:04o}); make it private \
                 (chmod 700) or use another one",
                meta.mode() & 0o7777
            ),
        ));
    }
    Ok(())
}

/// The secret in `path` (a bearer token, an API key): the file must be
/// this user's and readable by no one else (0600 or stricter), and hold one
/// non-empty line. The error says what is wrong, never what the file holds.
pub fn read_secret(path: &Path) -> Result<String, String> {
    let meta = fs::metadata(path).map_err(|e| e.to_string())?;
    let me = euid();
    if meta.uid() != me {
        return Err(format!("it is owned by uid {}, not by this user (uid {me})", meta.uid()));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(format!(
            "its mode is {:04o}: other users may read it; chmod 600 it",
            meta.mode() & 0o7777
        ));
    }
    let text = fs::read_to_string(path).map_err(|e| e.to_string())?;
    let secret = text.trim();
    if secret.is_empty() || secret.contains(char::is_whitespace) {
        return Err("it must hold one token (no spaces) and nothing else".into());
    }
    Ok(secret.to_string())
}

/// Makes sure `dir` exists and passes [`check`]. A missing directory is
/// created with `mkdir` mode 0700 (its parents as needed); one that exists,
/// even if created by a racing process a moment ago, is checked as found and
/// never chmodded or followed.
pub fn ensure(dir: &Path) -> Result<(), UnsafePath> {
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty())
        && fs::symlink_metadata(parent).is_err()
    {
        fs::create_dir_all(parent)
            .map_err(|e| unsafe_path(parent, format!("cannot create it: {e}")))?;
    }
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(unsafe_path(dir, format!("cannot create the socket directory: {e}"))),
    }
    check(dir)
}

/// Checks a socket file before connecting: it must be a socket (not a
/// symbolic link or anything else) owned by this user. A missing socket is
/// fine (no host runs); the connect then says so.
pub fn check_socket(socket: &Path) -> Result<(), UnsafePath> {
    let meta = match fs::symlink_metadata(socket) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(unsafe_path(socket, format!("cannot inspect the socket: {e}"))),
    };
    if meta.file_type().is_symlink() {
        return Err(unsafe_path(socket, "the socket is a symbolic link; refusing it".into()));
    }
    if !meta.file_type().is_socket() {
        return Err(unsafe_path(socket, "this is not a socket".into()));
    }
    if meta.uid() != euid() {
        return Err(unsafe_path(
            socket,
            format!(
                "the socket is owned by {}, not by this user ({}); refusing to send it anything",
                describe_uid(meta.uid()),
                describe_uid(euid())
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn creates_private_and_refuses_links_and_shared_dirs() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b/run");
        ensure(&dir).unwrap();
        assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
        // Existing and private: fine, and left as it is.
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        ensure(&dir).unwrap();
        assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o777, 0o755);

        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        let e = ensure(&link).unwrap_err();
        assert!(e.reason.contains("symbolic link"), "{e}");

        let shared = tmp.path().join("shared");
        fs::create_dir(&shared).unwrap();
        fs::set_permissions(&shared, fs::Permissions::from_mode(0o777)).unwrap();
        let e = check(&shared).unwrap_err();
        assert!(e.reason.contains("writable by other users"), "{e}");
        // Refused, and not chmodded.
        assert_eq!(fs::metadata(&shared).unwrap().mode() & 0o777, 0o777);

        let file = tmp.path().join("file");
        fs::write(&file, b"x").unwrap();
        assert!(check_socket(&file).unwrap_err().reason.contains("not a socket"));
        assert!(check_socket(&tmp.path().join("missing")).is_ok());
    }
}
