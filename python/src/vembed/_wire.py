"""The vembed wire protocol (PROTOCOL.md): frames and bincode payloads.

A frame is a little-endian ``u32`` length and a payload. Payloads are bincode
2 with fixed-width little-endian integers. Values are plain Python data in
serde's JSON shape, the same one the Rust side's ``serde_json`` prints: a
struct is a ``dict`` of its fields, a unit enum variant is its name
(``"Status"``), any other variant is ``{"Name": value}``, ``Option`` is the
value or ``None``.

Two types are special for speed: a ``Vec<f32>`` decodes to ``array('f')``
and a ``Vec<u32>`` to ``array('I')``, each built from the payload bytes in one
copy (no per-number Python loop); encoding takes those, ``bytes`` or any
sequence of numbers.

The schema below mirrors ``crates/protocol/src/types.rs``; the test suite
checks it against a frame the Rust side writes for every variant.
"""

import struct
import sys
from array import array

PROTOCOL_VERSION = 1
MAX_FRAME_BYTES = 256 << 20
HELLO_MAX_FRAME_BYTES = 64 << 10
UNREAD_REPLY_ROOM_BYTES = 2 << 20

_LITTLE = sys.byteorder == "little"
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_F32 = struct.Struct("<f")
_F64 = struct.Struct("<d")


class DecodeError(ValueError):
    """A payload that does not match the schema."""


# -- types ------------------------------------------------------------------


class _Prim:
    def __init__(self, name, fmt):
        self.name = name
        self.st = struct.Struct(fmt) if fmt else None


U8 = _Prim("u8", "<B")
BOOL = _Prim("bool", None)
U32 = _Prim("u32", "<I")
U64 = _Prim("u64", "<Q")
F32 = _Prim("f32", "<f")
F64 = _Prim("f64", "<d")
STR = _Prim("String", None)


class Vec:
    def __init__(self, item):
        self.item = item


class Opt:
    def __init__(self, item):
        self.item = item


class Struct:
    def __init__(self, name, *fields):
        self.name = name
        self.fields = fields


class Enum:
    """Variants in wire order: ``(name, None)`` for a unit variant, else
    ``(name, type)`` for a newtype variant."""

    def __init__(self, name, *variants):
        self.name = name
        self.variants = variants
        self.index = {n: (i, t) for i, (n, t) in enumerate(variants)}


# -- schema (crates/protocol/src/types.rs) ----------------------------------

ROLE = Enum("Role", ("Unified", None), ("Tools", None), ("Code", None))
MODEL_REF = Enum("ModelRef", ("Role", ROLE), ("Name", STR))
HELLO = Struct("Hello", ("version", U32), ("client", STR))
EMBED_REQUEST = Struct("EmbedRequest", ("model", MODEL_REF), ("texts", Vec(STR)))
INDEX_REQUEST = Struct(
    "IndexRequest", ("repo", STR), ("index_dir", Opt(STR)), ("rebuild", BOOL)
)
SEARCH_REQUEST = Struct(
    "SearchRequest", ("repo", STR), ("index_dir", Opt(STR)), ("query", STR), ("k", U32)
)
SEARCH_MODE = Enum("SearchMode", ("semantic", None), ("lexical", None), ("hybrid", None))
RANKED_SEARCH_REQUEST = Struct(
    "RankedSearchRequest",
    ("repo", STR),
    ("index_dir", Opt(STR)),
    ("query", STR),
    ("k", U32),
    ("mode", SEARCH_MODE),
)
TOOL_SPEC = Struct(
    "ToolSpec",
    ("name", STR),
    ("description", STR),
    ("parameters", Vec(STR)),
    ("use_cases", Vec(STR)),
)
TOOL_METHOD = Enum(
    "ToolMethod", ("plain", None), ("split", None), ("max-sim", None), ("hybrid", None)
)
TOOL_FALLBACK = Enum("ToolFallback", ("all", None), ("top-k", None))
SELECT_TOOLS_REQUEST = Struct(
    "SelectToolsRequest",
    ("model", MODEL_REF),
    ("tools", Vec(TOOL_SPEC)),
    ("method", TOOL_METHOD),
    ("queries", Vec(STR)),
    ("k", U32),
    ("threshold", F32),
    ("fallback", TOOL_FALLBACK),
)
REQUEST = Enum(
    "Request",
    ("Hello", HELLO),
    ("Embed", EMBED_REQUEST),
    ("Status", None),
    ("Shutdown", None),
    ("Ping", None),
    ("EmbedCached", EMBED_REQUEST),
    ("Index", INDEX_REQUEST),
    ("Search", SEARCH_REQUEST),
    ("SelectTools", SELECT_TOOLS_REQUEST),
    ("SearchRanked", RANKED_SEARCH_REQUEST),
    ("Upstreams", None),
    ("Indexes", None),
)
REQUEST_FRAME = Struct("RequestFrame", ("id", U64), ("request", REQUEST))

ERROR_CODES = (
    "VersionMismatch",
    "Malformed",
    "FrameTooLarge",
    "TooManyTexts",
    "TextTooLarge",
    "Overloaded",
    "UnknownModel",
    "PermissionDenied",
    "HandshakeRequired",
    "ShuttingDown",
    "Internal",
    "Index",
    "InvalidRequest",
    "Upstream",
)
ERROR_CODE = Enum("ErrorCode", *((c, None) for c in ERROR_CODES))
ERROR_REPLY = Struct("ErrorReply", ("code", ERROR_CODE), ("message", STR))
LIMITS = Struct(
    "Limits",
    ("max_frame_bytes", U32),
    ("max_texts_per_request", U32),
    ("max_text_bytes", U32),
    ("max_batch_tokens", U32),
    ("max_queue_texts", U32),
)
MODEL_INFO = Struct(
    "ModelInfo",
    ("name", STR),
    ("sha256", STR),
    ("dim", U32),
    ("max_seq_length", U32),
    ("roles", Vec(ROLE)),
    ("path", STR),
    ("identity", STR),
)
HELLO_REPLY = Struct(
    "HelloReply",
    ("version", U32),
    ("host_version", STR),
    ("pid", U32),
    ("models", Vec(MODEL_INFO)),
    ("limits", LIMITS),
)
EMBEDDINGS = Struct(
    "Embeddings",
    ("model", STR),
    ("dim", U32),
    ("tokens", Vec(U32)),
    ("data", Vec(F32)),
    ("host_us", U64),
)
FILE_RESIDENCY = Struct(
    "FileResidency", ("path", STR), ("bytes", U64), ("resident_bytes", U64)
)
MODEL_STATUS = Struct("ModelStatus", ("info", MODEL_INFO), ("files", Vec(FILE_RESIDENCY)))
MEMORY_STATUS = Struct(
    "MemoryStatus",
    ("rss", U64),
    ("pss", U64),
    ("rss_anon", U64),
    ("rss_file", U64),
    ("peak_rss", U64),
)
CACHE_STATUS = Struct(
    "CacheStatus", ("hits", U64), ("disk_hits", U64), ("misses", U64), ("entries", U64)
)
HOST_STATUS = Struct(
    "HostStatus",
    ("pid", U32),
    ("host_version", STR),
    ("uptime_ms", U64),
    ("socket", STR),
    ("models", Vec(MODEL_STATUS)),
    ("memory", MEMORY_STATUS),
    ("clients", U32),
    ("connections_total", U64),
    ("requests", U64),
    ("texts", U64),
    ("errors", U64),
    ("batches", U64),
    ("queue_texts", U32),
    ("latency_p50_us", U64),
    ("latency_p99_us", U64),
    ("threads", U32),
    ("idle_timeout_secs", U64),
    ("limits", LIMITS),
    ("cache", CACHE_STATUS),
)
INDEX_PROGRESS = Struct(
    "IndexProgress",
    ("files_seen", U64),
    ("files_to_index", U64),
    ("files_indexed", U64),
    ("chunks_added", U64),
)
INDEX_SUMMARY = Struct(
    "IndexSummary",
    ("index_dir", STR),
    ("files_seen", U64),
    ("indexed", U64),
    ("unchanged", U64),
    ("deleted", U64),
    ("skipped", U64),
    ("chunks_added", U64),
    ("chunks_removed", U64),
    ("tokens", U64),
    ("seconds", F64),
)
SEARCH_HIT = Struct(
    "SearchHit",
    ("path", STR),
    ("start_line", U32),
    ("end_line", U32),
    ("symbol", Opt(STR)),
    ("score", F32),
    ("text", STR),
)
RANK = Struct("Rank", ("rank", U32), ("score", F32))
RANKED_SEARCH_HIT = Struct(
    "RankedSearchHit", ("hit", SEARCH_HIT), ("semantic", Opt(RANK)), ("lexical", Opt(RANK))
)
TOOL_PICK = Struct("ToolPick", ("name", STR), ("score", F32))
TOOL_SELECTIONS = Struct(
    "ToolSelections",
    ("model", STR),
    ("selections", Vec(Vec(TOOL_PICK))),
    ("tools_cached", BOOL),
    ("host_us", U64),
)
UPSTREAM_STATUS = Struct(
    "UpstreamStatus",
    ("model", STR),
    ("provider", STR),
    ("url", STR),
    ("remote_model", STR),
    ("dim", U32),
    ("concurrency", U32),
    ("calls", U64),
    ("texts", U64),
    ("errors", U64),
    ("retries", U64),
    ("in_flight", U32),
    ("latency_p50_us", U64),
    ("latency_p99_us", U64),
    ("last_error", Opt(STR)),
)
INDEX_STATUS = Struct(
    "IndexStatus",
    ("root", STR),
    ("index_dir", STR),
    ("model", STR),
    ("files", U64),
    ("snippets", U64),
    ("disk_bytes", U64),
    ("updated_unix", U64),
    ("jobs", U64),
    ("files_embedded", U64),
    ("searches", U64),
    ("last_used_unix", U64),
    ("clients", Vec(U32)),
)
RESPONSE = Enum(
    "Response",
    ("Error", ERROR_REPLY),
    ("Hello", HELLO_REPLY),
    ("Embeddings", EMBEDDINGS),
    ("Status", HOST_STATUS),
    ("Ok", None),
    ("IndexProgress", INDEX_PROGRESS),
    ("IndexDone", INDEX_SUMMARY),
    ("SearchResults", Vec(SEARCH_HIT)),
    ("ToolSelections", TOOL_SELECTIONS),
    ("RankedResults", Vec(RANKED_SEARCH_HIT)),
    ("Upstreams", Vec(UPSTREAM_STATUS)),
    ("Indexes", Vec(INDEX_STATUS)),
)
RESPONSE_FRAME = Struct("ResponseFrame", ("id", U64), ("response", RESPONSE))


# -- encoding ---------------------------------------------------------------


def _enc(t, v, out):
    if t is STR:
        b = v.encode("utf-8")
        out += _U64.pack(len(b))
        out += b
    elif t is U32:
        out += _U32.pack(v)
    elif t is U64:
        out += _U64.pack(v)
    elif t is BOOL:
        out.append(1 if v else 0)
    elif t is F32:
        out += _F32.pack(v)
    elif t is F64:
        out += _F64.pack(v)
    elif t is U8:
        out.append(v)
    elif isinstance(t, Struct):
        for name, ft in t.fields:
            _enc(ft, v[name], out)
    elif isinstance(t, Enum):
        if isinstance(v, str):
            name, inner = v, None
        else:
            ((name, inner),) = v.items()
        try:
            i, vt = t.index[name]
        except KeyError:
            raise ValueError("%s has no variant %r" % (t.name, name)) from None
        out += _U32.pack(i)
        if vt is not None:
            _enc(vt, inner, out)
    elif isinstance(t, Vec):
        if t.item is F32 or t.item is U32:
            code = "f" if t.item is F32 else "I"
            if isinstance(v, (bytes, bytearray, memoryview)):
                raw = bytes(v)
            else:
                a = v if isinstance(v, array) and v.typecode == code else array(code, v)
                if not _LITTLE:
                    a = array(code, a)
                    a.byteswap()
                raw = a.tobytes()
            out += _U64.pack(len(raw) // 4)
            out += raw
        else:
            out += _U64.pack(len(v))
            for item in v:
                _enc(t.item, item, out)
    elif isinstance(t, Opt):
        if v is None:
            out.append(0)
        else:
            out.append(1)
            _enc(t.item, v, out)
    else:
        raise TypeError("no encoder for %r" % (t,))


def encode(t, value):
    """The payload bytes of ``value`` as type ``t``."""
    out = bytearray()
    _enc(t, value, out)
    return bytes(out)


def frame(payload):
    """A payload with its length prefix."""
    return _U32.pack(len(payload)) + payload


def encode_request(request_id, request):
    """One request frame, length prefix included."""
    return frame(encode(REQUEST_FRAME, {"id": request_id, "request": request}))


# -- decoding ---------------------------------------------------------------


class _Reader:
    __slots__ = ("buf", "pos")

    def __init__(self, buf):
        self.buf = memoryview(buf)
        self.pos = 0

    def take(self, n):
        p = self.pos
        if n < 0 or p + n > len(self.buf):
            raise DecodeError("payload ends early (needs %d bytes at offset %d)" % (n, p))
        self.pos = p + n
        return self.buf[p : p + n]


def _dec(t, r):
    if t is STR:
        (n,) = _U64.unpack(r.take(8))
        try:
            return str(r.take(n), "utf-8")
        except UnicodeDecodeError as e:
            raise DecodeError("a string is not UTF-8: %s" % e) from None
    if t is U32:
        return _U32.unpack(r.take(4))[0]
    if t is U64:
        return _U64.unpack(r.take(8))[0]
    if t is BOOL:
        b = r.take(1)[0]
        if b > 1:
            raise DecodeError("bool byte %d" % b)
        return b == 1
    if t is F32:
        return _F32.unpack(r.take(4))[0]
    if t is F64:
        return _F64.unpack(r.take(8))[0]
    if t is U8:
        return r.take(1)[0]
    if isinstance(t, Struct):
        return {name: _dec(ft, r) for name, ft in t.fields}
    if isinstance(t, Enum):
        (i,) = _U32.unpack(r.take(4))
        if i >= len(t.variants):
            raise DecodeError("%s has no variant %d (a newer host?)" % (t.name, i))
        name, vt = t.variants[i]
        return name if vt is None else {name: _dec(vt, r)}
    if isinstance(t, Vec):
        (n,) = _U64.unpack(r.take(8))
        if t.item is F32 or t.item is U32:
            a = array("f" if t.item is F32 else "I")
            a.frombytes(r.take(n * 4))
            if not _LITTLE:
                a.byteswap()
            return a
        if n > len(r.buf) - r.pos:
            raise DecodeError("a list of %d items in %d bytes" % (n, len(r.buf) - r.pos))
        return [_dec(t.item, r) for _ in range(n)]
    if isinstance(t, Opt):
        b = r.take(1)[0]
        if b == 0:
            return None
        if b != 1:
            raise DecodeError("option byte %d" % b)
        return _dec(t.item, r)
    raise TypeError("no decoder for %r" % (t,))


def decode(t, payload):
    """The value of type ``t`` in ``payload``, which it must fill exactly."""
    r = _Reader(payload)
    v = _dec(t, r)
    if r.pos != len(r.buf):
        raise DecodeError("%d bytes left after a %s" % (len(r.buf) - r.pos, t.name))
    return v


def embeddings_reply_bytes(texts, dim):
    """What a host reserves for an ``Embed`` reply (``embeddings_reply_bytes``)."""
    return texts * (dim * 4 + 4) + 64
