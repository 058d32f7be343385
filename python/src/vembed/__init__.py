"""vembed: sentence embeddings from the shared per-user vembed host.

``Client`` (threads, fork) and ``AsyncClient`` (asyncio) speak the host's
socket protocol, starting ``vembed-host`` when none runs;
``SentenceTransformer`` is a drop-in for the part of sentence-transformers'
API that agents use. Nothing here imports torch, transformers or numpy; with
numpy installed, vectors come back as float32 arrays.
"""

from ._connection import Timeouts, socket_path
from ._results import Embeddings, ToolPick
from .client import Client
from .errors import (
    CodeIndexError,
    Disconnected,
    FrameTooLarge,
    HandshakeRequired,
    HostError,
    HostUnavailable,
    InternalError,
    InvalidRequest,
    UpstreamError,
    Malformed,
    Overloaded,
    PermissionDenied,
    ProtocolError,
    ShuttingDown,
    TextTooLarge,
    Timeout,
    TooManyTexts,
    UnknownModel,
    UnsafeSocket,
    Unresponsive,
    VembedError,
    VersionMismatch,
)

__version__ = "0.1.0"


def __getattr__(name):
    # Imported on first use, so that `import vembed` stays small (asyncio
    # alone would double its import time).
    if name == "SentenceTransformer":
        from .sentence_transformer import SentenceTransformer

        return SentenceTransformer
    if name == "AsyncClient":
        from .aio import AsyncClient

        return AsyncClient
    raise AttributeError("module 'vembed' has no attribute %r" % name)


__all__ = [
    "AsyncClient",
    "Client",
    "CodeIndexError",
    "Disconnected",
    "Embeddings",
    "FrameTooLarge",
    "HandshakeRequired",
    "HostError",
    "HostUnavailable",
    "InternalError",
    "InvalidRequest",
    "UpstreamError",
    "Malformed",
    "Overloaded",
    "PermissionDenied",
    "ProtocolError",
    "SentenceTransformer",
    "ShuttingDown",
    "TextTooLarge",
    "Timeout",
    "Timeouts",
    "ToolPick",
    "TooManyTexts",
    "UnknownModel",
    "UnsafeSocket",
    "Unresponsive",
    "VembedError",
    "VersionMismatch",
    "socket_path",
]
