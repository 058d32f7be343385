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
    """A private runtime dir for the whole session; the host starts on first use."""
    tmp = tempfile.mkdtemp(prefix="vembed-py-")
    os.chmod(tmp, 0o700)
    saved = {k: os.environ.get(k) for k in ("VEMBED_RUNTIME_DIR", "VEMBED_SOCKET", "VEMBED_HOST_BIN", "VEMBED_STATE_DIR")}
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
