//! The changes `vembed setup victor` makes, shown before they are made, and
//! the record that lets `--undo` put every file back byte for byte.
//!
//! The record is written (with every file's bytes from before) before the
//! first change, so a setup cut off half-way can still be undone.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

/// One file setup writes: its content before (None: it did not exist) and
/// after.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(super) struct FileChange {
    pub path: PathBuf,
    pub before: Option<String>,
    pub after: String,
    /// Why, in a few words (shown above the diff).
    pub why: String,
}

/// The vembed package put into Victor's environment.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(super) struct PackageChange {
    /// The requirement or wheel given to pip.
    pub spec: String,
    /// The vembed version that was there before (None: none was).
    pub previous: Option<String>,
}

/// Everything one setup did, kept in the state dir until `--undo`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Record {
    pub mode: String,
    pub python: PathBuf,
    pub files: Vec<FileChange>,
    pub package: Option<PackageChange>,
    /// systemd user units enabled (undone with `systemctl --user disable --now`).
    pub units_enabled: Vec<String>,
    pub at_unix: u64,
}

/// Where the record lives.
pub(super) fn record_path() -> PathBuf {
    vembed_models::paths::state_dir().join("setup").join("victor.json")
}

pub(super) fn read_record() -> anyhow::Result<Option<Record>> {
    let path = record_path();
    match fs::read(&path) {
        Ok(bytes) => Ok(Some(
            serde_json::from_slice(&bytes)
                .with_context(|| format!("{}: not a setup record", path.display()))?,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

pub(super) fn write_record(record: &Record) -> anyhow::Result<()> {
    let path = record_path();
    write_atomic(&path, serde_json::to_string_pretty(record)?.as_bytes(), 0o600)
}

pub(super) fn remove_record() -> anyhow::Result<()> {
    let path = record_path();
    fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))
}

/// A file's current content, None when it does not exist.
pub(super) fn read_text(path: &Path) -> anyhow::Result<Option<String>> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(
            String::from_utf8(bytes)
                .with_context(|| format!("{} is not UTF-8 text", path.display()))?,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Writes `bytes` to `path` through a temporary file in the same folder and
/// a rename, so a reader sees the old file or the new one, never half.
/// An existing file keeps its permissions; a new one gets `mode`.
pub(super) fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = path.parent().context("a path without a folder")?;
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let perms = fs::metadata(path)
        .map(|m| m.permissions())
        .unwrap_or_else(|_| fs::Permissions::from_mode(mode));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a file in {}", dir.display()))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("writing {} (is the disk full?)", path.display()))?;
    fs::set_permissions(tmp.path(), perms)?;
    tmp.persist(path).with_context(|| format!("replacing {}", path.display()))?;
    Ok(())
}

impl FileChange {
    /// Makes the change. Refuses when the file changed since it was planned.
    pub fn apply(&self) -> anyhow::Result<()> {
        if read_text(&self.path)? != self.before {
            bail!("{} changed while setup ran; nothing more was written", self.path.display());
        }
        write_atomic(&self.path, self.after.as_bytes(), 0o644)
    }

    /// Puts the file back as it was: its old bytes, or no file. Refuses
    /// (unless `force`) when someone changed it after setup wrote it.
    pub fn undo(&self, force: bool) -> anyhow::Result<()> {
        let now = read_text(&self.path)?;
        if now.as_deref() != Some(self.after.as_str()) && now != self.before && !force {
            bail!(
                "{} changed after setup wrote it; left as it is (see the diff above; --force restores it anyway)",
                self.path.display()
            );
        }
        match &self.before {
            Some(text) => write_atomic(&self.path, text.as_bytes(), 0o644),
            None => match fs::remove_file(&self.path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e).with_context(|| format!("removing {}", self.path.display())),
            },
        }
    }

    /// The change as a unified diff (whole-file context: these files are short).
    pub fn diff(&self) -> String {
        diff(&self.path, self.before.as_deref(), Some(&self.after))
    }
}

/// A unified diff of two versions of a file (None: absent), every line shown.
pub(super) fn diff(path: &Path, before: Option<&str>, after: Option<&str>) -> String {
    let old: Vec<&str> = before.map(|t| t.lines().collect()).unwrap_or_default();
    let new: Vec<&str> = after.map(|t| t.lines().collect()).unwrap_or_default();
    let name =
        |present: bool| if present { path.display().to_string() } else { "/dev/null".into() };
    let mut out = format!(
        "--- {}\n+++ {}\n@@ -1,{} +1,{} @@\n",
        name(before.is_some()),
        name(after.is_some()),
        old.len(),
        new.len()
    );
    for (tag, line) in line_diff(&old, &new) {
        out.push(tag);
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The lines of `old` and `new` in order, each tagged ' ' (both), '-' or
/// '+', from a longest common subsequence (quadratic: for short files).
fn line_diff<'a>(old: &[&'a str], new: &[&'a str]) -> Vec<(char, &'a str)> {
    let (n, m) = (old.len(), new.len());
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if old[i] == new[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, Vec::with_capacity(n + m));
    while i < n || j < m {
        if i < n && j < m && old[i] == new[j] {
            out.push((' ', old[i]));
            i += 1;
            j += 1;
        } else if j < m && (i == n || lcs[i][j + 1] >= lcs[i + 1][j]) {
            out.push(('+', new[j]));
            j += 1;
        } else {
            out.push(('-', old[i]));
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_diff_keeps_common_lines_and_marks_the_rest() {
        let d = line_diff(&["a", "b", "c"], &["a", "x", "c", "d"]);
        assert_eq!(d, vec![(' ', "a"), ('+', "x"), ('-', "b"), (' ', "c"), ('+', "d")]);
        let d = diff(Path::new("/f"), None, Some("new\n"));
        assert_eq!(d, "--- /dev/null\n+++ /f\n@@ -1,0 +1,1 @@\n+new\n");
    }

    #[test]
    fn undo_restores_bytes_and_refuses_a_file_changed_since() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        fs::write(&path, "a = 1\n# kept\n").unwrap();
        let change = FileChange {
            path: path.clone(),
            before: read_text(&path).unwrap(),
            after: "a = 1\n# kept\nb = 2\n".into(),
            why: String::new(),
        };
        change.apply().unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), change.after);
        change.undo(false).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "a = 1\n# kept\n");
        change.apply().unwrap();
        fs::write(&path, "edited\n").unwrap();
        assert!(change.undo(false).unwrap_err().to_string().contains("changed after setup"));
        change.undo(true).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "a = 1\n# kept\n");
        // A file that did not exist is removed again.
        let new = FileChange {
            path: dir.path().join("sub/new.pth"),
            before: None,
            after: "x\n".into(),
            why: String::new(),
        };
        new.apply().unwrap();
        new.undo(false).unwrap();
        assert!(!new.path.exists());
    }
}
