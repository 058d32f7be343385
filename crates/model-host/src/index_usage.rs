//! Who used each code index through the host, for `vembed status`: jobs
//! run, files they embedded, searches answered, and the client processes.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// Client processes remembered per index.
pub const MAX_CLIENTS: usize = 16;

/// What a client did with an index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    /// Asked for an indexing job (run, or joined while running).
    Index,
    /// Searched it.
    Search,
}

/// One index's counters.
#[derive(Debug, Clone, Default)]
pub struct Usage {
    /// The repository.
    pub root: PathBuf,
    /// Jobs run (not joins).
    pub jobs: u64,
    /// Files those jobs embedded.
    pub files_embedded: u64,
    /// Searches answered.
    pub searches: u64,
    /// Unix seconds of the last use.
    pub last_used_unix: u64,
    /// Client pids, most recent first, each once (0: an HTTP caller).
    pub clients: VecDeque<u32>,
}

/// The counters of every index the host has used, by index directory.
#[derive(Default)]
pub struct IndexUsage {
    by_dir: Mutex<HashMap<PathBuf, Usage>>,
}

fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl IndexUsage {
    fn with<R>(&self, dir: &Path, root: &Path, f: impl FnOnce(&mut Usage) -> R) -> R {
        let mut map = self.by_dir.lock().unwrap_or_else(|p| p.into_inner());
        let u = map.entry(dir.to_path_buf()).or_default();
        if u.root.as_os_str().is_empty() {
            u.root = root.to_path_buf();
        }
        f(u)
    }

    /// Notes that client `pid` (`None`: an HTTP caller) indexed or searched
    /// the index at `dir` of the repository at `root`.
    pub fn record(&self, dir: &Path, root: &Path, pid: Option<u32>, what: Use) {
        self.with(dir, root, |u| {
            if what == Use::Search {
                u.searches += 1;
            }
            u.last_used_unix = now_unix();
            let pid = pid.unwrap_or(0);
            u.clients.retain(|&p| p != pid);
            u.clients.push_front(pid);
            u.clients.truncate(MAX_CLIENTS);
        });
    }

    /// Notes a finished job that embedded `files` files.
    pub fn job_done(&self, dir: &Path, root: &Path, files: u64) {
        self.with(dir, root, |u| {
            u.jobs += 1;
            u.files_embedded += files;
        });
    }

    /// Every index's counters, most recently used first.
    pub fn snapshot(&self) -> Vec<(PathBuf, Usage)> {
        let map = self.by_dir.lock().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<(PathBuf, Usage)> =
            map.iter().map(|(d, u)| (d.clone(), u.clone())).collect();
        v.sort_by(|a, b| b.1.last_used_unix.cmp(&a.1.last_used_unix).then(a.0.cmp(&b.0)));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_are_kept_once_most_recent_first_and_bounded() {
        let u = IndexUsage::default();
        let (d, r) = (Path::new("/ix"), Path::new("/repo"));
        for pid in [1, 2, 1, 3] {
            u.record(d, r, Some(pid), Use::Search);
        }
        u.record(d, r, None, Use::Index);
        u.job_done(d, r, 7);
        let s = u.snapshot();
        assert_eq!(s.len(), 1);
        let usage = &s[0].1;
        assert_eq!(usage.clients, [0, 3, 1, 2]);
        assert_eq!((usage.searches, usage.jobs, usage.files_embedded), (4, 1, 7));
        for pid in 10..40 {
            u.record(d, r, Some(pid), Use::Index);
        }
        assert_eq!(u.snapshot()[0].1.clients.len(), MAX_CLIENTS);
        assert_eq!(u.snapshot()[0].1.clients[0], 39);
    }
}
