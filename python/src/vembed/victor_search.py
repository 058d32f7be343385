"""Victor's ``code search`` on the vembed host.

Victor's bootstrap tool ``code`` answers ``code search "QUERY" [PATH]
[--mode semantic|literal|hybrid|graph] [--k N]`` by calling the callable
named ``code_search`` in the entry-point group ``victor.tool_callables``
(this package registers :func:`code_search` there), else victor-coding's
own function. With ``VEMBED_VICTOR=1`` this one:

1. finds the repository of ``PATH`` (the nearest folder above it with a
   ``.git``, else ``PATH`` itself),
2. brings vembed's index of it up to date through the host (incremental:
   unchanged files are not read again; the host is the one writer, so
   several Victor processes share one index and one build),
3. searches it (Victor's ``semantic`` → semantic, ``hybrid`` → hybrid, no
   mode → hybrid), keeping the hits under ``PATH``, and
4. answers in Victor's shape: ``{"success": True, "results": [{"path",
   "line", "end_line", "symbol", "score", "content", ...}]}``.

``graph`` mode, and every call while the plug-in is off, go to
victor-coding's function unchanged. A failure (no host, no code model, an
index error) is ``{"success": False, "error": "vembed: ..."}``, which Victor
shows beside its literal fallback: never an empty success.
"""

import asyncio
import os
import threading

from .victor import enabled

#: Victor's modes → vembed's.
MODES = {None: "hybrid", "": "hybrid", "semantic": "semantic", "hybrid": "hybrid"}

#: Hits fetched per hit kept when the search is scoped to a sub-path.
SCOPE_OVERFETCH = 10
#: The most hits one search asks the host for.
MAX_FETCH = 1000

_client = None
_client_lock = threading.Lock()


def shared_client():
    """The process's one :class:`vembed.Client` (thread-safe, fork-safe),
    created on first use: it connects to the host, or starts one."""
    global _client
    with _client_lock:
        if _client is None:
            from .client import Client

            _client = Client()
        return _client


def repository_of(path):
    """``(root, scope)``: the repository that holds ``path`` (the nearest
    folder at or above it with a ``.git``, else ``path`` itself, or its
    folder for a file) and ``path`` relative to it (``""`` for all of it)."""
    target = os.path.realpath(os.path.expanduser(path or "."))
    if not os.path.exists(target):
        raise FileNotFoundError("no such file or directory: %s" % path)
    start = target if os.path.isdir(target) else os.path.dirname(target)
    here = start
    while True:
        if os.path.exists(os.path.join(here, ".git")):
            root = here
            break
        parent = os.path.dirname(here)
        if parent == here:
            root = start
            break
        here = parent
    scope = os.path.relpath(target, root)
    return root, ("" if scope == "." else scope.replace(os.sep, "/"))


def in_scope(rel_path, scope):
    """Whether ``rel_path`` (``/``-separated, relative to the root) is
    ``scope`` or under it."""
    return not scope or rel_path == scope or rel_path.startswith(scope.rstrip("/") + "/")


def search_sync(query, path=".", mode=None, k=10, client=None):
    """The search behind :func:`code_search`, blocking: returns Victor's
    result dict; raises on any failure."""
    vmode = MODES.get(mode)
    if vmode is None:
        raise ValueError("mode %r is not one of semantic, hybrid (graph goes to victor-coding)" % mode)
    k = int(k)
    if k < 1:
        raise ValueError("k must be at least 1, got %d" % k)
    root, scope = repository_of(path)
    client = client or shared_client()
    summary = client.index(root)
    fetch = k if not scope else min(MAX_FETCH, max(k * SCOPE_OVERFETCH, 100))
    hits = [h for h in client.search(root, query, k=fetch, mode=vmode) if in_scope(h["path"], scope)]
    results = [
        {
            "path": h["path"],
            "line": h["start_line"],
            "end_line": h["end_line"],
            "symbol": h["symbol"],
            "score": round(float(h["score"]), 4),
            "content": h["text"],
            "semantic_score": h["semantic_score"],
            "lexical_score": h["lexical_score"],
        }
        for h in hits[:k]
    ]
    return {
        "success": True,
        "results": results,
        "count": len(results),
        "mode": vmode,
        "root": root,
        "backend": "vembed",
        "indexed": summary.get("indexed", 0),
    }


async def _victor_codings(**kwargs):
    """victor-coding's own ``code_search``, as Victor would call it."""
    try:
        from victor_coding.tools.code_search_tool import code_search as stock
    except ImportError:
        return {
            "success": False,
            "error": "semantic code search needs victor-coding (not installed) or the vembed "
            "plug-in (VEMBED_VICTOR=1 with a vembed host)",
        }
    return await stock(**kwargs)


async def code_search(query, path=".", mode="semantic", k=10, **kwargs):
    """The ``victor.tool_callables`` entry ``code_search``: see the module
    documentation. Extra keyword arguments (victor-coding's ``filters``,
    ``reindex``, ...) go to victor-coding's function when it answers."""
    if not enabled() or mode == "graph":
        return await _victor_codings(query=query, path=path, mode=mode, k=k, **kwargs)
    if not (query or "").strip():
        return {"success": False, "error": "vembed: the search query is empty"}
    try:
        return await asyncio.to_thread(search_sync, query, path, mode, k)
    except Exception as e:  # Victor shows it beside its literal fallback.
        return {"success": False, "error": "vembed: %s" % e}
