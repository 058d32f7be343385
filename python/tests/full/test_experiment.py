"""`vembed-lab experiment` against per-process sentence-transformers (this
venv's), and the 12-layer timing stand-in at parity with
sentence-transformers loading the same folder."""

import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import pytest
from sentence_transformers import SentenceTransformer

from conftest import CLI_BIN, HOST_BIN, LAB_BIN, MODEL_DIR, ROOT


@pytest.fixture(scope="module")
def private():
    """A private cache (with a copy of the model, which no other test's host
    maps) and a private runtime dir; the environment for `vembed`."""
    tmp = tempfile.mkdtemp(prefix="vembed-exp-")
    os.chmod(tmp, 0o700)
    model = os.path.join(tmp, "all-MiniLM-L6-v2")
    shutil.copytree(MODEL_DIR, model)
    env = {k: v for k, v in os.environ.items() if not k.startswith("VEMBED_")}
    env.update(
        VEMBED_CACHE_DIR=os.path.join(tmp, "cache"),
        VEMBED_RUNTIME_DIR=os.path.join(tmp, "run"),
        VEMBED_STATE_DIR=os.path.join(tmp, "state"),
        VEMBED_HOST_BIN=HOST_BIN,
        HF_HUB_OFFLINE="1",
    )
    yield tmp, model, env
    subprocess.run([CLI_BIN, "stop"], env=env, capture_output=True, timeout=60)
    shutil.rmtree(tmp, ignore_errors=True)


def test_the_experiment_measures_per_process_sentence_transformers(private):
    tmp, model, env = private
    corpus = os.path.join(tmp, "corpus")
    os.makedirs(corpus)
    for name in ("client.py", "aio.py", "langchain.py"):
        src = os.path.join(ROOT, "python", "src", "vembed", name)
        if os.path.exists(src):
            shutil.copy(src, corpus)
    assert os.listdir(corpus), "a corpus to index"
    out_dir = os.path.join(tmp, "report")
    run = subprocess.run(
        [LAB_BIN, "experiment", "--quick", "--json", "--out", out_dir, "--corpus", corpus,
         "--tools-model", model, "--baseline-python", sys.executable],
        env=env, capture_output=True, text=True, timeout=1800,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout)
    configs = {c["name"]: c for c in report["configs"]}
    assert list(configs) == ["separate", "unified", "per-process"]
    pp, uni = configs["per-process"], configs["unified"]
    assert pp["kind"] == "per-process" and pp["eviction_confirmed"] is True
    for s in pp["starts"]:
        m = s["memory"]
        assert m["peak_rss"] >= m["idle"]["rss"] > 0
        assert m["after_code"]["pss"] > 100 * 2**20, "sentence-transformers in-process is large"
        assert s["first_selection_ms"] > s["ready_ms"] > 0
        assert (s["resident_before"] == 0) == s["cold"] and s["resident_after"] > 0
    for k in ("tools_cold", "tools_warm", "code_cold", "code_warm", "code_after_tools"):
        assert len(pp["inference"][k]) == 3 and all(x["value"] > 0 for x in pp["inference"][k])
    agents = pp["agents"]
    assert agents["host"] is None and len(agents["agents"]) == 2
    assert agents["total_pss"] == sum(a["pss"] for a in agents["agents"])
    # The claim vembed exists for: one host for N agents beats N in-process models.
    assert uni["agents"]["total_pss"] < agents["total_pss"]
    with open(os.path.join(out_dir, "report.md")) as f:
        md = f.read()
    assert "Per-process: measured" in md and "not run" not in md
    assert os.path.isfile(os.path.join(out_dir, "chart.svg"))


# After the experiment: this test maps the stand-in into this process (through
# sentence-transformers), which would keep a cold start from evicting it.
def test_the_12_layer_stand_in_matches_sentence_transformers(private, golden):
    tmp, model, env = private
    out = subprocess.run(
        [CLI_BIN, "model", "standin", "--from", model, "--layers", "12"],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "TIMING STAND-IN" in out.stdout
    folder = os.path.join(env["VEMBED_CACHE_DIR"], "models", "vembed-standin--all-MiniLM-L12-v2-timing")
    with open(os.path.join(folder, "config.json")) as f:
        assert json.load(f)["num_hidden_layers"] == 12
    with open(os.path.join(folder, "README.md")) as f:
        assert "TIMING STAND-IN" in f.read()

    texts = [g["text"] for g in golden]
    lines = "".join(json.dumps({"text": t}) + "\n" for t in texts)
    run = subprocess.run(
        [CLI_BIN, "--unified-embedding-model", folder, "embed", "--jsonl"],
        input=lines, env=env, capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr
    ours = np.array([json.loads(l)["embedding"] for l in run.stdout.splitlines()])
    reference = SentenceTransformer(folder, device="cpu")
    assert reference[0].auto_model.config.num_hidden_layers == 12
    assert len(reference[0].auto_model.encoder.layer) == 12
    theirs = reference.encode(texts, normalize_embeddings=True)
    assert ours.shape == theirs.shape == (len(texts), 384)
    for i, t in enumerate(texts):
        c = float(ours[i] @ theirs[i] / np.linalg.norm(ours[i]) / np.linalg.norm(theirs[i]))
        assert c >= 0.9999, "cosine %f for %r" % (c, t)
    # Twelve layers are not six: the stand-in is its own model.
    six = SentenceTransformer(model, device="cpu").encode(texts[:1], normalize_embeddings=True)
    assert float(six[0] @ theirs[0]) < 0.999
    subprocess.run([CLI_BIN, "stop"], env=env, capture_output=True, timeout=60)
