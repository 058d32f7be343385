"""Many threads, processes, coroutines and forks on one host: every answer is
its own text's embedding, and none is lost or swapped."""

import asyncio
import json
import os
import subprocess
import sys
import threading
from array import array

import vembed
from conftest import cosine

PROCESSES, THREADS, REQUESTS = 8, 4, 200


def text_for(p, t, r):
    return "process %d thread %d request %d: %s" % (p, t, r, "lorem ipsum " * (r % 5))


WORKER = r"""
import json, math, sys, threading
from array import array
import vembed
p, ref_path = int(sys.argv[1]), sys.argv[2]
THREADS, REQUESTS, DIM = %d, %d, 384
ref = array("f")
with open(ref_path, "rb") as f:
    ref.frombytes(f.read())
def text_for(p, t, r):
    return "process %%d thread %%d request %%d: %%s" %% (p, t, r, "lorem ipsum " * (r %% 5))
client = vembed.Client()
bad, done = [], [0]
lock = threading.Lock()
def cos(a, b):
    return sum(x*y for x, y in zip(a, b)) / math.sqrt(sum(x*x for x in a) * sum(y*y for y in b))
def work(t):
    for r in range(REQUESTS):
        v = client.embed([text_for(p, t, r)])[0]
        i = (t * REQUESTS + r) * DIM
        c = cos(v, ref[i:i + DIM])
        with lock:
            done[0] += 1
            if c < 0.99999:
                bad.append((t, r, c))
threads = [threading.Thread(target=work, args=(t,)) for t in range(THREADS)]
[x.start() for x in threads]
[x.join() for x in threads]
print(json.dumps({"done": done[0], "bad": bad[:5], "n_bad": len(bad)}))
""" % (THREADS, REQUESTS)


def test_8_processes_x_4_threads_x_200_requests_each_get_their_own_vector(client, tmp_path):
    refs = []
    for p in range(PROCESSES):
        ref = array("f")
        for t in range(THREADS):
            texts = [text_for(p, t, r) for r in range(REQUESTS)]
            # The reference: each text embedded alone.
            for text in texts:
                ref.extend(client.embed([text])[0])
        path = tmp_path / ("ref-%d.bin" % p)
        path.write_bytes(ref.tobytes())
        refs.append(path)
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    procs = [
        subprocess.Popen([sys.executable, str(script), str(p), str(refs[p])], stdout=subprocess.PIPE, text=True)
        for p in range(PROCESSES)
    ]
    for p, proc in enumerate(procs):
        out, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, "worker %d failed" % p
        report = json.loads(out)
        assert report["done"] == THREADS * REQUESTS, report
        assert report["n_bad"] == 0, report


def test_threads_share_one_client(client):
    texts = ["thread text %d" % i for i in range(64)]
    ref = [client.embed([t])[0] for t in texts]
    errors = []

    def work(k):
        for i in range(k, len(texts), 8):
            v = client.embed([texts[i]])[0]
            if cosine(v, ref[i]) < 0.99999:
                errors.append(i)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors


def test_100_concurrent_awaits_on_one_async_client(client):
    texts = ["async request %d about %s" % (i, "x" * (i % 13)) for i in range(100)]
    ref = [client.embed([t])[0] for t in texts]

    async def main():
        a = vembed.AsyncClient()
        got = await asyncio.gather(*[a.embed([t]) for t in texts])
        batch = await a.embed(texts)
        picks = await a.select_tools(
            os.path.join(os.environ["VEMBED_TEST_ROOT"], "examples/tools/coding-agent.json"),
            "commit the fix with a message",
            k=1,
        )
        status = await a.status()
        await a.close()
        return got, batch, picks, status

    got, batch, picks, status = asyncio.run(main())
    for i, e in enumerate(got):
        assert len(e) == 1 and cosine(e[0], ref[i]) >= 0.99999, i
    for i in range(100):
        assert cosine(batch[i], ref[i]) >= 0.99999
    assert picks[0].name == "git_commit"
    assert status["pid"] == client.hello["pid"]


def test_a_client_used_before_fork_works_in_parent_and_child(client):
    before = client.embed(["before the fork"])[0]
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        code = 1
        try:
            os.close(r)
            ok = all(cosine(client.embed(["before the fork"])[0], before) >= 0.99999 for _ in range(20))
            a = vembed.AsyncClient()
            ok = ok and len(asyncio.run(a.embed(["in the child"]))) == 1
            os.write(w, json.dumps({"ok": ok}).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    # The parent keeps using its client while the child uses its copy.
    for _ in range(20):
        assert cosine(client.embed(["before the fork"])[0], before) >= 0.99999
    _, status = os.waitpid(pid, 0)
    report = os.read(r, 1000)
    os.close(r)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
    assert json.loads(report) == {"ok": True}
