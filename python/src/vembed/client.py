"""``vembed.Client``: the synchronous client, thread- and fork-safe."""

import os
import threading
import time
import weakref

from . import _results, _wire
from ._spawn import Target
from .errors import (
    Disconnected,
    HandshakeRequired,
    PermissionDenied,
    ProtocolError,
    Timeout,
    Unresponsive,
    VersionMismatch,
)

_CLIENTS = weakref.WeakSet()


def _after_fork_in_child():
    # A child must not share its parent's sockets (replies would go to
    # whichever process reads first) or inherit a lock held by a parent's
    # thread: every client starts afresh and reconnects on first use.
    for c in list(_CLIENTS):
        c._reset_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)

# Errors after which a connection cannot be trusted to be in sync.
_BROKEN = (Disconnected, Timeout, Unresponsive, ProtocolError, OSError)
# Host errors that close the connection.
_CLOSING = (VersionMismatch, PermissionDenied, HandshakeRequired)


class Client:
    """A client of the vembed host.

    It connects to the host on ``socket`` (default: ``$VEMBED_SOCKET``, else
    the per-user runtime directory) after checking that the socket and its
    listener are this user's own, and starts ``vembed-host`` when none runs
    (``spawn=False`` to fail with ``HostUnavailable`` instead). If the host
    dies between calls or in the middle of one, the call starts a new host
    and is retried once.

    Thread-safe: threads share a small pool of connections, so calls from
    several threads run concurrently and the host batches them. Fork-safe: a
    child process opens its own connections.

    ``numpy``: ``None`` (default) returns numpy arrays when numpy is
    installed, ``False`` never, ``True`` requires it.
    """

    def __init__(
        self,
        socket=None,
        *,
        spawn=True,
        host_bin=None,
        host_args=(),
        timeouts=None,
        numpy=None,
        start_timeout=60.0,
        max_idle_connections=8,
    ):
        self._target = Target(socket, spawn, host_bin, host_args, timeouts, start_timeout)
        self.socket = self._target.socket
        self.timeouts = self._target.timeouts
        self._numpy = _results.LazyNumpy(numpy)
        self._max_idle = max_idle_connections
        self._lock = threading.Lock()
        self._idle = []
        self._pid = os.getpid()
        self._hello = None
        _CLIENTS.add(self)
        # Connect now, so a missing host or binary is reported here.
        self._release(self._acquire())

    # -- connections --

    def _reset_after_fork(self):
        self._lock = threading.Lock()
        for c in self._idle:
            c.close()
        self._idle = []
        self._pid = os.getpid()

    def _acquire(self):
        if self._pid != os.getpid():
            self._reset_after_fork()
        with self._lock:
            if self._idle:
                return self._idle.pop()
        conn = self._target.connect()
        self._hello = conn.hello
        return conn

    def _release(self, conn):
        if conn.pid != os.getpid():
            return
        with self._lock:
            if len(self._idle) < self._max_idle:
                self._idle.append(conn)
                return
        conn.close()

    def _drop_idle(self):
        with self._lock:
            idle, self._idle = self._idle, []
        for c in idle:
            c.close()

    def _run(self, fn, retry=True):
        """Runs ``fn(conn)`` on a pooled connection; a dead host is replaced
        and ``fn`` retried once."""
        for attempt in (0, 1):
            conn = self._acquire()
            try:
                result = fn(conn)
            except _CLOSING:
                conn.close()
                raise
            except Disconnected:
                conn.close()
                # The host died: its other connections are dead too.
                self._drop_idle()
                if attempt == 0 and retry and self._target.spawn:
                    continue
                raise
            except _BROKEN:
                conn.close()
                raise
            except BaseException:
                # A host error: the connection read its reply and is in sync.
                self._release(conn)
                raise
            self._release(conn)
            return result

    def close(self):
        """Closes the pooled connections (the host keeps running)."""
        self._drop_idle()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def hello(self):
        """The host's handshake: ``version``, ``host_version``, ``pid``,
        ``models`` and ``limits``."""
        return self._hello

    # -- embeddings --

    def embed(self, texts, role=None, model=None):
        """Embeds texts (a list, or one str) with the unified model, a role's
        model (``"tools"``, ``"code"``) or a named one; any number of texts,
        split into requests within the host's limits and pipelined.
        Returns ``Embeddings``."""
        return self._embed(texts, role, model, "Embed")

    def embed_cached(self, texts, role=None, model=None):
        """Like ``embed``, for texts that recur across processes (tool
        descriptions): the host answers those it has embedded before from its
        cache and embeds only the rest."""
        return self._embed(texts, role, model, "EmbedCached")

    def _embed(self, texts, role, model, kind, per_request=_results.TEXTS_PER_REQUEST):
        texts = _results.texts_list(texts)
        ref = _results.model_ref(role, model)
        parts = self._run(lambda c: _pipelined(c, kind, ref, texts, per_request))
        if not parts:
            # No texts: ask for none, to learn the model's name and dimension.
            parts = self._run(lambda c: [c.call({kind: {"model": ref, "texts": []}})["Embeddings"]])
        return _results.assemble(parts, self._numpy.get())

    # -- tools --

    def select_tools(
        self,
        tools,
        query,
        k=5,
        threshold=0.15,
        method="hybrid",
        fallback="all",
        role=None,
        model=None,
    ):
        """Ranks a tool set against a request, in the host, exactly as
        ``vembed tools select`` does: a list of ``ToolPick(name, score)``,
        best first. ``query`` may be a list of requests: then one list per
        request. ``tools`` is a JSON tool-set path or a list of tools (see
        ``vembed.tools``). The host keeps the set's vectors for later calls."""
        single = isinstance(query, str)
        queries = [query] if single else _results.texts_list(query)
        specs = _results.tool_specs(tools)
        req = _results.select_request(specs, queries, k, threshold, method, fallback, role, model)
        n = len(queries) + len(specs)
        reply = self._run(lambda c: c.call(req, texts=n))
        sel = _results.picks(_expect(reply, "ToolSelections")["selections"])
        return sel[0] if single else sel

    # -- code search --

    def index(self, repo, progress=None, index_dir=None, rebuild=False):
        """Builds or updates ``repo``'s code index in the host, calling
        ``progress(dict)`` as it reports; returns the summary dict. A host
        that dies mid-job is replaced and the job resumes from its last
        commit."""
        req = _results.index_request(repo, index_dir, rebuild)

        def job(c):
            rid = c.send(req)
            while True:
                deadline = time.monotonic() + c.timeouts.for_texts(256)
                response = c.reply(rid, deadline)
                if "IndexProgress" in response:
                    if progress is not None:
                        progress(response["IndexProgress"])
                    continue
                return _expect(response, "IndexDone")

        return self._run(job)

    def search(self, repo, query, k=10, index_dir=None, mode="hybrid"):
        """Searches ``repo``'s code index through the host, ranked as
        ``vembed search`` ranks: ``mode`` is ``"hybrid"`` (meaning and
        words fused, the default), ``"semantic"`` or ``"lexical"`` (BM25
        over code tokens). Returns hit dicts, best first: ``path``,
        ``start_line``, ``end_line``, ``symbol``, ``score`` (the mode's),
        ``text``, and ``semantic_rank``/``semantic_score`` and
        ``lexical_rank``/``lexical_score`` (``None`` where that ranking did
        not find the snippet)."""
        req = _results.search_request(repo, query, k, index_dir, mode)
        return self._run(lambda c: _results.ranked_hits(_expect(c.call(req), "RankedResults")))

    # -- host --

    def status(self):
        """The host's status (what ``vembed status --json`` prints)."""
        return self._run(lambda c: _expect(c.call("Status"), "Status"))

    def upstreams(self):
        """The host's remote models: each service's URL (without secrets), its
        calls, errors and latency (what ``vembed status`` shows); empty when
        every model is local."""
        return self._run(lambda c: _expect(c.call("Upstreams"), "Upstreams"))

    def indexes(self):
        """The code indexes the host has opened, most recently used first:
        dicts with ``root``, ``index_dir``, ``model``, ``files``,
        ``snippets``, ``disk_bytes``, ``updated_unix``, ``jobs``,
        ``files_embedded``, ``searches``, ``last_used_unix`` and
        ``clients`` (the pids that indexed or searched it through the
        host, most recent first; 0 for HTTP), as ``vembed status --json``
        prints under ``indexes``."""
        return self._run(lambda c: _expect(c.call("Indexes"), "Indexes"))

    def ping(self):
        """A round trip that touches no model."""
        self._run(lambda c: _expect(c.call("Ping"), "Ok"))

    def shutdown(self):
        """Asks the host to stop once requests in flight are answered."""
        self._run(lambda c: _expect(c.call("Shutdown"), "Ok"), retry=False)
        self._drop_idle()


def _expect(response, name):
    if name == "Ok":
        if response == "Ok":
            return None
    elif isinstance(response, dict) and name in response:
        return response[name]
    shown = response if isinstance(response, str) else next(iter(response))
    raise ProtocolError("expected a %s reply, got %s" % (name, shown))


def _pipelined(conn, kind, ref, texts, per_request):
    """Sends ``texts`` in requests of ``per_request``, up to PIPELINE_DEPTH in
    flight within the host's unread-reply room (as the Rust client does), and
    returns the replies in input order."""
    limits = conn.hello["limits"]
    per = max(1, min(per_request, limits["max_texts_per_request"]))
    dims = [m["dim"] for m in conn.hello["models"]] or [384]
    expect = lambda n: _wire.embeddings_reply_bytes(n, max(dims))  # noqa: E731
    chunks = [texts[i : i + per] for i in range(0, len(texts), per)]
    results = [None] * len(chunks)
    pending = {}
    in_flight_bytes = 0
    next_chunk = 0
    first_error = None
    while next_chunk < len(chunks) or pending:
        # Send while the replies expected fit the room (one is always sent).
        while next_chunk < len(chunks) and first_error is None:
            size = expect(len(chunks[next_chunk]))
            if pending and (
                len(pending) >= _results.PIPELINE_DEPTH
                or in_flight_bytes + size > _wire.UNREAD_REPLY_ROOM_BYTES
            ):
                break
            rid = conn.send({kind: {"model": ref, "texts": chunks[next_chunk]}})
            pending[rid] = (next_chunk, size)
            in_flight_bytes += size
            next_chunk += 1
        if not pending:
            break
        in_flight_texts = sum(len(chunks[i]) for i, _ in pending.values())
        deadline = time.monotonic() + conn.timeouts.for_texts(in_flight_texts)
        rid, response = conn.receive(deadline)
        if rid not in pending:
            if isinstance(response, dict) and "Error" in response and rid == 0:
                from .errors import host_error

                raise host_error(response["Error"])
            raise ProtocolError("a reply to request %d, which is not in flight" % rid)
        i, size = pending.pop(rid)
        in_flight_bytes -= size
        if isinstance(response, dict) and "Error" in response:
            if first_error is None:
                from .errors import host_error

                first_error = host_error(response["Error"])
            continue
        results[i] = _expect(response, "Embeddings")
    if first_error is not None:
        raise first_error
    return results


__all__ = ["Client"]
