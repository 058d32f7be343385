"""A Victor vector store backed by the vembed host's code index.

``victor index``, ``victor chat --preindex`` and every semantic search of
victor-coding's ``CodebaseIndex`` go through Victor's ``EmbeddingRegistry``
to the store that ``search.codebase_vector_store`` (or
``VICTOR_CODEBASE_VECTOR_STORE``) names. This package registers the store
``vembed`` there from a ``victor.capabilities`` entry point (a group Victor
loads on every path, ``victor index`` included)::

    export VICTOR_CODEBASE_VECTOR_STORE=vembed   # what `vembed setup victor` sets

(Victor 0.17.0's ``load_settings()``, which its agent and ``victor index``
use, reads ``VICTOR_*`` variables and a ``.env``, not ``~/.victor/settings.yaml``.)

The store does not keep Victor's per-symbol rows. The host keeps one index
per repository (chunks of the code itself, bodies included, with BM25 over
their words), which every process of the user shares and the host alone
writes. So:

- ``index_documents`` / ``index_document`` / ``delete_*`` bring the host's
  index of the repository up to date (incremental; a process that finds it
  current embeds nothing), once per indexing round, and leave a marker in
  Victor's persist directory so later processes reuse it instead of
  rebuilding;
- ``clear_index`` clears nothing shared: the next round re-checks the files;
- ``search_similar`` searches the host's index (semantic) and answers
  ``EmbeddingSearchResult``s;
- ``embed_text`` / ``embed_batch`` embed with the host's code model.

No vector is ever made up: any failure raises with vembed's reason.
"""

import asyncio
import importlib
import json
import logging
import os
import sys
import threading
import time

from victor.storage.vector_stores.base import BaseEmbeddingProvider, EmbeddingSearchResult

from .victor import enabled
from .victor_search import in_scope, shared_client

log = logging.getLogger("vembed.victor")

#: Victor's persist directory holds this file once the host's index is current.
MARKER = "vembed-index.json"
#: Searches within this long of a sync reuse it (Victor's semantic_search
#: asks several expansions of one query in a row).
FRESH_SECONDS = 2.0


def register(registry=None):
    """The ``victor.capabilities`` hook: registers the store as ``vembed``.
    ``registry`` (Victor's CapabilityRegistry) is not needed."""
    from victor.storage.vector_stores.registry import EmbeddingRegistry

    EmbeddingRegistry.register("vembed", VembedVectorStore)
    if enabled() and selected():
        load_bridge_without_lancedb()
    return True


def selected():
    """Whether Victor's settings name this store for code search
    (``VICTOR_CODEBASE_VECTOR_STORE``, else ``search.codebase_vector_store``)."""
    name = os.environ.get("VICTOR_CODEBASE_VECTOR_STORE")
    if name is None:
        try:
            from victor.config.settings import load_settings

            settings = load_settings()
            search = getattr(settings, "search", None)
            name = getattr(search, "codebase_vector_store", None) or getattr(
                settings, "codebase_vector_store", None
            )
        except Exception as e:
            log.debug("vembed: cannot read Victor's settings: %s", e)
    return str(name or "").strip().lower() == "vembed"


BRIDGE = "victor.framework.search.codebase_embedding_bridge"


def load_bridge_without_lancedb():
    """Imports Victor's structural-bridge module with ``lancedb`` held out.

    Importing that module (which every ``victor index`` and code-search path
    does) registers its bridge into victor-coding's embedding registry, and
    importing that registry registers victor-coding's LanceDB provider,
    which imports lancedb (about 80 MB) whatever store is configured. With
    this store selected, the LanceDB provider is never used: for this one
    import, ``sys.modules["lancedb"] = None`` makes ``import lancedb`` fail
    as if it were not installed, which victor-coding's registry takes
    quietly. Anything that imports lancedb later (Victor's conversation
    store, say) gets it as usual."""
    if "lancedb" in sys.modules or BRIDGE in sys.modules:
        return
    sys.modules["lancedb"] = None
    try:
        importlib.import_module(BRIDGE)
    except Exception as e:
        log.debug("vembed: importing %s failed: %s", BRIDGE, e)
    finally:
        if "lancedb" in sys.modules and sys.modules["lancedb"] is None:
            del sys.modules["lancedb"]


class VembedVectorStore(BaseEmbeddingProvider):
    """Victor's ``BaseEmbeddingProvider`` on the vembed host: see the module."""

    def __init__(self, config, embedding_model=None):
        super().__init__(config, embedding_model)
        self.root = None
        self._client = None
        self._lock = threading.Lock()
        self._synced_at = 0.0
        self._round_synced = False
        self._summary = {}

    # -- set-up --

    def _root_of_config(self):
        extra = self.config.extra_config or {}
        root = extra.get("workspace_root") or extra.get("root")
        if not root and self.config.persist_directory:
            # Victor's default: {root}/.victor/embeddings
            persist = os.path.realpath(os.path.expanduser(self.config.persist_directory))
            parent = os.path.dirname(persist)
            if os.path.basename(persist) == "embeddings" and os.path.basename(parent) == ".victor":
                root = os.path.dirname(parent)
        if not root:
            raise ValueError(
                "vembed vector store: the config names no repository (extra_config workspace_root, "
                "or a persist_directory of ROOT/.victor/embeddings)"
            )
        return os.path.realpath(os.path.expanduser(root))

    async def initialize(self):
        if self._initialized:
            return
        self.root = self._root_of_config()
        self._client = shared_client()
        self._initialized = True

    async def _ready(self):
        if not self._initialized:
            await self.initialize()

    # -- the host's index --

    def _sync_blocking(self, force=False):
        with self._lock:
            if not force and time.monotonic() - self._synced_at < FRESH_SECONDS:
                return self._summary
            self._summary = self._client.index(self.root)
            self._synced_at = time.monotonic()
            self._write_marker()
            return self._summary

    def _write_marker(self):
        persist = self.config.persist_directory
        if not persist:
            return
        persist = os.path.expanduser(persist)
        os.makedirs(persist, exist_ok=True)
        marker = {
            "store": "vembed",
            "root": self.root,
            "index_dir": self._summary.get("index_dir"),
            "synced_unix": int(time.time()),
        }
        tmp = os.path.join(persist, MARKER + ".tmp")
        with open(tmp, "w") as f:
            json.dump(marker, f)
        os.replace(tmp, os.path.join(persist, MARKER))

    async def _sync(self, force=False):
        await self._ready()
        return await asyncio.to_thread(self._sync_blocking, force)

    async def _sync_round(self):
        """One sync per indexing round (Victor sends its rows in batches)."""
        if not self._round_synced:
            await self._sync(force=True)
            self._round_synced = True

    # -- BaseEmbeddingProvider --

    async def embed_text(self, text):
        return (await self.embed_batch([text]))[0]

    async def embed_batch(self, texts):
        await self._ready()
        texts = list(texts)
        if not texts:
            return []
        out = await asyncio.to_thread(self._client.embed, texts, "code")
        return [[float(x) for x in row] for row in out.vectors]

    async def index_document(self, doc_id, content, metadata):
        await self._sync(force=True)

    async def index_documents(self, documents):
        await self._sync_round()

    async def search_similar(self, query, limit=10, filter_metadata=None):
        await self._sync()
        scope = ""
        if filter_metadata and filter_metadata.get("file_path"):
            scope = str(filter_metadata["file_path"]).strip("/")
        fetch = limit if not scope else max(limit * 10, 100)
        hits = await asyncio.to_thread(self._client.search, self.root, query, fetch, None, "semantic")
        results = []
        for h in hits:
            if not in_scope(h["path"], scope):
                continue
            results.append(
                EmbeddingSearchResult(
                    file_path=h["path"],
                    symbol_name=h["symbol"],
                    content=h["text"],
                    score=float(h["score"]),
                    line_number=h["start_line"],
                    metadata={"end_line": h["end_line"], "backend": "vembed"},
                )
            )
            if len(results) == limit:
                break
        return results

    async def delete_document(self, doc_id):
        await self._sync(force=True)

    async def delete_by_file(self, file_path):
        summary = await self._sync(force=True)
        return int(summary.get("chunks_removed", 0))

    async def clear_index(self):
        # Victor clears before a full rebuild. The host's index is shared by
        # every process and kept in step with the files themselves, so a
        # "rebuild" is bringing it up to date (Victor may then send no rows
        # at all: it drops the symbols of functions with parameters).
        self._round_synced = False
        await self._sync_round()

    async def get_stats(self):
        await self._ready()
        s = self._summary
        return {
            "vector_store": "vembed",
            "root": self.root,
            "index_dir": s.get("index_dir"),
            "files_seen": s.get("files_seen", 0),
            "files_indexed_last_sync": s.get("indexed", 0),
            "model_name": self.config.embedding_model_name,
        }

    async def close(self):
        # The client is the process's, shared with code_search.
        self._initialized = bool(self._client)
