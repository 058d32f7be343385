//! What changed in a repository since its index last looked: the walk of
//! an indexing job.
//!
//! Every file the ignore rules keep is compared with the index's entry for
//! it. A file whose size, inode and change times are those recorded beside
//! its hash is unchanged without being read (git's index does the same); any
//! other is read and hashed, and is unchanged if its content hash is the
//! one indexed. So a job over a repository where nothing changed reads no
//! file, and a search that first brings the index up to date (Victor's
//! `code search`) costs a walk of stats.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::Digest;
use vembed_index::{FileEntry, FileStat};
use vembed_protocol::IndexSummary;

/// Files larger than this are skipped (generated or data files).
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// A stat is recorded only for a file last changed at least this long
/// before it was read: a change within the file system's time resolution of
/// the read would leave the same stat (a "racily clean" file).
const SETTLED: Duration = Duration::from_secs(2);

/// A new or changed file, read.
pub struct Changed {
    /// Path relative to the root, `/`-separated.
    pub path: String,
    /// Hash of `text`.
    pub hash: String,
    /// The content.
    pub text: String,
    /// Its stat, if it was settled when read.
    pub stat: Option<FileStat>,
}

/// The outcome of a walk.
#[derive(Default)]
pub struct Changes {
    /// New and changed files.
    pub todo: Vec<Changed>,
    /// Every indexable file found (anything indexed and not here is gone).
    pub seen: HashSet<String>,
    /// Unchanged files whose stat the index lacks or has stale: recorded so
    /// the next walk need not read them.
    pub restat: Vec<(String, FileStat)>,
}

/// A file's stat, if it was last changed [`SETTLED`] before `now`.
fn settled_stat(md: &std::fs::Metadata, now: SystemTime) -> Option<FileStat> {
    let ns = |s: i64, n: i64| s.checked_mul(1_000_000_000)?.checked_add(n);
    let stat = FileStat {
        size: md.len(),
        mtime_ns: ns(md.mtime(), md.mtime_nsec())?,
        ctime_ns: ns(md.ctime(), md.ctime_nsec())?,
        ino: md.ino(),
    };
    let now_ns = i64::try_from(now.duration_since(UNIX_EPOCH).ok()?.as_nanos()).ok()?;
    let limit = now_ns - SETTLED.as_nanos() as i64;
    (stat.mtime_ns < limit && stat.ctime_ns < limit).then_some(stat)
}

/// Walks `root` (skipping `index_dir`, hidden files and what the ignore
/// files exclude) against the index's `known` entries at time `now`,
/// counting into `summary` (`files_seen`, `skipped`, `unchanged`).
pub fn walk(
    root: &Path,
    index_dir: &Path,
    known: &HashMap<String, FileEntry>,
    now: SystemTime,
    summary: &mut IndexSummary,
) -> Changes {
    let mut out = Changes::default();
    let walker = ignore::WalkBuilder::new(root)
        .hidden(true)
        .git_ignore(true)
        .git_exclude(true)
        .git_global(false)
        .require_git(false)
        .build();
    for entry in walker.flatten() {
        if !entry.file_type().is_some_and(|t| t.is_file()) {
            continue;
        }
        let path = entry.path();
        if path.starts_with(index_dir) {
            continue;
        }
        let Ok(rel) = path.strip_prefix(root) else { continue };
        let rel = rel.to_string_lossy().replace('\\', "/");
        summary.files_seen += 1;
        let md = entry.metadata().ok();
        let stat = md.as_ref().and_then(|m| settled_stat(m, now));
        let old = known.get(&rel);
        if let (Some(old), Some(stat)) = (old, stat)
            && old.stat == Some(stat)
        {
            out.seen.insert(rel);
            summary.unchanged += 1;
            continue;
        }
        let too_big = md.as_ref().is_none_or(|m| m.len() > MAX_FILE_BYTES);
        let bytes = if too_big { None } else { std::fs::read(path).ok() };
        let text = bytes
            .filter(|b| !b[..b.len().min(8192)].contains(&0))
            .and_then(|b| String::from_utf8(b).ok());
        let Some(text) = text else {
            summary.skipped += 1;
            continue;
        };
        out.seen.insert(rel.clone());
        let hash: String =
            sha2::Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
        if old.is_some_and(|o| o.hash == hash) {
            summary.unchanged += 1;
            if let Some(stat) = stat {
                out.restat.push((rel, stat));
            }
            continue;
        }
        out.todo.push(Changed { path: rel, hash, text, stat });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(hash: &str, stat: Option<FileStat>) -> FileEntry {
        FileEntry { hash: hash.into(), snippets: vec![1], stat }
    }

    fn hash_of(text: &str) -> String {
        sha2::Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn a_settled_file_with_its_stat_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let (root, ix) = (dir.path().join("repo"), dir.path().join("ix"));
        std::fs::create_dir_all(&root).unwrap();
        for (name, text) in
            [("kept.py", "a = 1\n"), ("nostat.py", "b = 2\n"), ("edited.py", "c = 3\n")]
        {
            std::fs::write(root.join(name), text).unwrap();
        }
        // Walked three seconds on, every file has settled.
        let later = SystemTime::now() + Duration::from_secs(3);
        let kept = settled_stat(&std::fs::metadata(root.join("kept.py")).unwrap(), later).unwrap();
        let now = SystemTime::now();
        assert!(settled_stat(&std::fs::metadata(root.join("kept.py")).unwrap(), now).is_none());
        let mut known = HashMap::new();
        // kept.py's entry has its stat and a hash that is not its content's:
        // a walk that read it would call it changed.
        known.insert("kept.py".to_string(), entry("not-the-hash", Some(kept)));
        known.insert("nostat.py".to_string(), entry(&hash_of("b = 2\n"), None));
        known.insert("edited.py".to_string(), entry(&hash_of("c = 0\n"), None));
        known.insert("gone.py".to_string(), entry("x", None));
        let mut summary = IndexSummary::default();
        let changes = walk(&root, &ix, &known, later, &mut summary);
        assert_eq!((summary.files_seen, summary.unchanged), (3, 2), "{summary:?}");
        let todo: Vec<&str> = changes.todo.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(todo, ["edited.py"]);
        assert!(changes.todo[0].stat.is_some());
        // nostat.py was read, found the same, and gets its stat recorded.
        assert_eq!(changes.restat.len(), 1);
        assert_eq!(changes.restat[0].0, "nostat.py");
        assert!(!changes.seen.contains("gone.py") && changes.seen.len() == 3);
        // Walked now, nothing has settled: every file is read, none restated.
        let mut summary = IndexSummary::default();
        let changes = walk(&root, &ix, &known, now, &mut summary);
        let todo: Vec<&str> = changes.todo.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(todo.len(), 2, "kept.py is read and its bogus hash differs: {todo:?}");
        assert!(changes.restat.is_empty() && changes.todo.iter().all(|c| c.stat.is_none()));
    }

    #[test]
    fn a_changed_file_shows_a_different_stat() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f.py");
        std::fs::write(&f, "x = 1\n").unwrap();
        let later = SystemTime::now() + Duration::from_secs(3);
        let before = settled_stat(&std::fs::metadata(&f).unwrap(), later).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&f, "x = 2\n").unwrap();
        let after = settled_stat(&std::fs::metadata(&f).unwrap(), later).unwrap();
        assert_ne!(before, after, "same size, new content: the times differ");
    }
}
