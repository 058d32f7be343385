use std::collections::HashMap;
use std::io::{self, BufReader, BufWriter, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use vembed_protocol::framing;
use vembed_protocol::{
    ABSOLUTE_MAX_FRAME_BYTES, EmbedRequest, Embeddings, ErrorCode, FrameReader, Hello, HelloReply,
    HostStatus, IndexProgress, IndexRequest, IndexSummary, ModelRef, PROTOCOL_VERSION, Poll,
    RankedSearchHit, RankedSearchRequest, Request, RequestFrame, Response, ResponseFrame, Role,
    SearchHit, SearchRequest, SelectToolsRequest, ToolSelections,
};

use crate::connect::{self, Timeouts};
use crate::spawn::{self, SpawnOptions, StartupStatus};
use crate::{Error, Result};

/// Requests in flight at once on one connection during bulk embedding.
const PIPELINE_DEPTH: usize = 4;
/// Texts per request during bulk embedding: small enough to interleave with
/// other clients' requests, large enough to batch well.
const BULK_TEXTS_PER_REQUEST: usize = 256;
/// Expected reply bytes a client keeps unread at most while pipelining: the
/// host stops reading a connection's requests past this much (PROTOCOL.md),
/// so a client that wrote more before reading could block on its own write.
const ROOM_BYTES: usize = vembed_protocol::UNREAD_REPLY_ROOM_BYTES;
/// Chunks the host embeds between two progress replies of an index job.
const INDEX_CHUNKS_PER_PROGRESS: usize = 256;

/// A connection to the vembed host.
pub struct Client {
    reader: BufReader<UnixStream>,
    writer: BufWriter<UnixStream>,
    socket: PathBuf,
    hello: HelloReply,
    next_id: u64,
    frames: FrameReader,
    timeouts: Timeouts,
    spawn: Option<SpawnOptions>,
    texts_per_request: usize,
    /// False while a request is unanswered or after the stream lost track of
    /// which reply is which; the next request then reconnects.
    in_sync: bool,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("socket", &self.socket)
            .field("host_pid", &self.hello.pid)
            .finish()
    }
}

impl Client {
    /// Connects to the host on the default socket, starting one if none runs.
    pub fn connect_or_spawn() -> Result<Client> {
        Client::connect_or_spawn_with(SpawnOptions::default())
    }

    /// Connects to the host on `opts.socket`, starting one if none runs.
    /// A parallel start by another process is waited for, not fought.
    pub fn connect_or_spawn_with(opts: SpawnOptions) -> Result<Client> {
        let deadline = Instant::now() + opts.timeout;
        let mut client = match Client::connect_with(&opts.socket, opts.timeouts) {
            Ok(c) => c,
            Err(Error::NotRunning { .. } | Error::Disconnected) => {
                match spawn::spawn_host(&opts)? {
                    StartupStatus::Ready { .. } | StartupStatus::AlreadyRunning => {}
                }
                spawn::wait_for_host(&opts, deadline, || {
                    Client::connect_with(&opts.socket, opts.timeouts)
                })?
            }
            Err(e) => return Err(e),
        };
        client.spawn = Some(opts);
        Ok(client)
    }

    /// Connects to a running host; never starts one.
    pub fn connect(socket: &Path) -> Result<Client> {
        Client::connect_with(socket, Timeouts::default())
    }

    /// Connects to a running host with these timeouts; never starts one.
    pub fn connect_with(socket: &Path, timeouts: Timeouts) -> Result<Client> {
        let stream = connect::open(socket, timeouts.connect)?;
        let reader = BufReader::with_capacity(64 << 10, stream.try_clone()?);
        let writer = BufWriter::new(stream);
        let placeholder = HelloReply {
            version: 0,
            host_version: String::new(),
            pid: 0,
            models: Vec::new(),
            limits: vembed_protocol::Limits {
                max_frame_bytes: 1 << 20,
                max_texts_per_request: 1,
                max_text_bytes: 1 << 20,
                max_batch_tokens: 1,
                max_queue_texts: 1,
            },
        };
        let mut client = Client {
            reader,
            writer,
            socket: socket.to_path_buf(),
            hello: placeholder,
            next_id: 1,
            frames: FrameReader::new(),
            timeouts,
            spawn: None,
            texts_per_request: BULK_TEXTS_PER_REQUEST,
            in_sync: true,
        };
        let client_name = format!("vembed-client/{}", env!("CARGO_PKG_VERSION"));
        let hello = Request::Hello(Hello { version: PROTOCOL_VERSION, client: client_name });
        let id = client.start(hello)?;
        let reply = match client.reply_within(id, timeouts.connect, false) {
            // A host that accepted but never answers the handshake is stopped or hung.
            Err(Error::Timeout { waited_ms, .. }) => {
                return Err(Error::Unresponsive {
                    socket: socket.to_path_buf(),
                    pid: None,
                    waited_ms,
                });
            }
            other => other?,
        };
        client.in_sync = true;
        match reply {
            Response::Hello(h) => client.hello = h,
            other => return Err(unexpected(&other)),
        }
        // Large requests may take a while to go out while the host is busy.
        client.writer.get_ref().set_write_timeout(Some(timeouts.request))?;
        Ok(client)
    }

    /// The timeouts this client waits by.
    pub fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    /// What the host said in the handshake: its version, models and limits.
    pub fn hello(&self) -> &HelloReply {
        &self.hello
    }

    /// Sets how many texts [`Client::embed_with`] puts in one request when it
    /// splits a large input (default 256; capped by the host's limit).
    pub fn set_texts_per_request(&mut self, n: usize) {
        self.texts_per_request = n.max(1);
    }

    /// The socket this client is connected to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Embeds texts with the unified model; one vector per text, in order.
    pub fn embed(&mut self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let e = self.embed_with(&ModelRef::Role(Role::Unified), texts)?;
        Ok(e.rows().map(<[f32]>::to_vec).collect())
    }

    /// Embeds any number of texts with one model. Large inputs are split into
    /// requests within the host's limits and pipelined on this connection.
    /// If the host died, one new host is started (when this client may spawn)
    /// and the texts are embedded again.
    pub fn embed_with(&mut self, model: &ModelRef, texts: &[&str]) -> Result<Embeddings> {
        self.retrying(|c| c.embed_pipelined(model, texts, false))
    }

    /// Like [`Client::embed_with`], for texts that recur across processes
    /// (tool descriptions): the host answers the texts it has embedded with
    /// this model before from its cache (memory, then disk) and embeds only
    /// the others.
    pub fn embed_cached(&mut self, model: &ModelRef, texts: &[&str]) -> Result<Embeddings> {
        self.retrying(|c| c.embed_pipelined(model, texts, true))
    }

    /// Builds or updates the code index of a repository in the host (the one
    /// writer), calling `progress` as the host reports it. Two clients that
    /// index the same repository at once share one job. If the host dies
    /// mid-job, one new host is started (when this client may spawn) and the
    /// job runs again: it resumes from what the old host committed.
    pub fn index(
        &mut self,
        req: IndexRequest,
        mut progress: impl FnMut(&IndexProgress),
    ) -> Result<IndexSummary> {
        self.retrying(|c| c.index_once(req.clone(), &mut progress))
    }

    fn index_once(
        &mut self,
        req: IndexRequest,
        progress: &mut impl FnMut(&IndexProgress),
    ) -> Result<IndexSummary> {
        let id = self.start(Request::Index(req))?;
        // Progress comes after each commit of the job.
        let budget = self.timeouts.for_texts(INDEX_CHUNKS_PER_PROGRESS);
        loop {
            match self.reply_within(id, budget, true)? {
                Response::IndexProgress(p) => progress(&p),
                Response::IndexDone(summary) => {
                    self.in_sync = true;
                    return Ok(summary);
                }
                other => return Err(unexpected(&other)),
            }
        }
    }

    /// Searches a repository's index through the host (for programs that do
    /// not open the index themselves; [`crate::search`] does, and is faster).
    pub fn search_via_host(&mut self, req: SearchRequest) -> Result<Vec<SearchHit>> {
        match self.call(Request::Search(req))? {
            Response::SearchResults(hits) => Ok(hits),
            other => Err(unexpected(&other)),
        }
    }

    /// Searches a repository's index through the host in a mode (semantic,
    /// lexical or hybrid): the ranking [`crate::search::Searcher`] computes
    /// in process, for programs that do not open the index themselves.
    pub fn search_ranked(&mut self, req: RankedSearchRequest) -> Result<Vec<RankedSearchHit>> {
        match self.call(Request::SearchRanked(req))? {
            Response::RankedResults(hits) => Ok(hits),
            other => Err(unexpected(&other)),
        }
    }

    /// Ranks a tool set in the host ([`crate::tools`] has the convenient
    /// form). Retried once on a new host if the host died.
    pub fn select_tools_request(&mut self, req: SelectToolsRequest) -> Result<ToolSelections> {
        let texts = req.queries.len() + req.tools.len();
        self.retrying(|c| {
            let id = c.start(Request::SelectTools(req.clone()))?;
            let response = c.reply_within(id, c.timeouts.for_texts(texts), true)?;
            c.in_sync = true;
            match response {
                Response::ToolSelections(s) => Ok(s),
                other => Err(unexpected(&other)),
            }
        })
    }

    /// Runs `f`; if the host died under it, starts a new host (when this
    /// client may spawn) and runs `f` once more.
    fn retrying<T>(&mut self, mut f: impl FnMut(&mut Client) -> Result<T>) -> Result<T> {
        match f(self) {
            Err(Error::Disconnected) if self.spawn.is_some() => {
                self.reconnect()?;
                f(self)
            }
            other => other,
        }
    }

    /// The host's status.
    pub fn status(&mut self) -> Result<HostStatus> {
        match self.call(Request::Status)? {
            Response::Status(s) => Ok(*s),
            other => Err(unexpected(&other)),
        }
    }

    /// The host's remote models: each service's URL (without secrets), its
    /// calls, errors and latency. Empty when every model is local.
    pub fn upstreams(&mut self) -> Result<Vec<vembed_protocol::UpstreamStatus>> {
        match self.call(Request::Upstreams)? {
            Response::Upstreams(u) => Ok(u),
            other => Err(unexpected(&other)),
        }
    }

    /// The code indexes the host has opened, most recently used first, with
    /// the processes that indexed or searched them through it.
    pub fn indexes(&mut self) -> Result<Vec<vembed_protocol::IndexStatus>> {
        match self.call(Request::Indexes)? {
            Response::Indexes(v) => Ok(v),
            other => Err(unexpected(&other)),
        }
    }

    /// Asks the host to stop once requests in flight are answered.
    pub fn shutdown(&mut self) -> Result<()> {
        match self.call(Request::Shutdown)? {
            Response::Ok => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    /// A round trip that touches no model.
    pub fn ping(&mut self) -> Result<()> {
        match self.call(Request::Ping)? {
            Response::Ok => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    fn reconnect(&mut self) -> Result<()> {
        let opts = self.spawn.clone().ok_or(Error::Disconnected)?;
        let per_request = self.texts_per_request;
        *self = Client::connect_or_spawn_with(opts)?;
        self.texts_per_request = per_request;
        Ok(())
    }

    fn send(&mut self, request: Request) -> Result<u64> {
        let id = self.next_id;
        self.next_id += 1;
        framing::write_frame(&mut self.writer, &RequestFrame { id, request })?;
        Ok(id)
    }

    fn flush(&mut self) -> Result<()> {
        self.writer.flush().map_err(|e| match e.kind() {
            io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => Error::Disconnected,
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Error::Timeout {
                socket: self.socket.clone(),
                pid: self.hello.pid,
                waited_ms: self.timeouts.request.as_millis() as u64,
            },
            _ => Error::Io(e),
        })
    }

    /// Reads the next frame, waiting at most `budget`. When `probe` is set
    /// and the host stays silent for the connect timeout, a second
    /// connection checks that it is alive: a stopped or hung host is then
    /// reported as [`Error::Unresponsive`] long before the budget is spent.
    fn receive_within(&mut self, budget: Duration, probe: bool) -> Result<ResponseFrame> {
        let started = Instant::now();
        let deadline = started + budget;
        let every = self.timeouts.connect;
        let mut next_probe = started + every;
        loop {
            let now = Instant::now();
            let until = if probe { deadline.min(next_probe) } else { deadline };
            let wait = until.saturating_duration_since(now).max(Duration::from_millis(1));
            self.reader.get_ref().set_read_timeout(Some(wait))?;
            // Replies (embeddings) can be larger than requests; trust the
            // host up to the absolute cap.
            let polled = self.frames.poll(&mut self.reader, ABSOLUTE_MAX_FRAME_BYTES);
            match polled {
                Ok(Poll::Frame) => return Ok(framing::decode(self.frames.payload())?),
                Ok(Poll::Pending) => {}
                Err(e) => {
                    self.in_sync = false;
                    return Err(e.into());
                }
            }
            let now = Instant::now();
            let waited_ms = started.elapsed().as_millis() as u64;
            if now >= deadline {
                // The reply may still come; this connection cannot pair it any more.
                self.in_sync = false;
                return Err(Error::Timeout {
                    socket: self.socket.clone(),
                    pid: self.hello.pid,
                    waited_ms,
                });
            }
            if probe && now >= next_probe {
                if !self.host_answers() {
                    self.in_sync = false;
                    let pid = Some(self.hello.pid).filter(|&p| p != 0);
                    return Err(Error::Unresponsive {
                        socket: self.socket.clone(),
                        pid,
                        waited_ms,
                    });
                }
                next_probe = Instant::now() + every;
            }
        }
    }

    /// Whether the host answers a handshake on a new connection within the
    /// connect timeout. A host that is gone counts as answering: this
    /// connection then sees the end of the stream by itself.
    fn host_answers(&self) -> bool {
        match Client::connect_with(&self.socket, self.timeouts) {
            Ok(_) => true,
            Err(Error::Unresponsive { .. } | Error::Timeout { .. }) => false,
            // Refused (too many clients, say) or gone: the process is not stopped.
            Err(_) => true,
        }
    }

    /// One request, one answer; host errors become [`Error::Host`].
    fn call(&mut self, request: Request) -> Result<Response> {
        let id = self.start(request)?;
        let response = self.reply_within(id, self.timeouts.request, true)?;
        self.in_sync = true;
        Ok(response)
    }

    /// Sends a request whose replies are read with [`Client::reply_within`].
    /// The connection is out of sync until the caller has read its last reply.
    fn start(&mut self, request: Request) -> Result<u64> {
        if !self.in_sync {
            return Err(Error::Disconnected);
        }
        self.in_sync = false;
        let sent = self.send(request).and_then(|id| self.flush().map(|()| id));
        match sent {
            Err(Error::Disconnected) => Err(self.reason_for_close()),
            other => other,
        }
    }

    /// The host closed its end before this client's request went out: it may
    /// have said why (too many connections, another user) before closing.
    fn reason_for_close(&mut self) -> Error {
        match self.receive_within(Duration::from_millis(500), false) {
            Ok(ResponseFrame { response: Response::Error(e), .. }) => host_error(e),
            _ => Error::Disconnected,
        }
    }

    /// Reads the next reply to request `id` within `budget`. A host error
    /// ends the request (the connection is in sync again) and becomes
    /// [`Error::Host`].
    fn reply_within(&mut self, id: u64, budget: Duration, probe: bool) -> Result<Response> {
        let frame = self.receive_within(budget, probe)?;
        if frame.id != id {
            // A reply to an unreadable frame carries id 0; anything else is a bug.
            // Either way this connection can no longer pair replies with requests.
            if let Response::Error(e) = frame.response {
                return Err(host_error(e));
            }
            return Err(Error::Protocol(format!("reply id {} for request {id}", frame.id)));
        }
        match frame.response {
            Response::Error(e) => {
                self.in_sync = true;
                Err(host_error(e))
            }
            other => Ok(other),
        }
    }

    fn embed_pipelined(
        &mut self,
        model: &ModelRef,
        texts: &[&str],
        cached: bool,
    ) -> Result<Embeddings> {
        let limits = self.hello.limits;
        let per_request =
            self.texts_per_request.clamp(1, (limits.max_texts_per_request as usize).max(1));
        // Keep each frame well inside the host's frame limit.
        let byte_budget = (limits.max_frame_bytes as usize / 2).max(1);
        let mut chunks: Vec<std::ops::Range<usize>> = Vec::new();
        let mut start = 0;
        let mut bytes = 0;
        for (i, t) in texts.iter().enumerate() {
            let len = t.len() + 8;
            if i > start && (i - start == per_request || bytes + len > byte_budget) {
                chunks.push(start..i);
                start = i;
                bytes = 0;
            }
            bytes += len;
        }
        if start < texts.len() || texts.is_empty() {
            chunks.push(start..texts.len());
        }

        // What each reply will weigh, so that no more than the host's room
        // for unread replies is in flight (see ROOM_BYTES).
        let dim = self.hello.models.iter().map(|m| m.dim as usize).max().unwrap_or(1024);
        let reply_bytes =
            |r: &std::ops::Range<usize>| vembed_protocol::embeddings_reply_bytes(r.len(), dim);
        let mut results: Vec<Option<Embeddings>> = vec![None; chunks.len()];
        if !self.in_sync {
            return Err(Error::Disconnected);
        }
        // Any early return below leaves replies unread: the connection is then
        // out of sync until every request sent has been answered.
        self.in_sync = false;
        let mut in_flight: HashMap<u64, usize> = HashMap::new();
        let mut unread = 0usize;
        let mut texts_in_flight = 0usize;
        let mut next_chunk = 0;
        let mut first_error: Option<Error> = None;
        while next_chunk < chunks.len() || !in_flight.is_empty() {
            while first_error.is_none()
                && next_chunk < chunks.len()
                && in_flight.len() < PIPELINE_DEPTH
                && (in_flight.is_empty() || unread + reply_bytes(&chunks[next_chunk]) <= ROOM_BYTES)
            {
                let range = chunks[next_chunk].clone();
                let req = EmbedRequest {
                    model: model.clone(),
                    texts: texts[range].iter().map(|s| s.to_string()).collect(),
                };
                let request = if cached { Request::EmbedCached(req) } else { Request::Embed(req) };
                let id = self.send(request)?;
                in_flight.insert(id, next_chunk);
                unread += reply_bytes(&chunks[next_chunk]);
                texts_in_flight += chunks[next_chunk].len();
                next_chunk += 1;
            }
            self.flush()?;
            if in_flight.is_empty() {
                break;
            }
            let frame = self.receive_within(self.timeouts.for_texts(texts_in_flight), true)?;
            let Some(chunk) = in_flight.remove(&frame.id) else {
                if let Response::Error(e) = frame.response {
                    return Err(host_error(e));
                }
                return Err(Error::Protocol(format!("reply for unknown request {}", frame.id)));
            };
            unread -= reply_bytes(&chunks[chunk]);
            texts_in_flight -= chunks[chunk].len();
            match frame.response {
                Response::Embeddings(e) if e.len() == chunks[chunk].len() => {
                    results[chunk] = Some(e)
                }
                Response::Embeddings(e) => {
                    return Err(Error::Protocol(format!(
                        "{} embeddings for {} texts",
                        e.len(),
                        chunks[chunk].len()
                    )));
                }
                Response::Error(e) => {
                    // Drain what is in flight so the connection stays in sync.
                    first_error.get_or_insert(host_error(e));
                }
                other => return Err(unexpected(&other)),
            }
        }
        self.in_sync = true;
        if let Some(e) = first_error {
            return Err(e);
        }
        let mut parts = results.into_iter().flatten();
        let mut all = parts.next().ok_or_else(|| Error::Protocol("no reply".into()))?;
        for p in parts {
            if p.dim != all.dim {
                return Err(Error::Protocol("dimension changed between replies".into()));
            }
            all.tokens.extend(p.tokens);
            all.data.extend(p.data);
            all.host_us += p.host_us;
        }
        Ok(all)
    }
}

fn host_error(e: vembed_protocol::ErrorReply) -> Error {
    match e.code {
        ErrorCode::VersionMismatch => Error::VersionMismatch { message: e.message },
        code => Error::Host { code, message: e.message },
    }
}

fn unexpected(r: &Response) -> Error {
    let name = match r {
        Response::Error(_) => "Error",
        Response::Hello(_) => "Hello",
        Response::Embeddings(_) => "Embeddings",
        Response::Status(_) => "Status",
        Response::Ok => "Ok",
        Response::IndexProgress(_) => "IndexProgress",
        Response::IndexDone(_) => "IndexDone",
        Response::SearchResults(_) => "SearchResults",
        Response::ToolSelections(_) => "ToolSelections",
        Response::RankedResults(_) => "RankedResults",
        Response::Upstreams(_) => "Upstreams",
        Response::Indexes(_) => "Indexes",
    };
    Error::Protocol(format!("unexpected {name} reply"))
}
