"""A host whose models are remote (a second real vembed host's HTTP
endpoint): vectors of another dimension through the Python client, and the
typed error of a dead service while the local model goes on serving."""

import json
import os
import shutil
import subprocess
import tempfile
import urllib.request

import pytest

import vembed
from conftest import HOST_BIN, MODEL_DIR, cosine, free_port


@pytest.fixture()
def remote_host(http_host):
    """Host B, with `config` (a TOML string) and its unified model `unified`."""
    started = []

    def start(config, unified):
        tmp = tempfile.mkdtemp(prefix="vembed-remote-")
        os.chmod(tmp, 0o700)
        with open(os.path.join(tmp, "config.toml"), "w") as f:
            f.write(config)
        env = {k: v for k, v in os.environ.items() if not k.startswith("VEMBED_")}
        env.update(
            VEMBED_RUNTIME_DIR=os.path.join(tmp, "run"),
            VEMBED_STATE_DIR=os.path.join(tmp, "state"),
            VEMBED_CONFIG=os.path.join(tmp, "config.toml"),
            HF_HUB_OFFLINE="1",
        )
        proc = subprocess.Popen(
            [HOST_BIN, "--unified-embedding-model", unified],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        line = proc.stdout.readline().decode().strip()
        assert line.startswith("vembed-host ready"), (line, proc.stderr.read().decode())
        started.append((proc, tmp))
        return os.path.join(tmp, "run", "host.sock")

    yield start
    for proc, tmp in started:
        proc.terminate()
        proc.wait(timeout=60)
        shutil.rmtree(tmp, ignore_errors=True)


def table(name, url, extra=""):
    return '[remote.%s]\nprovider = "openai"\nurl = "%s/v1"\nmodel = "all-minilm"\n%s\n' % (name, url, extra)


def a_vectors(http_host, texts, dimensions):
    body = json.dumps({"model": "all-minilm", "input": texts, "dimensions": dimensions}).encode()
    req = urllib.request.Request(
        http_host.url + "/v1/embeddings", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=60) as r:
        return [d["embedding"] for d in json.load(r)["data"]]


def test_vectors_of_256_dimensions_from_a_remote_model(http_host, remote_host):
    socket = remote_host(table("short", http_host.url, 'dimensions = 256\ntokenizer = "%s"' % MODEL_DIR), "short")
    client = vembed.Client(socket, spawn=False, numpy=False)
    texts = ["find the email validator", "def parse(x): return int(x)", ""]
    e = client.embed(texts)
    assert (e.model, e.dim, len(e)) == ("short", 256, 3)
    want = a_vectors(http_host, texts, 256)
    for got, w in zip(e.vectors, want):
        assert len(got) == 256 and cosine(got, w) >= 0.99999
    again = client.embed_cached(texts)
    assert [list(v) for v in again.vectors] == [list(v) for v in client.embed_cached(texts).vectors]
    client.close()


def test_a_dead_service_is_an_upstream_error_and_the_local_model_serves(http_host, remote_host):
    dead = "http://127.0.0.1:%d" % free_port()
    config = 'codebase_embedding_model = "gone"\n\n' + table("gone", dead, "dimensions = 384")
    socket = remote_host(config, MODEL_DIR)
    client = vembed.Client(socket, spawn=False, numpy=False)
    with pytest.raises(vembed.UpstreamError) as e:
        client.embed(["fn main() {}"], role="code")
    assert e.value.code == "Upstream"
    assert "upstream unreachable" in str(e.value) and dead in str(e.value)
    assert client.embed(["still here"]).dim == 384
    (up,) = client.upstreams()
    assert (up["model"], up["url"], up["errors"]) == ("gone", dead + "/v1", 1), up
    assert "unreachable" in up["last_error"]
    client.close()
