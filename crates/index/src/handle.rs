//! An index as one process holds it. LMDB lets a process open an
//! environment only once, so a process that both searches and writes an
//! index (the host) keeps one [`Index`] per index and takes from it the
//! readers of every search and the writer of every indexing job: a search
//! never opens, or waits for, a writer.

use super::*;

/// One index's environment, open to read and write.
pub struct Index {
    env: Env<WithoutTls>,
    dir: PathBuf,
}

impl Index {
    /// Opens the index in `dir`. With `create`, its directory and files are
    /// made when missing; without, a directory holding no index is
    /// [`IndexError::Missing`]. Opening writes nothing: the first
    /// [`Index::writer`] sets the index up.
    pub fn open(dir: &Path, create: bool) -> Result<Index> {
        if create {
            std::fs::create_dir_all(dir)
                .map_err(|source| IndexError::Io { path: dir.to_path_buf(), source })?;
        } else if !dir.join("data.mdb").is_file() {
            return Err(IndexError::Missing(dir.to_path_buf()));
        }
        Ok(Index { env: open_env(dir, false)?, dir: dir.to_path_buf() })
    }

    /// The index's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A reader of the index, with the checks of [`IndexReader::open`]: an
    /// index never written is [`IndexError::Missing`], and with `expect`,
    /// an index of another model is an error.
    pub fn reader(&self, expect: Option<&ModelIdentity>) -> Result<IndexReader> {
        IndexReader::on(self.env.clone(), &self.dir, expect)
    }

    /// The writer of the index of the repository at `root`, with the checks
    /// of [`IndexWriter::open`]: created for `model` if new, an error if of
    /// another model or schema unless `rebuild`, which empties it (readers
    /// see the empty index at the commit). One writer at a time.
    pub fn writer(&self, root: &Path, model: &ModelIdentity, rebuild: bool) -> Result<IndexWriter> {
        IndexWriter::on(self.env.clone(), &self.dir, root, model, rebuild)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{model, snippet, unit};

    #[test]
    fn one_handle_gives_the_readers_and_the_writer_and_a_rebuild_empties_it_for_open_readers() {
        let dir = tempfile::tempdir().unwrap();
        let root = Path::new("/repo");
        let nowhere = dir.path().join("nowhere");
        assert!(matches!(Index::open(&nowhere, false), Err(IndexError::Missing(_))));
        assert!(!nowhere.exists(), "opening without create makes nothing");

        let index = Index::open(dir.path(), true).unwrap();
        // Nothing to read before the first writer sets the index up.
        assert!(matches!(index.reader(None), Err(IndexError::Missing(_))));
        let w = index.writer(root, &model(3), false).unwrap();
        let v = unit(&[1.0, 0.0, 0.0]);
        let mut batch = w.batch().unwrap();
        batch.put_file("a.py", "h1", &[(snippet("a.py", 1), &v)]).unwrap();
        batch.commit().unwrap();
        let r = index.reader(Some(&model(3))).unwrap();
        assert_eq!(r.search(&v, 5).unwrap()[0].snippet.path, "a.py");

        // Another model: refused to readers and to the writer alike.
        let err = index.reader(Some(&model(4))).err().unwrap().to_string();
        assert!(err.contains("rebuild"), "{err}");
        assert!(index.writer(root, &model(4), false).is_err());

        // A rebuild while a reader is open: it sees the empty index.
        drop(w);
        let w = index.writer(root, &model(3), true).unwrap();
        let s = r.stats().unwrap();
        assert_eq!((s.files, s.snippets, s.root.as_str()), (0, 0, "/repo"));
        assert!(r.search(&v, 5).unwrap().is_empty() && w.files().unwrap().is_empty());
    }
}
