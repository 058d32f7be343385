"""Typed errors. Every failure raises one of these; vembed never answers with
zero or made-up vectors.

``HostError`` subclasses mirror the host's ``ErrorCode`` one for one (its
``code`` attribute is the wire name); the others are what can go wrong on
this side of the socket.
"""


class VembedError(Exception):
    """Anything vembed raises."""


class HostUnavailable(VembedError):
    """No host runs and none could be started (no ``vembed-host`` binary, or it
    failed to start or to become ready in time)."""


class UnsafeSocket(VembedError):
    """The socket, its directory or the process listening on it is not this
    user's own: nothing was sent."""


class Unresponsive(VembedError):
    """The host accepted the connection but does not answer (stopped or hung)."""


class Timeout(VembedError):
    """A live host did not answer within the request deadline."""


class Disconnected(VembedError):
    """The connection closed in the middle of a request."""


class ProtocolError(VembedError):
    """The host sent something this client cannot read."""


class HostError(VembedError):
    """The host refused or failed a request; ``code`` is its ``ErrorCode``."""

    code = "Internal"
    hint = ""

    def __init__(self, message, code=None):
        if code is not None:
            self.code = code
        self.host_message = message
        text = message if not self.hint else "%s (%s)" % (message, self.hint)
        super().__init__(text)


class VersionMismatch(HostError):
    code = "VersionMismatch"
    hint = "install matching versions of the vembed Python package and vembed-host"


class Malformed(HostError):
    code = "Malformed"
    hint = "a bug in this client: please report it"


class FrameTooLarge(HostError):
    code = "FrameTooLarge"
    hint = "send fewer or shorter texts per call"


class TooManyTexts(HostError):
    code = "TooManyTexts"
    hint = "split the request; Client.embed splits large inputs itself"


class TextTooLarge(HostError):
    code = "TextTooLarge"
    hint = "split or shorten the text; the model reads only its first max_seq_length tokens anyway"


class Overloaded(HostError):
    code = "Overloaded"
    hint = "the host's queue is full: retry shortly"


class UnknownModel(HostError):
    code = "UnknownModel"  # the host's message says how to fetch or import it


class PermissionDenied(HostError):
    code = "PermissionDenied"
    hint = "that host belongs to another user"


class HandshakeRequired(HostError):
    code = "HandshakeRequired"
    hint = "a bug in this client: please report it"


class ShuttingDown(HostError):
    code = "ShuttingDown"
    hint = "the host is stopping; the next call starts a new one"


class InternalError(HostError):
    code = "Internal"
    hint = "the model failed: see the host's log (~/.local/state/vembed/host.log)"


class CodeIndexError(HostError):
    code = "Index"


class InvalidRequest(HostError):
    code = "InvalidRequest"


class UpstreamError(HostError):
    code = "Upstream"
    hint = "a remote model's service failed or is unreachable; local models still serve"


_BY_CODE = {
    c.code: c
    for c in (
        VersionMismatch,
        Malformed,
        FrameTooLarge,
        TooManyTexts,
        TextTooLarge,
        Overloaded,
        UnknownModel,
        PermissionDenied,
        HandshakeRequired,
        ShuttingDown,
        InternalError,
        CodeIndexError,
        InvalidRequest,
        UpstreamError,
    )
}


def host_error(reply):
    """The exception for an ``ErrorReply`` dict from the wire."""
    code = reply["code"]
    return _BY_CODE.get(code, HostError)(reply["message"], code)
