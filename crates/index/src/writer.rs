//! The single writer of an index (the host): open or create, batches of
//! changes committed whole, and the forest built at each commit.

use super::*;

/// The single writer of an index (the host).
pub struct IndexWriter {
    pub(crate) env: Env<WithoutTls>,
    pub(crate) dbs: Dbs,
    model: ModelIdentity,
    dir: PathBuf,
    n_trees: Option<usize>,
    split_after: Option<usize>,
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
        let created: DbTuple = env
            .create_databases_and_commit(env.write_txn()?, |dbo, wtxn| -> heed::Result<_> {
                Ok(CommitOrAbort::<_, ()>::Commit((
                    dbo.create_database(wtxn, Some("vectors"))?,
                    dbo.create_database(wtxn, Some("snippets"))?,
                    dbo.create_database(wtxn, Some("files"))?,
                    dbo.create_database(wtxn, Some("meta"))?,
                    dbo.create_database(wtxn, Some("scan"))?,
                    dbo.create_database(wtxn, Some("postings"))?,
                )))
            })?
            .commit()
            .expect("never aborted");
        let dbs = Dbs::from(created);
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
            if schema == Some(1) && found == model {
                migrate_v1(&dbs, &mut wtxn, model.dim as usize)?;
            } else if schema != Some(SCHEMA_VERSION) {
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
            reset(&dbs, &mut wtxn, model)?;
        }
        dbs.meta.put(&mut wtxn, META_ROOT, &json(&root.display().to_string()))?;
        wtxn.commit()?;
        Ok(IndexWriter {
            env,
            dbs,
            model: model.clone(),
            dir: dir.to_path_buf(),
            n_trees: Some(DEFAULT_TREES),
            split_after: None,
        })
    }

    /// The index's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Trees in the forest ([`DEFAULT_TREES`] unless set): `None` lets arroy
    /// choose from the number of items and dimensions. Fewer trees build
    /// faster and need a larger `search_k` for the same recall.
    pub fn set_n_trees(&mut self, n_trees: Option<usize>) {
        self.n_trees = n_trees;
    }

    /// Most snippets in one leaf of a tree (`None`: arroy's default, the
    /// dimension). Applies to the tree nodes a commit builds or rebuilds.
    pub fn set_split_after(&mut self, split_after: Option<usize>) {
        self.split_after = split_after;
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
        Ok(Batch { w: self, wtxn, next_id, changed: false, lex })
    }
}

/// Schema 1 → 2: fills the lexical index from the stored snippets and the
/// scan store from the forest's own copy of each vector, in the
/// transaction that opens the index.
fn migrate_v1(dbs: &Dbs, wtxn: &mut heed::RwTxn<'_>, dim: usize) -> Result<()> {
    let mut files = Vec::new();
    for item in dbs.files.iter(wtxn)? {
        let (path, bytes) = item?;
        files.push((path.to_string(), parse::<FileEntry>(bytes, "file entry")?));
    }
    let mut lex = lexical::LexStats::default();
    for (_, entry) in &files {
        for &id in &entry.snippets {
            let Some(bytes) = dbs.snippets.get(wtxn, &id)? else { continue };
            let snippet: Snippet = parse(bytes, "snippet")?;
            lex.tokens += dbs.lex.add(wtxn, id, &snippet)?;
            lex.docs += 1;
        }
    }
    lexical::put_stats(&dbs.meta, wtxn, lex)?;
    let reader = arroy::Reader::open(wtxn, 0, dbs.vectors)?;
    let mut values = Vec::with_capacity(files.len());
    for (path, entry) in files {
        let mut vectors = Vec::with_capacity(entry.snippets.len());
        for &id in &entry.snippets {
            let v = reader.item_vector(wtxn, id)?.ok_or_else(|| {
                IndexError::Corrupt(format!("snippet {id} of {path} has no vector"))
            })?;
            if v.len() != dim {
                return Err(IndexError::Dimension { want: dim, got: v.len() });
            }
            vectors.push(v);
        }
        values.push((path, scan::encode(&entry.snippets, vectors.iter().map(Vec::as_slice))));
    }
    drop(reader);
    for (path, value) in values {
        dbs.scan.put(wtxn, &path, &value)?;
    }
    dbs.meta.put(wtxn, META_SCHEMA, &json(&SCHEMA_VERSION))?;
    Ok(())
}

/// Empties every database and starts a fresh index for `model`, with an
/// empty forest built so readers can open it at once.
fn reset(dbs: &Dbs, wtxn: &mut heed::RwTxn<'_>, model: &ModelIdentity) -> Result<()> {
    dbs.vectors.clear(wtxn)?;
    dbs.snippets.clear(wtxn)?;
    dbs.files.clear(wtxn)?;
    dbs.meta.clear(wtxn)?;
    dbs.scan.clear(wtxn)?;
    dbs.lex.postings.clear(wtxn)?;
    dbs.meta.put(wtxn, META_MODEL, &json(model))?;
    dbs.meta.put(wtxn, META_SCHEMA, &json(&SCHEMA_VERSION))?;
    dbs.meta.put(wtxn, META_NEXT_ID, &json(&0u32))?;
    dbs.meta.put(wtxn, META_UPDATED, &json(&now()))?;
    let writer = arroy::Writer::new(dbs.vectors, 0, model.dim as usize);
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    writer.builder(&mut rng).build(wtxn)?;
    Ok(())
}

/// Changes committed together.
pub struct Batch<'a> {
    w: &'a IndexWriter,
    wtxn: heed::RwTxn<'a>,
    next_id: u32,
    changed: bool,
    lex: lexical::LexStats,
}

impl Batch<'_> {
    /// Removes a file and its snippets. Returns how many snippets went.
    pub fn remove_file(&mut self, path: &str) -> Result<usize> {
        self.remove_file_inner(path).map_err(|e| e.on_write(&self.w.dir))
    }

    fn remove_file_inner(&mut self, path: &str) -> Result<usize> {
        let Some(bytes) = self.w.dbs.files.get(&self.wtxn, path)? else { return Ok(0) };
        let entry: FileEntry = parse(bytes, "file entry")?;
        let writer = arroy::Writer::new(self.w.dbs.vectors, 0, self.w.model.dim as usize);
        for &id in &entry.snippets {
            writer.del_item(&mut self.wtxn, id)?;
            if let Some(bytes) = self.w.dbs.snippets.get(&self.wtxn, &id)? {
                let snippet: Snippet = parse(bytes, "snippet")?;
                let len = self.w.dbs.lex.remove(&mut self.wtxn, id, &snippet)?;
                self.lex.docs = self.lex.docs.saturating_sub(1);
                self.lex.tokens = self.lex.tokens.saturating_sub(len);
            }
            self.w.dbs.snippets.delete(&mut self.wtxn, &id)?;
        }
        self.w.dbs.files.delete(&mut self.wtxn, path)?;
        self.w.dbs.scan.delete(&mut self.wtxn, path)?;
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
        let dim = self.w.model.dim as usize;
        let writer = arroy::Writer::new(self.w.dbs.vectors, 0, dim);
        let mut ids = Vec::with_capacity(snippets.len());
        for (snippet, vector) in snippets {
            let id = self.next_id;
            self.next_id += 1;
            writer.add_item(&mut self.wtxn, id, vector)?;
            self.w.dbs.snippets.put(&mut self.wtxn, &id, &json(snippet))?;
            self.lex.tokens += self.w.dbs.lex.add(&mut self.wtxn, id, snippet)?;
            self.lex.docs += 1;
            ids.push(id);
        }
        let value = scan::encode(&ids, snippets.iter().map(|(_, v)| *v));
        self.w.dbs.scan.put(&mut self.wtxn, path, &value)?;
        let entry = FileEntry { hash: hash.to_string(), snippets: ids, stat: None };
        self.w.dbs.files.put(&mut self.wtxn, path, &json(&entry))?;
        self.changed = true;
        Ok(removed)
    }

    /// Records the stat of a file already indexed whose content is the one
    /// indexed (no snippet changes, so no forest rebuild). A file the index
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

    /// Builds the forest for the changes and commits: readers see all of it
    /// or none of it.
    pub fn commit(self) -> Result<()> {
        let dir = self.w.dir.clone();
        self.commit_inner().map_err(|e| e.on_write(&dir))
    }

    fn commit_inner(mut self) -> Result<()> {
        if self.changed {
            let writer = arroy::Writer::new(self.w.dbs.vectors, 0, self.w.model.dim as usize);
            let mut rng = rand::rngs::StdRng::seed_from_u64(u64::from(self.next_id));
            let mut builder = writer.builder(&mut rng);
            if let Some(n) = self.w.n_trees {
                builder.n_trees(n);
            }
            if let Some(n) = self.w.split_after {
                builder.split_after(n);
            }
            builder.build(&mut self.wtxn)?;
            self.w.dbs.meta.put(&mut self.wtxn, META_NEXT_ID, &json(&self.next_id))?;
            lexical::put_stats(&self.w.dbs.meta, &mut self.wtxn, self.lex)?;
            self.w.dbs.meta.put(&mut self.wtxn, META_UPDATED, &json(&now()))?;
        }
        self.wtxn.commit()?;
        Ok(())
    }
}
