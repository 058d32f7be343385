"""What embedding calls return, and the request values shared by the sync and
async clients."""

import json
import os
from array import array
from collections import namedtuple

ToolPick = namedtuple("ToolPick", ["name", "score"])
ToolPick.__doc__ = "A selected tool and its score (cosine, plus the lexical part for hybrid)."

ROLES = {"unified": "Unified", "tools": "Tools", "code": "Code"}
METHODS = ("plain", "split", "max-sim", "hybrid")
FALLBACKS = ("all", "top-k")

# Texts per request when a large input is split, and requests in flight at
# once on one connection (both as in the Rust client); the bytes of replies in
# flight also stay within PROTOCOL.md's unread-reply room.
TEXTS_PER_REQUEST = 256
PIPELINE_DEPTH = 4


class LazyNumpy:
    """numpy for a client, imported when the first vectors arrive rather
    than at connect (importing it takes 50-150 ms, which a process that only
    searches code never needs). ``choice=True`` imports it now, so a
    missing numpy is reported at once."""

    def __init__(self, choice):
        self._choice = choice
        self._module = have_numpy(True) if choice else None
        self._resolved = bool(choice) or choice is False

    def get(self):
        if not self._resolved:
            self._module = have_numpy(self._choice)
            self._resolved = True
        return self._module


def have_numpy(choice):
    """numpy, if it is wanted (``None``: when installed) and importable."""
    if choice is False:
        return None
    try:
        import numpy
    except ImportError:
        if choice:
            raise
        return None
    return numpy


def model_ref(role=None, model=None):
    """The wire ``ModelRef`` for ``role`` (unified, tools, code) or ``model``
    (a name, alias, folder or weights sha256)."""
    if model is not None and role is not None:
        raise ValueError("pass role or model, not both")
    if model is not None:
        if not isinstance(model, str) or not model:
            raise TypeError("model must be a non-empty string")
        return {"Name": model}
    role = role or "unified"
    try:
        return {"Role": ROLES[role]}
    except KeyError:
        raise ValueError("unknown role %r; one of: %s" % (role, ", ".join(ROLES))) from None


def texts_list(texts):
    """``texts`` as a list of str, refusing anything else loudly."""
    if isinstance(texts, str):
        return [texts]
    out = list(texts)
    for i, t in enumerate(out):
        if not isinstance(t, str):
            raise TypeError("text %d is a %s, not a str" % (i, type(t).__name__))
    return out


class Embeddings:
    """Embeddings of several texts, in input order.

    ``vectors`` is a float32 ``numpy.ndarray`` of shape ``(n, dim)`` when numpy
    is used, else a list of ``array('f')`` rows; ``tokens[i]`` is text i's word
    pieces after truncation (with ``[CLS]`` and ``[SEP]``); ``host_us`` the
    host's time on the requests. Indexing and iteration go over the rows.
    """

    __slots__ = ("model", "dim", "tokens", "vectors", "host_us")

    def __init__(self, model, dim, tokens, vectors, host_us):
        self.model = model
        self.dim = dim
        self.tokens = tokens
        self.vectors = vectors
        self.host_us = host_us

    def __len__(self):
        return len(self.tokens)

    def __iter__(self):
        return iter(self.vectors)

    def __getitem__(self, i):
        return self.vectors[i]

    def tolist(self):
        """The vectors as lists of Python floats."""
        v = self.vectors
        return v.tolist() if hasattr(v, "tolist") and not isinstance(v, list) else [r.tolist() for r in v]

    def __repr__(self):
        return "Embeddings(model=%r, n=%d, dim=%d)" % (self.model, len(self), self.dim)


def assemble(parts, np):
    """One ``Embeddings`` from the ``Embeddings`` replies of a split request."""
    if not parts:
        raise ValueError("no replies")
    dim = parts[0]["dim"]
    model = parts[0]["model"]
    tokens = []
    host_us = 0
    if len(parts) == 1:
        data = parts[0]["data"]
    else:
        data = array("f")
        for p in parts:
            if p["dim"] != dim:
                from .errors import ProtocolError

                raise ProtocolError("the dimension changed between replies")
            data.extend(p["data"])
    for p in parts:
        tokens.extend(p["tokens"])
        host_us += p["host_us"]
    n = len(tokens)
    if len(data) != n * dim:
        from .errors import ProtocolError

        raise ProtocolError("%d floats for %d texts of dimension %d" % (len(data), n, dim))
    if np is not None:
        vectors = np.frombuffer(data, dtype="<f4").reshape(n, dim)
    else:
        vectors = [data[i * dim : (i + 1) * dim] for i in range(n)]
    return Embeddings(model, dim, list(tokens), vectors, host_us)


def tool_specs(tools):
    """Tools in the wire's shape, from a path to a JSON tool set, a list of
    dicts (``name``, ``description``, optional ``parameters`` and
    ``use_cases``), or objects with those attributes. ``parameters`` may be a
    list of names or a JSON schema (its ``properties`` are the names);
    ``use_cases`` one string or a list. The host checks the rest."""
    if isinstance(tools, (str, bytes)) or hasattr(tools, "__fspath__"):
        with open(tools, "rb") as f:
            tools = json.load(f)
    specs = []
    for i, t in enumerate(tools):
        get = t.get if isinstance(t, dict) else (lambda k, d=None, t=t: getattr(t, k, d))
        if isinstance(t, dict):
            unknown = set(t) - {"name", "description", "parameters", "use_cases"}
            if unknown:
                raise ValueError("tool %d has unknown fields: %s" % (i, ", ".join(sorted(unknown))))
        params = get("parameters") or []
        if isinstance(params, dict):
            params = list((params.get("properties") or {}).keys())
        uses = get("use_cases") or []
        if isinstance(uses, str):
            uses = [uses]
        name, description = get("name"), get("description")
        if not isinstance(name, str) or not isinstance(description, str):
            raise ValueError("tool %d needs a string name and description" % i)
        specs.append(
            {
                "name": name,
                "description": description,
                "parameters": [str(p) for p in params],
                "use_cases": [str(u) for u in uses],
            }
        )
    return specs


def select_request(tools, queries, k, threshold, method, fallback, role, model):
    if method not in METHODS:
        raise ValueError("unknown method %r; one of: %s" % (method, ", ".join(METHODS)))
    if fallback not in FALLBACKS:
        raise ValueError("unknown fallback %r; one of: %s" % (fallback, ", ".join(FALLBACKS)))
    if not isinstance(k, int) or k < 0:
        raise ValueError("k must be a non-negative int")
    return {
        "SelectTools": {
            "model": model_ref(role or ("tools" if model is None else None), model),
            "tools": tools,
            "method": method,
            "queries": queries,
            "k": min(k, 2**32 - 1),
            "threshold": float(threshold),
            "fallback": fallback,
        }
    }


def _abs(path):
    return None if path is None else os.path.abspath(os.fspath(path))


def index_request(repo, index_dir, rebuild):
    return {"Index": {"repo": _abs(repo), "index_dir": _abs(index_dir), "rebuild": bool(rebuild)}}


SEARCH_MODES = ("hybrid", "semantic", "lexical")


def search_request(repo, query, k, index_dir, mode):
    if not isinstance(query, str):
        raise TypeError("query must be a str")
    if mode not in SEARCH_MODES:
        raise ValueError("mode must be one of %s, not %r" % (", ".join(SEARCH_MODES), mode))
    return {
        "SearchRanked": {
            "repo": _abs(repo),
            "index_dir": _abs(index_dir),
            "query": query,
            "k": int(k),
            "mode": mode,
        }
    }


def ranked_hits(hits):
    """The host's ranked hits as flat dicts, the shape ``vembed search
    --json`` prints: the snippet, its score in the mode, and its rank and
    score in each ranking that found it (``None`` where one did not)."""
    out = []
    for h in hits:
        d = dict(h["hit"])
        for name in ("semantic", "lexical"):
            r = h[name]
            d[name + "_rank"] = None if r is None else r["rank"]
            d[name + "_score"] = None if r is None else r["score"]
        out.append(d)
    return out


def picks(selections):
    return [[ToolPick(p["name"], p["score"]) for p in sel] for sel in selections]
