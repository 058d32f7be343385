#!/usr/bin/env python3
"""A vembed client in plain Python: only `socket` and `struct`.

Usage: vembed_client.py [--socket PATH] TEXT...
       vembed_client.py [--socket PATH] --search REPO QUERY
Prints one JSON object per text: {"embedding": [...], "tokens": N}; with
--search, one JSON list of hits from REPO's code index (through the host).

The wire format is in PROTOCOL.md. Every integer is little-endian and fixed
width; strings and lists are a u64 length followed by their items; an enum is
a u32 variant index followed by its fields.
"""
import json
import os
import socket
import struct
import sys

PROTOCOL_VERSION = 1
ERROR_CODES = [
    "VersionMismatch", "Malformed", "FrameTooLarge", "TooManyTexts", "TextTooLarge",
    "Overloaded", "UnknownModel", "PermissionDenied", "HandshakeRequired",
    "ShuttingDown", "Internal", "Index", "InvalidRequest",
]


def default_socket():
    if os.environ.get("VEMBED_SOCKET"):
        return os.environ["VEMBED_SOCKET"]
    if os.environ.get("VEMBED_RUNTIME_DIR"):
        return os.path.join(os.environ["VEMBED_RUNTIME_DIR"], "host.sock")
    if os.environ.get("XDG_RUNTIME_DIR"):
        return os.path.join(os.environ["XDG_RUNTIME_DIR"], "vembed", "host.sock")
    import tempfile
    return os.path.join(tempfile.gettempdir(), f"vembed-{os.getuid()}", "host.sock")


def string(s):
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


class Reader:
    def __init__(self, data):
        self.data, self.pos = data, 0

    def take(self, fmt):
        vals = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return vals[0] if len(vals) == 1 else vals

    def string(self):
        n = self.take("<Q")
        s = self.data[self.pos:self.pos + n].decode("utf-8")
        self.pos += n
        return s


class HostError(Exception):
    pass


class UnsafeSocket(Exception):
    """The socket, its directory or its listener is not this user's own."""


def check_socket(path):
    """PROTOCOL.md's rule: a private directory of ours, and a socket of ours."""
    import stat
    me = os.geteuid()
    directory = os.path.dirname(path) or "."
    d = os.lstat(directory)
    if stat.S_ISLNK(d.st_mode):
        raise UnsafeSocket(f"{directory}: the socket directory is a symbolic link")
    if d.st_uid != me:
        raise UnsafeSocket(f"{directory}: owned by uid {d.st_uid}, not by this user ({me})")
    if d.st_mode & 0o022:
        raise UnsafeSocket(f"{directory}: writable by other users (mode {d.st_mode & 0o7777:04o})")
    s = os.lstat(path)
    if not stat.S_ISSOCK(s.st_mode) or s.st_uid != me:
        raise UnsafeSocket(f"{path}: not a socket owned by this user")


class Client:
    def __init__(self, path=None):
        path = path or default_socket()
        check_socket(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(60)
        self.sock.connect(path)
        # SO_PEERCRED: struct ucred { pid, uid, gid }; the host must be us.
        pid, uid, _ = struct.unpack("3i", self.sock.getsockopt(
            socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
        if uid != os.geteuid():
            self.sock.close()
            raise UnsafeSocket(f"{path}: the listener (pid {pid}) runs as uid {uid}")
        self.next_id = 1
        # Request::Hello (variant 0) { version: u32, client: String }
        reply = self.call(struct.pack("<II", 0, PROTOCOL_VERSION) + string("python-example"))
        tag = reply.take("<I")
        if tag != 1:
            raise HostError(f"unexpected reply {tag} to Hello")
        self.version = reply.take("<I")

    def _recv_exact(self, n):
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("host closed the connection")
            buf += chunk
        return bytes(buf)

    def call(self, body):
        """Sends one request (its payload after the id) and returns a Reader at the reply's Response tag."""
        rid = self.next_id
        self.next_id += 1
        payload = struct.pack("<Q", rid) + body
        self.sock.sendall(struct.pack("<I", len(payload)) + payload)
        (length,) = struct.unpack("<I", self._recv_exact(4))
        r = Reader(self._recv_exact(length))
        reply_id = r.take("<Q")
        tag = struct.unpack_from("<I", r.data, r.pos)[0]
        if tag == 0:  # Response::Error { code: u32, message: String }
            r.take("<I")
            code = r.take("<I")
            raise HostError(f"{ERROR_CODES[code] if code < len(ERROR_CODES) else code}: {r.string()}")
        if reply_id != rid:
            raise HostError(f"reply {reply_id} for request {rid}")
        return r

    def embed(self, texts):
        # Request::Embed (1) { model: ModelRef::Role (0) (Role::Unified = 0), texts: Vec<String> }
        body = struct.pack("<III", 1, 0, 0) + struct.pack("<Q", len(texts)) + b"".join(string(t) for t in texts)
        r = self.call(body)
        assert r.take("<I") == 2  # Response::Embeddings
        r.string()  # model name
        dim = r.take("<I")
        n = r.take("<Q")
        tokens = list(struct.unpack_from(f"<{n}I", r.data, r.pos))
        r.pos += 4 * n
        count = r.take("<Q")
        data = struct.unpack_from(f"<{count}f", r.data, r.pos)
        return [list(data[i * dim:(i + 1) * dim]) for i in range(n)], tokens


    def search(self, repo, query, k=10):
        # Request::Search (7) { repo: String, index_dir: Option<String> (0 = None),
        #                       query: String, k: u32 }
        body = struct.pack("<I", 7) + string(repo) + b"\x00" + string(query) + struct.pack("<I", k)
        r = self.call(body)
        assert r.take("<I") == 7  # Response::SearchResults(Vec<SearchHit>)
        hits = []
        for _ in range(r.take("<Q")):
            path = r.string()
            start, end = r.take("<II")
            symbol = r.string() if r.take("<B") == 1 else None
            score = r.take("<f")
            hits.append({"path": path, "start_line": start, "end_line": end,
                         "symbol": symbol, "score": score, "text": r.string()})
        return hits


def main(argv):
    path = None
    if len(argv) >= 2 and argv[0] == "--socket":
        path, argv = argv[1], argv[2:]
    client = Client(path)
    if len(argv) == 3 and argv[0] == "--search":
        print(json.dumps(client.search(argv[1], argv[2])))
        return
    vectors, tokens = client.embed(argv)
    for v, t in zip(vectors, tokens):
        print(json.dumps({"embedding": v, "tokens": t}))


if __name__ == "__main__":
    main(sys.argv[1:])
