"""``vembed.AsyncClient``: the asyncio client.

One connection per client carries every concurrent call: requests are
pipelined and one reader task hands each reply to the call that waits for
it, so 100 concurrent ``await client.embed(...)`` become 100 requests the
host batches together. Connecting (the socket checks, the handshake and
starting a host if none runs) happens in a worker thread, never blocking
the event loop.
"""

import asyncio
import os
import struct
import time

from . import _results, _wire
from ._connection import Connection, NotRunning
from ._spawn import Target
from .errors import Disconnected, ProtocolError, Timeout, Unresponsive, host_error


class _Link:
    """One connection: the streams, the reader task and the calls waiting."""

    def __init__(self, reader, writer, hello, timeouts, path):
        self.path = path
        self.reader = reader
        self.writer = writer
        self.hello = hello
        self.timeouts = timeouts
        self.next_id = 1
        self.waiting = {}  # id -> asyncio.Queue of responses
        self.dead = None
        self.loop = asyncio.get_running_loop()
        self.task = asyncio.ensure_future(self._read())

    async def _read(self):
        try:
            while True:
                head = await self.reader.readexactly(4)
                (n,) = struct.unpack("<I", head)
                if n > _wire.MAX_FRAME_BYTES:
                    raise ProtocolError("a %d-byte reply frame" % n)
                payload = await self.reader.readexactly(n)
                try:
                    frame = _wire.decode(_wire.RESPONSE_FRAME, payload)
                except _wire.DecodeError as e:
                    raise ProtocolError("cannot read the host's reply: %s" % e) from None
                rid, response = frame["id"], frame["response"]
                if rid == 0 and isinstance(response, dict) and "Error" in response:
                    raise host_error(response["Error"])
                q = self.waiting.get(rid)
                if q is not None:
                    q.put_nowait(response)
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            self._fail(Disconnected("the vembed host closed the connection"))
        except Exception as e:  # a protocol or host error ends the link
            self._fail(e)

    def _fail(self, error):
        self.dead = error
        for q in self.waiting.values():
            q.put_nowait(error)
        try:
            self.writer.close()
        except Exception:
            pass

    def send(self, request):
        if self.dead is not None:
            raise Disconnected("the vembed host closed the connection")
        rid = self.next_id
        self.next_id += 1
        self.waiting[rid] = asyncio.Queue()
        self.writer.write(_wire.encode_request(rid, request))
        return rid

    async def _probe(self):
        """The host stayed silent for the connect timeout: is it alive? A
        handshake on a second connection, in a worker thread."""
        loop = asyncio.get_running_loop()
        try:
            conn = await loop.run_in_executor(None, Connection, self.path, self.timeouts)
            conn.close()
        except (Unresponsive, NotRunning) as e:
            raise Unresponsive(
                "the vembed host (pid %d) stopped answering: %s" % (self.hello["pid"], e)
            ) from None

    async def reply(self, rid, timeout):
        """The next reply to ``rid``; an error reply raises. Every connect
        timeout of silence, a second connection checks that the host is
        alive, so a stopped or hung host is reported long before ``timeout``."""
        q = self.waiting[rid]
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.waiting.pop(rid, None)
                raise Timeout("the vembed host did not answer within %.0f s" % timeout)
            try:
                response = await asyncio.wait_for(q.get(), min(left, self.timeouts.connect))
                break
            except asyncio.TimeoutError:
                try:
                    await self._probe()
                except Unresponsive:
                    self.waiting.pop(rid, None)
                    raise
        if isinstance(response, BaseException):
            self.waiting.pop(rid, None)
            raise response
        if isinstance(response, dict) and "Error" in response:
            self.waiting.pop(rid, None)
            raise host_error(response["Error"])
        return response

    def done(self, rid):
        self.waiting.pop(rid, None)

    def close(self):
        self.task.cancel()
        try:
            self.writer.close()
        except Exception:
            pass


class AsyncClient:
    """The asyncio twin of ``vembed.Client``: the same methods as coroutines,
    the same socket rules, spawn, typed errors and retry on a dead host.
    Create it anywhere; it connects on first use."""

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
    ):
        self._target = Target(socket, spawn, host_bin, host_args, timeouts, start_timeout)
        self.socket = self._target.socket
        self.timeouts = self._target.timeouts
        self._numpy = _results.LazyNumpy(numpy)
        self._link = None
        self._pid = os.getpid()
        self._connecting = None

    async def _get_link(self):
        if self._pid != os.getpid():  # a forked child: never the parent's socket
            self._link, self._connecting, self._pid = None, None, os.getpid()
        link = self._link
        if link is not None and link.loop is not asyncio.get_running_loop():
            # Made on another event loop (an earlier asyncio.run): its reader
            # is gone with that loop. Drop its socket and connect anew.
            try:
                link.writer.transport.abort()
            except Exception:
                pass
            self._link = link = None
            self._connecting = None
        if link is not None and link.dead is None:
            return link
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._connect())
        try:
            return await asyncio.shield(self._connecting)
        finally:
            if self._connecting is not None and self._connecting.done():
                self._connecting = None

    async def _connect(self):
        loop = asyncio.get_running_loop()
        conn = await loop.run_in_executor(None, self._target.connect)
        sock = conn.sock
        sock.setblocking(False)
        reader, writer = await asyncio.open_unix_connection(sock=sock, limit=1 << 20)
        self._link = _Link(reader, writer, conn.hello, self.timeouts, self.socket)
        return self._link

    async def _run(self, fn, retry=True):
        for attempt in (0, 1):
            link = await self._get_link()
            try:
                return await fn(link)
            except Disconnected:
                if link is self._link:
                    self._link = None
                if attempt == 0 and retry and self._target.spawn:
                    continue
                raise

    async def _call(self, link, request, texts=0):
        rid = link.send(request)
        try:
            await link.writer.drain()
            return await link.reply(rid, link.timeouts.for_texts(texts))
        finally:
            link.done(rid)

    @property
    def hello(self):
        return None if self._link is None else self._link.hello

    async def close(self):
        """Closes the connection (the host keeps running)."""
        link, self._link = self._link, None
        if link is not None:
            link.close()
            if link.loop is asyncio.get_running_loop():
                try:
                    await link.task
                except (asyncio.CancelledError, Exception):
                    pass

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()

    async def embed(self, texts, role=None, model=None):
        """Embeds texts; see ``Client.embed``."""
        return await self._embed(texts, role, model, "Embed")

    async def embed_cached(self, texts, role=None, model=None):
        """Embeds recurring texts through the host's cache; see ``Client.embed_cached``."""
        return await self._embed(texts, role, model, "EmbedCached")

    async def _embed(self, texts, role, model, kind):
        texts = _results.texts_list(texts)
        ref = _results.model_ref(role, model)

        async def run(link):
            per = max(1, min(_results.TEXTS_PER_REQUEST, link.hello["limits"]["max_texts_per_request"]))
            chunks = [texts[i : i + per] for i in range(0, len(texts), per)] or [[]]
            depth = asyncio.Semaphore(_results.PIPELINE_DEPTH)

            async def part(c):
                async with depth:
                    return await self._call(link, {kind: {"model": ref, "texts": c}}, len(c))

            replies = await asyncio.gather(*[part(c) for c in chunks])
            return [r["Embeddings"] for r in replies]

        return _results.assemble(await self._run(run), self._numpy.get())

    async def select_tools(
        self, tools, query, k=5, threshold=0.15, method="hybrid", fallback="all", role=None, model=None
    ):
        """Ranks a tool set in the host; see ``Client.select_tools``."""
        single = isinstance(query, str)
        queries = [query] if single else _results.texts_list(query)
        specs = _results.tool_specs(tools)
        req = _results.select_request(specs, queries, k, threshold, method, fallback, role, model)
        reply = await self._run(lambda link: self._call(link, req, len(queries) + len(specs)))
        sel = _results.picks(reply["ToolSelections"]["selections"])
        return sel[0] if single else sel

    async def index(self, repo, progress=None, index_dir=None, rebuild=False):
        """Builds or updates a code index; see ``Client.index``."""
        req = _results.index_request(repo, index_dir, rebuild)

        async def job(link):
            rid = link.send(req)
            try:
                await link.writer.drain()
                while True:
                    response = await link.reply(rid, link.timeouts.for_texts(256))
                    if "IndexProgress" in response:
                        if progress is not None:
                            progress(response["IndexProgress"])
                        continue
                    return response["IndexDone"]
            finally:
                link.done(rid)

        return await self._run(job)

    async def search(self, repo, query, k=10, index_dir=None, mode="hybrid"):
        """Searches a code index through the host; see ``Client.search``."""
        req = _results.search_request(repo, query, k, index_dir, mode)
        reply = await self._run(lambda link: self._call(link, req))
        return _results.ranked_hits(reply["RankedResults"])

    async def status(self):
        """The host's status."""
        return (await self._run(lambda link: self._call(link, "Status")))["Status"]

    async def ping(self):
        """A round trip that touches no model."""
        await self._run(lambda link: self._call(link, "Ping"))


