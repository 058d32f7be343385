//! The index's errors.

use std::path::{Path, PathBuf};

use crate::SCHEMA_VERSION;

/// Errors of the index.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// No index at this place.
    #[error("no index at {0}; build it with `vembed index REPO`")]
    Missing(PathBuf),
    /// The index was built by another model.
    #[error(
        "the index at {path} was built with {found}, but the code model is {wanted}; \
         rebuild it with `vembed index --rebuild REPO`"
    )]
    ModelMismatch {
        /// The index.
        path: PathBuf,
        /// Its model.
        found: String,
        /// The model asked for.
        wanted: String,
    },
    /// The index has another layout version.
    #[error(
        "the index at {path} has schema {found}, this vembed reads {SCHEMA_VERSION}: {}",
        if *found > SCHEMA_VERSION {
            "it was written by a newer vembed; upgrade this one, or rebuild it with `vembed index --rebuild`"
        } else {
            "`vembed index` updates a schema-2 or -3 index in place; rebuild any other with `vembed index --rebuild`"
        }
    )]
    Schema {
        /// The index.
        path: PathBuf,
        /// Its version.
        found: u32,
    },
    /// A vector of the wrong length.
    #[error("a vector has {got} dimensions, the index {want}")]
    Dimension {
        /// Expected.
        want: usize,
        /// Given.
        got: usize,
    },
    /// LMDB failed.
    #[error("LMDB: {0}")]
    Lmdb(heed::Error),
    /// Stored metadata is unreadable.
    #[error("corrupt metadata: {0}")]
    Corrupt(String),
    /// A write failed because the disk (or the index's map) is full. The
    /// index keeps everything committed before; indexing again resumes.
    #[error(
        "the index at {dir} cannot grow: the disk is full ({free} free on its file system): {cause}; \
         free some space or move the index (--index-dir), then run `vembed index` again: it \
         resumes where it stopped"
    )]
    DiskFull {
        /// The index directory.
        dir: PathBuf,
        /// Free space on its file system, for a human ("2.1 MiB").
        free: String,
        /// What LMDB said.
        cause: String,
    },
    /// A vector holds NaN or infinity; nothing of the batch is written.
    #[error(
        "snippet {path}:{line} has a non-finite vector (NaN or infinity); refusing to index it"
    )]
    NonFinite {
        /// The snippet's file.
        path: String,
        /// Its first line.
        line: u32,
    },
    /// A search asked for more results or candidates than the bounds allow.
    #[error(
        "a search for {k} results{} is over the bounds ({max_k} results, {max_candidates} candidates)",
        candidates.map(|s| format!(" re-ranking {s} candidates")).unwrap_or_default()
    )]
    TooMany {
        /// Results asked for.
        k: usize,
        /// Candidates asked for.
        candidates: Option<usize>,
        /// The bound on results.
        max_k: usize,
        /// The bound on candidates.
        max_candidates: usize,
    },
    /// A filesystem error.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

// By hand rather than `#[from]`: the messages already hold the inner
// error's, and a `source()` would make error chains print it twice.
impl From<heed::Error> for IndexError {
    fn from(e: heed::Error) -> Self {
        IndexError::Lmdb(e)
    }
}

/// Result of this crate.
pub type Result<T> = std::result::Result<T, IndexError>;

impl IndexError {
    /// The error a failed write in `dir` really is: a full disk or map is
    /// [`IndexError::DiskFull`], naming the place and its free space, instead
    /// of a bare `Input/output error`.
    pub(crate) fn on_write(self, dir: &Path) -> IndexError {
        let cause = self.to_string();
        let io = match &self {
            IndexError::Lmdb(heed::Error::Io(e)) => Some(e),
            _ => None,
        };
        let full_io = io
            .and_then(|e| e.raw_os_error())
            .is_some_and(|c| [libc::ENOSPC, libc::EDQUOT, libc::EFBIG, libc::EIO].contains(&c));
        let map_full = matches!(&self, IndexError::Lmdb(heed::Error::Mdb(heed::MdbError::MapFull)));
        if !(full_io || map_full) {
            return self;
        }
        IndexError::DiskFull { dir: dir.to_path_buf(), free: free_space(dir), cause }
    }
}

/// Free space on the file system holding `dir`, for a human.
fn free_space(dir: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else { return "unknown".into() };
    // SAFETY: zeroed is a valid statvfs (plain integers).
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path and `st` a statvfs we own.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return "unknown".into();
    }
    let bytes = st.f_bavail as f64 * st.f_frsize as f64;
    if bytes >= (1u64 << 30) as f64 {
        format!("{:.1} GiB", bytes / (1u64 << 30) as f64)
    } else if bytes >= (1 << 20) as f64 {
        format!("{:.1} MiB", bytes / (1 << 20) as f64)
    } else {
        format!("{} KiB", (bytes / 1024.0) as u64)
    }
}
