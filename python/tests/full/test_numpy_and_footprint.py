"""With numpy: arrays straight from the reply bytes. And what `import
vembed` costs a process: no torch, no transformers, a small RSS."""

import json
import subprocess
import sys

import numpy as np

from conftest import cosine


def test_vectors_are_float32_arrays(client, golden):
    e = client.embed([g["text"] for g in golden])
    assert isinstance(e.vectors, np.ndarray) and e.vectors.dtype == np.float32
    assert e.vectors.shape == (len(golden), 384)
    for g, row in zip(golden, e.vectors):
        assert cosine(row, g["embedding"]) >= 0.9999


FOOTPRINT = r"""
import json, sys
import numpy
import vembed
c = vembed.Client()
for i in range(1000):
    e = c.embed(["footprint text number %d" % i])
    assert e.vectors.shape == (1, 384)
rss = 0
with open("/proc/self/status") as f:
    for line in f:
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * 1024
print(json.dumps({"rss": rss, "modules": [m for m in ("torch", "transformers", "sentence_transformers")
                                           if m in sys.modules]}))
"""


def test_import_and_1000_embeds_stay_small_and_torch_free(host_env):
    out = subprocess.run([sys.executable, "-c", FOOTPRINT], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["modules"] == [], report
    assert report["rss"] <= 40 << 20, "RSS %.1f MB" % (report["rss"] / 2**20)
