"""One connection to the host: where the socket is, the checks made before
anything is sent (PROTOCOL.md), the handshake, and framed request/reply with
deadlines, the same rules as the Rust client (``crates/client/src/connect.rs``).
"""

import errno
import os
import select
import socket
import stat
import struct
import time

from . import _wire
from .errors import (
    Disconnected,
    HostUnavailable,
    ProtocolError,
    Timeout,
    UnsafeSocket,
    Unresponsive,
    VersionMismatch,
    host_error,
)

CLIENT_NAME = "vembed-python/0.1.0"


def _env_path(var):
    v = os.environ.get(var)
    return v if v else None


def runtime_dir():
    """``$VEMBED_RUNTIME_DIR``, else ``$XDG_RUNTIME_DIR/vembed``, else
    ``$TMPDIR/vembed-$UID``."""
    p = _env_path("VEMBED_RUNTIME_DIR")
    if p:
        return p
    p = _env_path("XDG_RUNTIME_DIR")
    if p:
        return os.path.join(p, "vembed")
    # $TMPDIR, else /tmp: what Rust's std::env::temp_dir() gives the host.
    return os.path.join(os.environ.get("TMPDIR") or "/tmp", "vembed-%d" % os.getuid())


def socket_path():
    """``$VEMBED_SOCKET``, else ``runtime_dir()/host.sock``."""
    return _env_path("VEMBED_SOCKET") or os.path.join(runtime_dir(), "host.sock")


def state_dir():
    """Where the host's logs go (``$VEMBED_STATE_DIR``, ``$XDG_STATE_HOME/vembed``,
    ``~/.local/state/vembed``)."""
    p = _env_path("VEMBED_STATE_DIR")
    if p:
        return p
    p = _env_path("XDG_STATE_HOME")
    if p:
        return os.path.join(p, "vembed")
    return os.path.join(os.path.expanduser("~"), ".local", "state", "vembed")


def _config_file():
    p = _env_path("VEMBED_CONFIG")
    if p:
        return p
    base = _env_path("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "vembed", "config.toml")


class Timeouts:
    """``connect_timeout_ms`` (5000), ``request_timeout_secs`` (60) and
    ``request_timeout_per_text_ms`` (250), from the config file (Python 3.11+
    reads TOML) and the ``VEMBED_*`` variables, as the Rust client reads them."""

    def __init__(self, connect=5.0, request=60.0, per_text=0.25):
        self.connect = connect
        self.request = request
        self.per_text = per_text

    @classmethod
    def from_settings(cls):
        values = {}
        try:
            import tomllib  # Python 3.11+

            with open(_config_file(), "rb") as f:
                values.update(tomllib.load(f))
        except (ImportError, OSError, ValueError):
            pass
        for key in ("connect_timeout_ms", "request_timeout_secs", "request_timeout_per_text_ms"):
            env = os.environ.get("VEMBED_" + key.upper())
            if env:
                values[key] = env

        def num(key, default):
            try:
                return float(values.get(key, default))
            except (TypeError, ValueError):
                return float(default)

        return cls(
            connect=max(num("connect_timeout_ms", 5000), 1) / 1000.0,
            request=max(num("request_timeout_secs", 60), 1),
            per_text=num("request_timeout_per_text_ms", 250) / 1000.0,
        )

    def for_texts(self, n):
        return self.request + self.per_text * n


def _owner(uid):
    try:
        import pwd

        return "uid %d (%s)" % (uid, pwd.getpwuid(uid).pw_name)
    except (ImportError, KeyError):
        return "uid %d" % uid


def check_socket(path):
    """PROTOCOL.md's rule: the socket's directory is not a symbolic link, is
    ours and is not group- or world-writable; the socket is a socket of ours.
    Returns False when there is no directory or socket yet (no host)."""
    me = os.geteuid()
    directory = os.path.dirname(path) or "."
    try:
        d = os.lstat(directory)
    except FileNotFoundError:
        return False
    if stat.S_ISLNK(d.st_mode):
        raise UnsafeSocket(
            "refusing the vembed socket %s: the socket directory is a symbolic link; "
            "remove it, or set XDG_RUNTIME_DIR or VEMBED_RUNTIME_DIR to a private directory"
            % directory
        )
    if not stat.S_ISDIR(d.st_mode):
        raise UnsafeSocket("refusing the vembed socket %s: not a directory" % directory)
    if d.st_uid != me:
        raise UnsafeSocket(
            "refusing the vembed socket %s: the socket directory is owned by %s, not by this "
            "user (%s); another user may have created it to intercept this user's embeddings"
            % (directory, _owner(d.st_uid), _owner(me))
        )
    if d.st_mode & 0o022:
        raise UnsafeSocket(
            "refusing the vembed socket %s: the socket directory is writable by other users "
            "(mode %04o); make it private (chmod 700)" % (directory, d.st_mode & 0o7777)
        )
    try:
        s = os.lstat(path)
    except FileNotFoundError:
        return False
    if stat.S_ISLNK(s.st_mode) or not stat.S_ISSOCK(s.st_mode):
        raise UnsafeSocket("refusing the vembed socket %s: this is not a socket" % path)
    if s.st_uid != me:
        raise UnsafeSocket(
            "refusing the vembed socket %s: the socket is owned by %s, not by this user (%s)"
            % (path, _owner(s.st_uid), _owner(me))
        )
    return True


class NotRunning(HostUnavailable):
    """Nothing listens on the socket (internal: the client then starts a host)."""


def _recv_exact(sock, n, deadline, on_silence):
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise Timeout("the vembed host did not answer in time")
        wait = on_silence[0] if on_silence else remaining
        r, _, _ = select.select([sock], [], [], min(remaining, wait))
        if not r:
            if on_silence:
                on_silence[1]()
            continue
        try:
            k = sock.recv_into(view[got:], n - got)
        except (ConnectionResetError, BrokenPipeError):
            raise Disconnected("the vembed host closed the connection") from None
        if k == 0:
            raise Disconnected("the vembed host closed the connection")
        got += k
    return buf


def _connect_unix(path, timeout):
    """A socket connected to ``path`` within ``timeout``. A host whose listen
    queue is full makes a connect fail at once with EAGAIN (Unix sockets do
    not wait): that is retried until the deadline, then reported as a host
    that does not accept connections."""
    deadline = time.monotonic() + timeout
    pause = 0.001
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(max(deadline - time.monotonic(), 0.001))
        try:
            sock.connect(path)
            return sock
        except (FileNotFoundError, ConnectionRefusedError):
            sock.close()
            raise NotRunning("no vembed host is running on %s" % path) from None
        except (BlockingIOError, socket.timeout):
            sock.close()
            if time.monotonic() + pause >= deadline:
                raise Unresponsive(
                    "the vembed host on %s does not accept connections within %.1f s "
                    "(stopped or hung)" % (path, timeout)
                ) from None
            time.sleep(pause)
            pause = min(pause * 2, 0.05)
        except BaseException:
            sock.close()
            raise


class Connection:
    """A checked, handshaken connection. Not thread-safe: the client pools them."""

    def __init__(self, path, timeouts):
        self.path = path
        self.timeouts = timeouts
        self.next_id = 1
        self.pid = os.getpid()
        if not check_socket(path):
            raise NotRunning("no vembed host is running on %s" % path)
        sock = _connect_unix(path, timeouts.connect)
        try:
            fmt = "3i"
            pid, uid, _ = struct.unpack(
                fmt, sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize(fmt))
            )
            if uid != os.geteuid():
                raise UnsafeSocket(
                    "refusing the vembed socket %s: the process listening on it (pid %d) runs as "
                    "%s, not as this user (%s); refusing to send it anything"
                    % (path, pid, _owner(uid), _owner(os.geteuid()))
                )
            sock.settimeout(None)
            self.sock = sock
            hello = {"Hello": {"version": _wire.PROTOCOL_VERSION, "client": CLIENT_NAME}}
            try:
                reply = self.call(hello, deadline=time.monotonic() + timeouts.connect, probe=False)
            except Timeout:
                raise Unresponsive(
                    "the vembed host on %s (pid %d) accepted but did not answer the handshake "
                    "within %.1f s (stopped or hung)" % (path, pid, timeouts.connect)
                ) from None
            if not isinstance(reply, dict) or "Hello" not in reply:
                raise ProtocolError("unexpected reply to the handshake: %r" % (reply,))
            self.hello = reply["Hello"]
            if self.hello["version"] != _wire.PROTOCOL_VERSION:
                raise VersionMismatch(
                    "the host speaks protocol %d, this client %d"
                    % (self.hello["version"], _wire.PROTOCOL_VERSION)
                )
        except BaseException:
            sock.close()
            raise

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    # -- framing --

    def send(self, request):
        rid = self.next_id
        self.next_id += 1
        self.send_raw(_wire.encode_request(rid, request))
        return rid

    def send_raw(self, data):
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            raise Disconnected("the vembed host closed the connection") from None

    def _probe(self):
        """The host stayed silent for the connect timeout: is it alive?"""
        try:
            Connection(self.path, self.timeouts).close()
        except (Unresponsive, NotRunning) as e:
            raise Unresponsive(
                "the vembed host (pid %d) stopped answering: %s" % (self.hello["pid"], e)
            ) from None

    def receive(self, deadline, probe=True):
        """The next reply frame: ``(id, response)``."""
        silence = (self.timeouts.connect, self._probe) if probe else None
        (n,) = struct.unpack("<I", _recv_exact(self.sock, 4, deadline, silence))
        if n > _wire.MAX_FRAME_BYTES:
            raise ProtocolError("a %d-byte reply frame" % n)
        payload = _recv_exact(self.sock, n, deadline, silence)
        try:
            frame = _wire.decode(_wire.RESPONSE_FRAME, payload)
        except _wire.DecodeError as e:
            raise ProtocolError("cannot read the host's reply: %s" % e) from None
        return frame["id"], frame["response"]

    def reply(self, rid, deadline, probe=True):
        """The reply to request ``rid``; an error reply raises."""
        while True:
            got, response = self.receive(deadline, probe)
            if isinstance(response, dict) and "Error" in response:
                if got in (rid, 0):
                    raise host_error(response["Error"])
                continue
            if got == rid:
                return response

    def call(self, request, deadline=None, probe=True, texts=0):
        if deadline is None:
            deadline = time.monotonic() + self.timeouts.for_texts(texts)
        rid = self.send(request)
        return self.reply(rid, deadline, probe)


def is_not_running(e):
    return isinstance(e, NotRunning) or (
        isinstance(e, OSError) and e.errno in (errno.ENOENT, errno.ECONNREFUSED)
    )
