"""Shared fixtures: a private host (the real vembed-host binary, on a socket
in a temp dir, with the real model) and the golden embeddings.

The runner (scripts/python-tests) sets VEMBED_TEST_BIN_DIR (the release
binaries), VEMBED_TEST_ROOT (the repository) and VEMBED_WIRE_FIXTURES (the
Rust-written frames). A missing one is an error, never a skip.
"""

import json
import math
import os
import shutil
import tempfile

import pytest


def need_env(name):
    value = os.environ.get(name)
    if not value:
        raise RuntimeError("%s is not set: run the Python tests through scripts/python-tests" % name)
    return value


BIN_DIR = need_env("VEMBED_TEST_BIN_DIR")
ROOT = need_env("VEMBED_TEST_ROOT")
HOST_BIN = os.path.join(BIN_DIR, "vembed-host")
CLI_BIN = os.path.join(BIN_DIR, "vembed")
LAB_BIN = os.path.join(BIN_DIR, "vembed-lab")
TOOLS_JSON = os.path.join(ROOT, "examples", "tools", "coding-agent.json")
MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"


def cosine(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(y * y for y in b))
    return dot / (na * nb)


@pytest.fixture(scope="session")
def golden():
    with open(os.path.join(ROOT, "tests", "golden", "all-MiniLM-L6-v2.json")) as f:
        return json.load(f)["items"]


@pytest.fixture(scope="session")
def host_env():
    """A private runtime dir for the whole session; the host starts on first use.

    The cache dir is private too (its models a link to the real ones), so the
    code indexes the tests build, kept under ``<cache>/indexes`` by repository
    path, never meet an earlier run's index of a path pytest reuses."""
    tmp = tempfile.mkdtemp(prefix="vembed-py-")
    os.chmod(tmp, 0o700)
    saved = {
        k: os.environ.get(k)
        for k in ("VEMBED_RUNTIME_DIR", "VEMBED_SOCKET", "VEMBED_HOST_BIN", "VEMBED_STATE_DIR", "VEMBED_CACHE_DIR")
    }
    os.makedirs(os.path.join(tmp, "cache"))
    os.symlink(os.path.dirname(MODEL_DIR), os.path.join(tmp, "cache", "models"))
    os.environ["VEMBED_CACHE_DIR"] = os.path.join(tmp, "cache")
    os.environ["VEMBED_RUNTIME_DIR"] = os.path.join(tmp, "run")
    os.environ.pop("VEMBED_SOCKET", None)
    os.environ["VEMBED_HOST_BIN"] = HOST_BIN
    os.environ["VEMBED_STATE_DIR"] = os.path.join(tmp, "state")
    yield tmp
    import vembed

    try:
        vembed.Client(spawn=False).shutdown()
    except vembed.VembedError:
        pass
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def client(host_env):
    import vembed

    return vembed.Client()


MODEL_DIR = os.path.join(
    os.environ.get("VEMBED_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "vembed"),
    "models",
    "sentence-transformers--all-MiniLM-L6-v2",
)


class HttpHost:
    """A vembed host serving HTTP: ``url``, its process, and the environment
    (``env``) that makes `vembed` and ``vembed.Client`` reach its socket."""

    def __init__(self, url, env, proc, tmp):
        self.url, self.env, self.proc, self.tmp = url, env, proc, tmp

    def vembed_embed(self, texts):
        """`vembed embed` on this host: (vectors, tokens) per text."""
        import subprocess

        lines = "".join(json.dumps({"text": t}) + "\n" for t in texts)
        out = subprocess.run(
            [CLI_BIN, "embed", "--jsonl"], input=lines, capture_output=True, text=True, env=self.env, timeout=120
        )
        assert out.returncode == 0, out.stderr
        rows = [json.loads(l) for l in out.stdout.splitlines()]
        return [r["embedding"] for r in rows], [r["tokens"] for r in rows]

    def metrics(self):
        import urllib.request

        with urllib.request.urlopen(self.url + "/metrics", timeout=30) as r:
            return r.read().decode()


def free_port():
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture(scope="session")
def http_host():
    """The real host with `--http-listen` on a free loopback port, in a
    runtime dir of its own (so no other test's host is reused)."""
    import subprocess

    tmp = tempfile.mkdtemp(prefix="vembed-http-")
    os.chmod(tmp, 0o700)
    env = {k: v for k, v in os.environ.items() if not k.startswith("VEMBED_")}
    env.update(
        VEMBED_RUNTIME_DIR=os.path.join(tmp, "run"),
        VEMBED_STATE_DIR=os.path.join(tmp, "state"),
        VEMBED_HOST_BIN=HOST_BIN,
        HF_HUB_OFFLINE="1",
    )
    port = free_port()
    proc = subprocess.Popen(
        [HOST_BIN, "--http-listen", "127.0.0.1:%d" % port],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    line = proc.stdout.readline().decode().strip()
    assert line.startswith("vembed-host ready"), line
    yield HttpHost("http://127.0.0.1:%d" % port, env, proc, tmp)
    proc.terminate()
    proc.wait(timeout=60)
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def tiktoken_cache():
    """A TIKTOKEN_CACHE_DIR holding cl100k_base, written by the Rust side
    from the copy the host uses; tiktoken checks its sha256 before use."""
    import hashlib
    import subprocess

    d = tempfile.mkdtemp(prefix="vembed-tiktoken-")
    url = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"
    path = os.path.join(d, hashlib.sha1(url.encode()).hexdigest())
    subprocess.run([os.path.join(BIN_DIR, "vembed-test-tiktoken"), path], check=True)
    os.environ["TIKTOKEN_CACHE_DIR"] = d
    yield d
    shutil.rmtree(d, ignore_errors=True)
