"""Victor itself (victor-ai from PyPI), unchanged, on the vembed host through
vembed.shim: its EmbeddingService gets the real vectors (never its zero
fallback) and never imports torch."""

import json
import subprocess
import sys

from conftest import ROOT

VICTOR = r"""
import asyncio, json, sys
import vembed.shim
vembed.shim.install()
from victor.storage.embeddings.service import EmbeddingService
golden = json.load(open(sys.argv[1]))["items"]
texts = [g["text"] for g in golden]
s = EmbeddingService(model_name="sentence-transformers/all-MiniLM-L6-v2", device="cpu")
one = s.embed_text_sync(texts[0], use_cache=False)
many = s.embed_batch_sync(texts)
async_one = asyncio.run(s.embed_text(texts[1], use_cache=False))
def cos(a, b):
    import numpy as np
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
print(json.dumps({
    "dimension": s.dimension,
    "one": cos(one, golden[0]["embedding"]),
    "many": min(cos(v, g["embedding"]) for v, g in zip(many, golden)),
    "shape": list(many.shape),
    "async": cos(async_one, golden[1]["embedding"]),
    "torch": [m for m in ("torch", "transformers") if m in sys.modules],
}))
"""


def test_victors_embedding_service_runs_on_vembed(host_env):
    golden = ROOT + "/tests/golden/all-MiniLM-L6-v2.json"
    out = subprocess.run([sys.executable, "-c", VICTOR, golden], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["dimension"] == 384
    assert r["one"] >= 0.9999 and r["many"] >= 0.9999 and r["async"] >= 0.9999, r
    assert r["shape"][1] == 384 and r["torch"] == [], r


def test_the_shim_runs_a_program_unchanged(host_env, tmp_path):
    prog = tmp_path / "prog.py"
    prog.write_text(
        "import sys\n"
        "from sentence_transformers import SentenceTransformer\n"
        "m = SentenceTransformer('all-MiniLM-L6-v2')\n"
        "print(m.encode(['a', 'b']).shape, 'torch' in sys.modules, sys.argv[1:])\n"
    )
    out = subprocess.run([sys.executable, "-m", "vembed.shim", str(prog), "x"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "(2, 384) False ['x']"
    bad = tmp_path / "bad.py"
    bad.write_text("from sentence_transformers import CrossEncoder\n")
    out = subprocess.run([sys.executable, "-m", "vembed.shim", str(bad)], capture_output=True, text=True)
    assert out.returncode != 0 and "cannot import name 'CrossEncoder'" in out.stderr, out.stderr
