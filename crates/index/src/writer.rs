//! The single writer of an index (the host): open or create, and batches
//! of changes (snippets, vectors, codes, postings) committed whole.

use super::*;

/// The single writer of an index (the host).
pub struct IndexWriter {
    pub(crate) env: Env<WithoutTls>,
    pub(crate) dbs: Dbs,
    model: ModelIdentity,
    dir: PathBuf,
}

impl IndexWriter {
    /// Opens the index in `dir` for writing, creating it for `model` if it
    /// does not exist. An index of another model or schema is an error
    /// unless `rebuild`, which empties it.
    pub fn open(dir: &Path, root: &Path, model: &ModelIdentity, rebuild: bool) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .map_err(|source| IndexError::Io { path: dir.to_path_buf(), source })?;
        IndexWriter::on(open_env(dir, false)?, dir, root, model, rebuild)
    }

    /// The writer on an environment open already for writing (the one
    /// [`Index`](crate::Index) of this process): creates the databases when
    /// they are missing, checks the model and schema, records `root`.
    pub(crate) fn on(
        env: Env<WithoutTls>,
        dir: &Path,
        root: &Path,
        model: &ModelIdentity,
        rebuild: bool,
    ) -> Result<Self> {
        let (created, legacy): (DbTuple, _) = env
            .create_databases_and_commit(env.write_txn()?, |dbo, wtxn| -> heed::Result<_> {
                let n = DB_NAMES;
                let current = (
                    dbo.create_database(wtxn, Some(n[0]))?,
                    dbo.create_database(wtxn, Some(n[1]))?,
                    dbo.create_database(wtxn, Some(n[2]))?,
                    dbo.create_database(wtxn, Some(n[3]))?,
                    dbo.create_database(wtxn, Some(n[4]))?,
                    dbo.create_database(wtxn, Some(n[5]))?,
                );
                let legacy: (Option<_>, Option<_>) = (
                    dbo.open_database(wtxn, Some("vectors"))?,
                    dbo.open_database(wtxn, Some("scan"))?,
                );
                Ok(CommitOrAbort::<_, ()>::Commit((current, legacy)))
            })?
            .commit()
            .expect("never aborted");
        let legacy = migrate::Legacy { forest: legacy.0, scan: legacy.1 };
        // A new or rebuilt index takes the page-fitted block; an existing
        // one keeps what it recorded (below).
        let dim = model.dim as usize;
        let mut dbs = Dbs::from(created, dim, vectors_per_block(dim));
        let mut wtxn = env.write_txn()?;
        let stored: Option<ModelIdentity> = match dbs.meta.get(&wtxn, META_MODEL)? {
            Some(b) => Some(parse(b, "model")?),
            None => None,
        };
        let schema: Option<u32> = match dbs.meta.get(&wtxn, META_SCHEMA)? {
            Some(b) => Some(parse(b, "schema")?),
            None => None,
        };
        let fresh = stored.is_none();
        if let Some(found) = &stored
            && !rebuild
        {
            if schema == Some(2) && found == model {
                migrate::from_v2(&dbs, &legacy, &mut wtxn, dim)?;
            } else if schema == Some(3) || schema == Some(SCHEMA_VERSION) {
                // Schema 3 is schema 4 with blocks of 64, unrecorded:
                // recording them is the whole migration.
                dbs.vecs.per_block = stored_vector_block(&dbs.meta, &wtxn)?;
                if schema == Some(3) && found == model {
                    dbs.meta.put(&mut wtxn, META_VECTOR_BLOCK, &json(&dbs.vecs.per_block))?;
                    dbs.meta.put(&mut wtxn, META_SCHEMA, &json(&SCHEMA_VERSION))?;
                }
            } else {
                return Err(IndexError::Schema {
                    path: dir.to_path_buf(),
                    found: schema.unwrap_or(0),
                });
            }
            if found != model {
                return Err(IndexError::ModelMismatch {
                    path: dir.to_path_buf(),
                    found: found.to_string(),
                    wanted: model.to_string(),
                });
            }
        }
        if fresh || rebuild {
            reset(&dbs, &legacy, &mut wtxn, model)?;
        }
        dbs.meta.put(&mut wtxn, META_ROOT, &json(&root.display().to_string()))?;
        wtxn.commit()?;
        Ok(IndexWriter { env, dbs, model: model.clone(), dir: dir.to_path_buf() })
    }

    /// The index's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A reader on the same environment (one process may open an
    /// environment only once).
    pub fn reader(&self) -> IndexReader {
        IndexReader {
            env: self.env.clone(),
            dbs: self.dbs,
            model: self.model.clone(),
            dir: self.dir.clone(),
        }
    }

    /// Every indexed file with its entry.
    pub fn files(&self) -> Result<Vec<(String, FileEntry)>> {
        let rtxn = self.env.read_txn()?;
        let mut out = Vec::new();
        for item in self.dbs.files.iter(&rtxn)? {
            let (path, bytes) = item?;
            out.push((path.to_string(), parse(bytes, "file entry")?));
        }
        Ok(out)
    }

    /// Starts a batch of changes: nothing is visible to readers until
    /// [`Batch::commit`].
    pub fn batch(&self) -> Result<Batch<'_>> {
        let wtxn = self.env.write_txn()?;
        let next_id = match self.dbs.meta.get(&wtxn, META_NEXT_ID)? {
            Some(b) => parse(b, "next id")?,
            None => 0,
        };
        let lex = lexical::stats(&self.dbs.meta, &wtxn)?;
        let (vecs, codes) =
            (blocks::Pending::new(self.dbs.vecs), blocks::Pending::new(self.dbs.codes));
        Ok(Batch { w: self, wtxn, next_id, changed: false, lex, vecs, codes, row: Vec::new() })
    }
}

/// Empties every database and starts a fresh index for `model`.
fn reset(
    dbs: &Dbs,
    legacy: &migrate::Legacy,
    wtxn: &mut heed::RwTxn<'_>,
    model: &ModelIdentity,
) -> Result<()> {
    legacy.clear(wtxn)?;
    dbs.snippets.clear(wtxn)?;
    dbs.files.clear(wtxn)?;
    dbs.meta.clear(wtxn)?;
    dbs.vecs.db.clear(wtxn)?;
    dbs.codes.db.clear(wtxn)?;
    dbs.lex.postings.clear(wtxn)?;
    dbs.meta.put(wtxn, META_MODEL, &json(model))?;
    dbs.meta.put(wtxn, META_SCHEMA, &json(&SCHEMA_VERSION))?;
    dbs.meta.put(wtxn, META_VECTOR_BLOCK, &json(&dbs.vecs.per_block))?;
    dbs.meta.put(wtxn, META_NEXT_ID, &json(&0u32))?;
    dbs.meta.put(wtxn, META_UPDATED, &json(&now()))?;
    Ok(())
}

/// Changes committed together.
pub struct Batch<'a> {
    w: &'a IndexWriter,
    wtxn: heed::RwTxn<'a>,
    next_id: u32,
    changed: bool,
    lex: lexical::LexStats,
    /// The vector and code blocks this batch changes, written at commit.
    vecs: blocks::Pending,
    codes: blocks::Pending,
    row: Vec<u8>,
}

impl Batch<'_> {
    /// Removes a file and its snippets. Returns how many snippets went.
    pub fn remove_file(&mut self, path: &str) -> Result<usize> {
        self.remove_file_inner(path).map_err(|e| e.on_write(&self.w.dir))
    }

    fn remove_file_inner(&mut self, path: &str) -> Result<usize> {
        let Some(bytes) = self.w.dbs.files.get(&self.wtxn, path)? else { return Ok(0) };
        let entry: FileEntry = parse(bytes, "file entry")?;
        for &id in &entry.snippets {
            self.vecs.remove(&self.wtxn, id)?;
            self.codes.remove(&self.wtxn, id)?;
            if let Some(bytes) = self.w.dbs.snippets.get(&self.wtxn, &id)? {
                let snippet: Snippet = parse(bytes, "snippet")?;
                let len = self.w.dbs.lex.remove(&mut self.wtxn, id, &snippet)?;
                self.lex.docs = self.lex.docs.saturating_sub(1);
                self.lex.tokens = self.lex.tokens.saturating_sub(len);
            }
            self.w.dbs.snippets.delete(&mut self.wtxn, &id)?;
        }
        self.w.dbs.files.delete(&mut self.wtxn, path)?;
        self.changed = true;
        Ok(entry.snippets.len())
    }

    /// Replaces a file's snippets (all of them) with new ones and their
    /// vectors. Returns how many old snippets were removed. A vector of the
    /// wrong length or with a NaN or infinity is refused before anything of
    /// the file is changed.
    pub fn put_file(
        &mut self,
        path: &str,
        hash: &str,
        snippets: &[(Snippet, &[f32])],
    ) -> Result<usize> {
        let dim = self.w.model.dim as usize;
        for (snippet, vector) in snippets {
            if vector.len() != dim {
                return Err(IndexError::Dimension { want: dim, got: vector.len() });
            }
            if !vector.iter().all(|x| x.is_finite()) {
                return Err(IndexError::NonFinite {
                    path: snippet.path.clone(),
                    line: snippet.start_line,
                });
            }
        }
        self.put_file_inner(path, hash, snippets).map_err(|e| e.on_write(&self.w.dir))
    }

    fn put_file_inner(
        &mut self,
        path: &str,
        hash: &str,
        snippets: &[(Snippet, &[f32])],
    ) -> Result<usize> {
        let removed = self.remove_file_inner(path)?;
        let mut ids = Vec::with_capacity(snippets.len());
        for (snippet, vector) in snippets {
            let id = self.next_id;
            self.next_id = self.next_id.checked_add(1).ok_or_else(|| {
                IndexError::Corrupt("snippet ids are used up: rebuild the index".to_string())
            })?;
            self.row.clear();
            rows::encode(vector, &mut self.row);
            self.vecs.insert(&self.wtxn, id, &self.row)?;
            self.row.clear();
            codes::encode(vector, &mut self.row);
            self.codes.insert(&self.wtxn, id, &self.row)?;
            self.w.dbs.snippets.put(&mut self.wtxn, &id, &json(snippet))?;
            self.lex.tokens += self.w.dbs.lex.add(&mut self.wtxn, id, snippet)?;
            self.lex.docs += 1;
            ids.push(id);
        }
        let entry = FileEntry { hash: hash.to_string(), snippets: ids, stat: None };
        self.w.dbs.files.put(&mut self.wtxn, path, &json(&entry))?;
        self.changed = true;
        Ok(removed)
    }

    /// Records the stat of a file already indexed whose content is the one
    /// indexed (no snippet changes). A file the index
    /// does not hold is left alone.
    pub fn set_stat(&mut self, path: &str, stat: FileStat) -> Result<()> {
        let Some(bytes) = self.w.dbs.files.get(&self.wtxn, path)? else { return Ok(()) };
        let mut entry: FileEntry = parse(bytes, "file entry")?;
        entry.stat = Some(stat);
        self.w
            .dbs
            .files
            .put(&mut self.wtxn, path, &json(&entry))
            .map_err(|e| IndexError::from(e).on_write(&self.w.dir))?;
        Ok(())
    }

    /// Writes the changed vector and code blocks and commits: readers see
    /// all of it or none of it.
    pub fn commit(self) -> Result<()> {
        let dir = self.w.dir.clone();
        self.commit_inner().map_err(|e| e.on_write(&dir))
    }

    fn commit_inner(mut self) -> Result<()> {
        if self.changed {
            self.vecs.flush(&mut self.wtxn)?;
            self.codes.flush(&mut self.wtxn)?;
            self.w.dbs.meta.put(&mut self.wtxn, META_NEXT_ID, &json(&self.next_id))?;
            lexical::put_stats(&self.w.dbs.meta, &mut self.wtxn, self.lex)?;
            self.w.dbs.meta.put(&mut self.wtxn, META_UPDATED, &json(&now()))?;
        }
        self.wtxn.commit()?;
        Ok(())
    }
}
