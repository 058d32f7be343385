"""Starting ``vembed-host`` when none runs, as the Rust client does
(``crates/client/src/spawn.rs``): find the binary, start it in its own
session, read its one status line, and wait until it answers a handshake.
A host another process is starting at the same moment is waited for, not
fought: the host's lock keeps it to one.
"""

import os
import shutil
import subprocess
import sysconfig
import threading
import time

from ._connection import Connection, NotRunning, Timeouts, socket_path, state_dir
from .errors import Disconnected, HostUnavailable

INSTALL_HINT = (
    "install vembed with its binaries (`pip install vembed`, a platform wheel), or build it "
    "(`cargo build --release` in the vembed repository) and put vembed and vembed-host on PATH, "
    "or set VEMBED_HOST_BIN to the vembed-host binary"
)


def _scripts_dirs():
    """Where pip put a wheel's binaries for this interpreter: its scripts
    directory (a venv's ``bin``, used or not activated), then the user
    scheme's (``pip install --user``)."""
    out = []
    for scheme in (None, "%s_user" % os.name):
        try:
            d = sysconfig.get_path("scripts", scheme) if scheme else sysconfig.get_path("scripts")
        except KeyError:
            continue
        if d and d not in out:
            out.append(d)
    return out


def find_host_bin(host_bin=None):
    """``host_bin``, else ``$VEMBED_HOST_BIN``, else the ``vembed-host`` a
    wheel installed for this interpreter, else ``vembed-host`` on ``PATH``,
    else the one beside ``vembed`` on ``PATH``."""
    if host_bin:
        return host_bin
    env = os.environ.get("VEMBED_HOST_BIN")
    if env:
        return env
    for d in _scripts_dirs():
        candidate = os.path.join(d, "vembed-host")
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("vembed-host")
    if found:
        return found
    cli = shutil.which("vembed")
    if cli:
        beside = os.path.join(os.path.dirname(os.path.realpath(cli)), "vembed-host")
        if os.access(beside, os.X_OK):
            return beside
    raise HostUnavailable("no vembed host is running and vembed-host was not found; " + INSTALL_HINT)


def _log_file():
    d = state_dir()
    try:
        os.makedirs(d, exist_ok=True)
        return open(os.path.join(d, "host.stderr.log"), "ab")
    except OSError:
        return subprocess.DEVNULL


def spawn_host(socket, host_bin=None, args=(), timeout=60.0):
    """Starts a host on ``socket``; returns once it printed its status line
    (``ready`` or ``already-running``)."""
    binary = find_host_bin(host_bin)
    log = _log_file()
    try:
        proc = subprocess.Popen(
            [binary, "--socket", socket, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
            # Its own session: a Ctrl-C meant for this program must not stop
            # the host every other client shares.
            start_new_session=True,
            close_fds=True,
        )
    except OSError as e:
        raise HostUnavailable("cannot start %s: %s; %s" % (binary, e, INSTALL_HINT)) from None
    finally:
        if log is not subprocess.DEVNULL:
            log.close()
    line = []
    reader = threading.Thread(target=lambda: line.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    # Reap it whenever it exits, so it never lingers as a zombie.
    threading.Thread(target=proc.wait, daemon=True).start()
    if not line:
        raise HostUnavailable(
            "%s did not report ready within %.0f s (see %s)"
            % (binary, timeout, os.path.join(state_dir(), "host.stderr.log"))
        )
    status = line[0].decode("utf-8", "replace").strip()
    if status.startswith("vembed-host ready") or status == "vembed-host already-running":
        return status
    if status.startswith("vembed-host error "):
        raise HostUnavailable("vembed-host failed to start: " + status[len("vembed-host error ") :])
    raise HostUnavailable(
        "%s exited without a status line; see %s"
        % (binary, os.path.join(state_dir(), "host.stderr.log"))
    )


def connect_or_spawn(socket, timeouts, spawn=True, host_bin=None, host_args=(), timeout=60.0):
    """A connection to the host on ``socket``, starting one if none runs."""
    try:
        return Connection(socket, timeouts)
    except (NotRunning, Disconnected):
        if not spawn:
            raise
    deadline = time.monotonic() + timeout
    spawn_host(socket, host_bin, host_args, timeout)
    last_spawn = time.monotonic()
    pause = 0.002
    while True:
        try:
            return Connection(socket, timeouts)
        except (NotRunning, Disconnected):
            if time.monotonic() >= deadline:
                raise HostUnavailable(
                    "a vembed host was started on %s but did not answer within %.0f s"
                    % (socket, timeout)
                ) from None
        time.sleep(pause)
        pause = min(pause * 2, 0.05)
        # A host another process was starting may have failed or be on its
        # way out: while nothing answers, try a new start every half second.
        if time.monotonic() - last_spawn > 0.5:
            last_spawn = time.monotonic()
            spawn_host(socket, host_bin, host_args, max(deadline - time.monotonic(), 1.0))


class Target:
    """Where a client connects, and how it starts a host there when none
    runs: what ``Client`` and ``AsyncClient`` share."""

    def __init__(self, socket=None, spawn=True, host_bin=None, host_args=(), timeouts=None, start_timeout=60.0):
        self.socket = os.fspath(socket) if socket is not None else socket_path()
        self.spawn = spawn
        self.host_bin = host_bin
        self.host_args = tuple(host_args)
        self.timeouts = timeouts or Timeouts.from_settings()
        self.start_timeout = start_timeout

    def connect(self):
        """A checked, handshaken connection, starting a host if allowed."""
        return connect_or_spawn(
            self.socket,
            self.timeouts,
            spawn=self.spawn,
            host_bin=self.host_bin,
            host_args=self.host_args,
            timeout=self.start_timeout,
        )
