//! The code indexer. The host is the one writer of every code index: it walks
//! a repository, chunks what changed, embeds the chunks through the inference
//! door as background work (so interactive requests, which have fewer tokens left, go first at
//! every batch), and commits to the index in bounded batches.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use vembed_index::chunk::chunk_file;
use vembed_index::{FileEntry, FileStat, Index, Mode, ModelIdentity, Snippet};
use vembed_protocol::{
    ErrorCode, ErrorReply, IndexProgress, IndexRequest, IndexStatus, IndexSummary, ModelRef,
    RankedSearchHit, RankedSearchRequest, Response, Role, SearchHit, SearchMode, SearchRequest,
};

use crate::index_usage::{IndexUsage, Use};
use crate::infer::{Class, Infer, InferError, Model, Work};
use crate::model::Embedder;

/// Chunks embedded and committed together: a crash loses at most these.
pub const COMMIT_CHUNKS: usize = 256;
/// Chunks per request to the queue, so a query waits behind at most one.
const EMBED_CHUNKS: usize = 32;
/// Requests of [`EMBED_CHUNKS`] an indexing job keeps queued: two, so the
/// next is ready when the model finishes one.
const EMBED_IN_FLIGHT: usize = 2;
/// Files chunked ahead of the one being embedded.
const CHUNKED_AHEAD: usize = 64;

/// Why indexing or a search through the host failed. Every variant is
/// answered as `ErrorCode::Index` with its message, which says what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IndexerError {
    /// The repository path cannot be used.
    #[error("repository {repo}: {reason}")]
    Repo {
        /// The path given.
        repo: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No model serves the code role.
    #[error("no model is configured for codebase_embedding_model")]
    NoCodeModel,
    /// A search through the host found no index.
    #[error("no index for {root} (at {dir}); build it with `vembed index {root}`")]
    NoIndex {
        /// The repository.
        root: String,
        /// Where its index would be.
        dir: String,
    },
    /// A search from a front door that takes no paths named a repository
    /// this host has not indexed for its user (see
    /// [`Indexer::search_registered`]).
    #[error(
        "repository {repo:?} has no index on this host; build one with `vembed index {repo}` \
         (HTTP searches only the repositories the host's user indexed at their default place)"
    )]
    NotRegistered {
        /// The repository as the caller named it.
        repo: String,
    },
    /// The index failed (another model, a full disk, ...).
    #[error(transparent)]
    Index(#[from] vembed_index::IndexError),
    /// The snippets or the query could not be embedded (the host is
    /// stopping, a remote model's service failed, ...).
    #[error(transparent)]
    Infer(#[from] InferError),
    /// The host stopped while the job waited.
    #[error("the host stopped")]
    Stopped,
    /// The job panicked (a bug); the index keeps what was committed.
    #[error("internal error while indexing: {0}; run vembed index again")]
    Panicked(String),
}

/// Someone waiting on an indexing job: gets every progress report and the
/// end (a front door turns them into its own frames).
pub type Subscriber = Box<dyn Fn(&Response) + Send>;

/// A job's subscribers: everyone who asked for this index while it ran.
struct Running {
    subscribers: Mutex<Vec<Subscriber>>,
}

impl Running {
    fn send(&self, response: &Response) {
        let subs = self.subscribers.lock().unwrap_or_else(|p| p.into_inner());
        for s in subs.iter() {
            s(response);
        }
    }
}

/// Indexing jobs and the open indexes.
pub struct Indexer {
    infer: Arc<Infer>,
    jobs: Mutex<HashMap<PathBuf, Arc<Running>>>,
    /// Each index this host has opened, once (LMDB allows a process one
    /// handle per environment): searches read it, jobs write it.
    indexes: Mutex<HashMap<PathBuf, Arc<Index>>>,
    usage: IndexUsage,
}

impl IndexerError {
    /// The wire code: `Upstream` when a remote model's service failed (the
    /// index keeps what was committed; run the job again), else `Index`.
    pub fn code(&self) -> ErrorCode {
        match self {
            IndexerError::Infer(e) if e.code() == ErrorCode::Upstream => ErrorCode::Upstream,
            _ => ErrorCode::Index,
        }
    }
}

/// A refusal of an index job or search, as every front door answers it.
pub(crate) fn index_error(message: String) -> Response {
    Response::Error(ErrorReply { code: ErrorCode::Index, message })
}

impl Indexer {
    /// An indexer embedding through the door `infer`.
    pub fn new(infer: Arc<Infer>) -> Arc<Indexer> {
        Arc::new(Indexer {
            infer,
            jobs: Mutex::new(HashMap::new()),
            indexes: Mutex::new(HashMap::new()),
            usage: IndexUsage::default(),
        })
    }

    /// The code model.
    fn code_model(&self) -> Result<Arc<Embedder>, IndexerError> {
        self.infer.model(&ModelRef::Role(Role::Code)).map_err(|_| IndexerError::NoCodeModel)
    }

    fn identity(e: &Embedder) -> ModelIdentity {
        ModelIdentity {
            name: e.name.clone(),
            sha256: e.sha256.clone(),
            dim: e.dim() as u32,
            identity: e.identity.clone(),
        }
    }

    fn dirs(repo: &str, index_dir: &Option<String>) -> Result<(PathBuf, PathBuf), IndexerError> {
        let bad = |reason: String| IndexerError::Repo { repo: repo.to_string(), reason };
        let root = Path::new(repo).canonicalize().map_err(|e| bad(e.to_string()))?;
        if !root.is_dir() {
            return Err(bad("not a directory".into()));
        }
        let dir = match index_dir {
            Some(d) => PathBuf::from(d),
            None => vembed_models::paths::default_index_dir(&root),
        };
        Ok((root, dir))
    }

    /// The index at `dir`, opened on first use: created when `create`, else
    /// [`vembed_index::IndexError::Missing`] if there is none.
    fn index_at(&self, dir: &Path, create: bool) -> Result<Arc<Index>, IndexerError> {
        let mut indexes = self.indexes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = indexes.get(dir) {
            return Ok(i.clone());
        }
        let i = Arc::new(Index::open(dir, create)?);
        indexes.insert(dir.to_path_buf(), i.clone());
        Ok(i)
    }

    /// Starts indexing for client `pid`, or joins the job already indexing
    /// the same place.
    pub fn index(self: &Arc<Self>, req: IndexRequest, pid: Option<u32>, subscriber: Subscriber) {
        let (root, dir) = match Self::dirs(&req.repo, &req.index_dir) {
            Ok(d) => d,
            Err(e) => return subscriber(&index_error(e.to_string())),
        };
        self.usage.record(&dir, &root, pid, Use::Index);
        let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(job) = jobs.get(&dir) {
            job.subscribers.lock().unwrap_or_else(|p| p.into_inner()).push(subscriber);
            return;
        }
        let job = Arc::new(Running { subscribers: Mutex::new(vec![subscriber]) });
        jobs.insert(dir.clone(), job.clone());
        drop(jobs);
        let me = self.clone();
        let (waiting, place) = (job.clone(), dir.clone());
        let spawned = std::thread::Builder::new().name("vembed-indexer".into()).spawn(move || {
            let started = Instant::now();
            // Leave the job table on every way out, a panic included, so
            // a request after the last answer starts a new job rather
            // than joining (and waiting on) this one.
            struct Leave<'a>(&'a Indexer, &'a Path);
            impl Drop for Leave<'_> {
                fn drop(&mut self) {
                    self.0.jobs.lock().unwrap_or_else(|p| p.into_inner()).remove(self.1);
                }
            }
            let leave = Leave(&me, &dir);
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                crate::fault::maybe_panic_in_indexer();
                me.run(&root, &dir, req.rebuild, &job)
            }))
            .unwrap_or_else(|p| Err(IndexerError::Panicked(crate::panics::message(&*p))));
            drop(leave);
            match result {
                Ok(mut summary) => {
                    summary.seconds = started.elapsed().as_secs_f64();
                    me.usage.job_done(&dir, &root, summary.indexed);
                    tracing::info!("indexed {}: {summary:?}", root.display());
                    job.send(&Response::IndexDone(summary));
                }
                Err(e) => {
                    tracing::warn!("indexing {} failed: {e}", root.display());
                    // A failed write (a full disk) can leave LMDB's handle
                    // unusable: the next job opens the index afresh.
                    me.indexes.lock().unwrap_or_else(|p| p.into_inner()).remove(&dir);
                    job.send(&Response::Error(ErrorReply {
                        code: e.code(),
                        message: e.to_string(),
                    }));
                }
            }
        });
        if let Err(e) = spawned {
            self.jobs.lock().unwrap_or_else(|p| p.into_inner()).remove(&place);
            waiting.send(&index_error(format!("cannot start an indexing thread: {e}")));
        }
    }

    fn run(
        &self,
        root: &Path,
        dir: &Path,
        rebuild: bool,
        job: &Running,
    ) -> Result<IndexSummary, IndexerError> {
        let embedder = self.code_model()?;
        let identity = Self::identity(&embedder);
        let writer = self.index_at(dir, true)?.writer(root, &identity, rebuild)?;
        let mut summary =
            IndexSummary { index_dir: dir.display().to_string(), ..Default::default() };

        // Walk, stat (or read and hash), and compare with what the index holds.
        let known: HashMap<String, FileEntry> = writer.files()?.into_iter().collect();
        let changes =
            crate::index_walk::walk(root, dir, &known, std::time::SystemTime::now(), &mut summary);
        let (todo, seen) = (changes.todo, changes.seen);
        let mut progress = IndexProgress {
            files_seen: summary.files_seen,
            files_to_index: todo.len() as u64,
            ..Default::default()
        };
        job.send(&Response::IndexProgress(progress.clone()));

        // Deleted files, and the stats of unchanged files read, in one batch.
        let gone: Vec<&String> = known.keys().filter(|p| !seen.contains(*p)).collect();
        if !gone.is_empty() || !changes.restat.is_empty() {
            let mut batch = writer.batch()?;
            for p in &gone {
                summary.chunks_removed += batch.remove_file(p)? as u64;
            }
            for (p, stat) in &changes.restat {
                batch.set_stat(p, *stat)?;
            }
            batch.commit()?;
            summary.deleted = gone.len() as u64;
        }

        // New and changed files: chunk, embed and commit in batches.
        let max = embedder.max_seq_length();
        let count = |s: &str| embedder.count_tokens(s).unwrap_or(usize::MAX);
        type Chunked = (String, String, Option<FileStat>, Vec<Snippet>, Vec<String>);
        let mut pending: Vec<Chunked> = Vec::new();
        let mut pending_chunks = 0;
        let flush = |pending: &mut Vec<Chunked>,
                     summary: &mut IndexSummary,
                     progress: &mut IndexProgress|
         -> Result<(), IndexerError> {
            // The texts go to the door as they are: nothing else reads them.
            let texts: Vec<String> =
                pending.iter_mut().flat_map(|p| std::mem::take(&mut p.4)).collect();
            let n_texts = texts.len();
            let started = Instant::now();
            let (vectors, tokens) = self.embed(&embedder, texts)?;
            let embedded = started.elapsed();
            summary.tokens += tokens;
            let dim = embedder.dim();
            let mut batch = writer.batch()?;
            let mut at = 0;
            for (path, hash, stat, snippets, _) in pending.iter() {
                let items: Vec<(Snippet, &[f32])> = snippets
                    .iter()
                    .enumerate()
                    .map(|(i, s)| (s.clone(), &vectors[(at + i) * dim..(at + i + 1) * dim]))
                    .collect();
                at += snippets.len();
                summary.chunks_removed += batch.put_file(path, hash, &items)? as u64;
                if let Some(stat) = stat {
                    batch.set_stat(path, *stat)?;
                }
                summary.chunks_added += snippets.len() as u64;
            }
            batch.commit()?;
            tracing::debug!(
                "indexed {n_texts} snippets ({tokens} tokens): embedded in {:.0} ms, committed in {:.0} ms",
                embedded.as_secs_f64() * 1e3,
                (started.elapsed() - embedded).as_secs_f64() * 1e3
            );
            summary.indexed += pending.len() as u64;
            progress.files_indexed = summary.indexed;
            progress.chunks_added = summary.chunks_added;
            job.send(&Response::IndexProgress(progress.clone()));
            pending.clear();
            Ok(())
        };
        // Files are chunked on a thread of their own, ahead of the model:
        // chunking counts tokens line by line, and done here it would leave
        // the model idle for about 7% of the job.
        std::thread::scope(|scope| {
            let (tx, rx) = crossbeam_channel::bounded(CHUNKED_AHEAD);
            scope.spawn(move || {
                for c in todo {
                    let chunks = chunk_file(&c.path, &c.text, max, &count);
                    let (snippets, texts): (Vec<Snippet>, Vec<String>) =
                        chunks.into_iter().map(|c| (c.snippet, c.embed_text)).unzip();
                    // A closed channel means the job failed: stop.
                    if tx.send((c.path, c.hash, c.stat, snippets, texts)).is_err() {
                        return;
                    }
                }
            });
            for file in rx {
                pending_chunks += file.4.len();
                pending.push(file);
                if pending_chunks >= COMMIT_CHUNKS {
                    flush(&mut pending, &mut summary, &mut progress)?;
                    pending_chunks = 0;
                }
            }
            if !pending.is_empty() {
                flush(&mut pending, &mut summary, &mut progress)?;
            }
            Ok(summary)
        })
    }

    /// Embeds texts through the door as background work (waiting for room
    /// behind clients), a few at a time, with [`EMBED_IN_FLIGHT`] requests
    /// out so the model never waits on this thread's tokenizing.
    fn embed(
        &self,
        embedder: &Arc<Embedder>,
        texts: Vec<String>,
    ) -> Result<(Vec<f32>, u64), IndexerError> {
        type Answer = crossbeam_channel::Receiver<Result<vembed_protocol::Embeddings, InferError>>;
        let mut out = Vec::with_capacity(texts.len() * embedder.dim());
        let mut tokens = 0u64;
        let mut waiting: std::collections::VecDeque<Answer> = std::collections::VecDeque::new();
        let mut collect = |rx: Answer| -> Result<(), IndexerError> {
            let e = rx.recv().map_err(|_| IndexerError::Stopped)??;
            tokens += e.tokens.iter().map(|&t| u64::from(t)).sum::<u64>();
            out.extend_from_slice(&e.data);
            Ok(())
        };
        // A remote model's requests are one call each, with a call in
        // flight for each of its lane threads and one more ready.
        let (per_request, in_flight) = match embedder.runner().map(|r| r.feed()) {
            Some(f) => (f.texts_per_call.clamp(1, EMBED_CHUNKS * 4), f.concurrency + 1),
            None => (EMBED_CHUNKS, EMBED_IN_FLIGHT),
        };
        let mut texts = texts.into_iter();
        loop {
            let group: Vec<String> = texts.by_ref().take(per_request).collect();
            if group.is_empty() {
                break;
            }
            let work = Work {
                class: Class::Background,
                ..Work::new(group, Model::Loaded(embedder.clone()), usize::MAX)
            };
            let (tx, rx) = crossbeam_channel::bounded(1);
            self.infer.embed(work, |_| Box::new(tx));
            waiting.push_back(rx);
            if waiting.len() >= in_flight {
                collect(waiting.pop_front().expect("one is waiting"))?;
            }
        }
        while let Some(rx) = waiting.pop_front() {
            collect(rx)?;
        }
        Ok((out, tokens))
    }

    /// Searches an index through the host by meaning (the old `Search`
    /// request): [`Indexer::search_ranked`] in semantic mode.
    pub fn search(
        &self,
        req: &SearchRequest,
        pid: Option<u32>,
    ) -> Result<Vec<SearchHit>, IndexerError> {
        let ranked = self.search_ranked(
            &RankedSearchRequest {
                repo: req.repo.clone(),
                index_dir: req.index_dir.clone(),
                query: req.query.clone(),
                k: req.k,
                mode: SearchMode::Semantic,
            },
            pid,
        )?;
        Ok(ranked.into_iter().map(|h| h.hit).collect())
    }

    /// Searches an index through the host in the request's mode: the same
    /// ranking a client computes in process (`vembed search`). The query is
    /// embedded through the shared queue unless the mode is lexical.
    pub fn search_ranked(
        &self,
        req: &RankedSearchRequest,
        pid: Option<u32>,
    ) -> Result<Vec<RankedSearchHit>, IndexerError> {
        crate::fault::maybe_delay_search(&req.query);
        let (root, dir) = Self::dirs(&req.repo, &req.index_dir)?;
        if !dir.join("data.mdb").exists() {
            return Err(IndexerError::NoIndex {
                root: root.display().to_string(),
                dir: dir.display().to_string(),
            });
        }
        self.search_at(&root, &dir, req, pid)
    }

    /// [`Indexer::search_ranked`] for a front door that takes no paths
    /// (HTTP): `req.repo` must name a repository this host has indexed for
    /// its user, which is to say one whose index is at its default place
    /// under the user's cache (the host's registry of indexes, keyed by the
    /// repository's canonical path). `req.index_dir` must be `None`. A
    /// directory never indexed, or indexed only elsewhere (`--index-dir`),
    /// is [`IndexerError::NotRegistered`], which names neither the index's
    /// place nor whether the directory exists.
    pub fn search_registered(
        &self,
        req: &RankedSearchRequest,
    ) -> Result<Vec<RankedSearchHit>, IndexerError> {
        let not = || IndexerError::NotRegistered { repo: req.repo.clone() };
        if req.index_dir.is_some() || !Path::new(&req.repo).is_absolute() {
            return Err(not());
        }
        let root = Path::new(&req.repo).canonicalize().map_err(|_| not())?;
        let dir = vembed_models::paths::default_index_dir(&root);
        if !root.is_dir() || !dir.join("data.mdb").is_file() {
            return Err(not());
        }
        self.search_at(&root, &dir, req, None)
    }

    /// Searches the index at `dir` of the repository at `root`.
    fn search_at(
        &self,
        root: &Path,
        dir: &Path,
        req: &RankedSearchRequest,
        pid: Option<u32>,
    ) -> Result<Vec<RankedSearchHit>, IndexerError> {
        let embedder = self.code_model()?;
        let reader = self.index_at(dir, false)?.reader(Some(&Self::identity(&embedder)))?;
        self.usage.record(dir, root, pid, Use::Search);
        let mode = Mode::from(req.mode);
        // A lexical search reads no embedding.
        let vector = match mode {
            Mode::Lexical => Vec::new(),
            _ => self.embed(&embedder, vec![req.query.clone()])?.0,
        };
        let hits = reader.search_mode(mode, &req.query, &vector, req.k as usize)?;
        Ok(hits.into_iter().map(RankedSearchHit::from).collect())
    }

    /// The indexes this host has used, most recently first, with their
    /// counts and clients (`vembed status`).
    pub fn statuses(&self) -> Vec<IndexStatus> {
        let indexes = self.indexes.lock().unwrap_or_else(|p| p.into_inner()).clone();
        self.usage
            .snapshot()
            .into_iter()
            .map(|(dir, u)| {
                let stats = indexes
                    .get(&dir)
                    .and_then(|i| i.reader(None).ok())
                    .and_then(|r| r.stats().ok());
                IndexStatus {
                    root: u.root.display().to_string(),
                    index_dir: dir.display().to_string(),
                    model: stats.as_ref().map(|s| s.model.to_string()).unwrap_or_default(),
                    files: stats.as_ref().map_or(0, |s| s.files),
                    snippets: stats.as_ref().map_or(0, |s| s.snippets),
                    disk_bytes: stats.as_ref().map_or(0, |s| s.disk_bytes),
                    updated_unix: stats.as_ref().map_or(0, |s| s.updated_unix),
                    jobs: u.jobs,
                    files_embedded: u.files_embedded,
                    searches: u.searches,
                    last_used_unix: u.last_used_unix,
                    clients: u.clients.into_iter().collect(),
                }
            })
            .collect()
    }
}

#[cfg(test)]
#[path = "indexer_tests.rs"]
mod tests;
