"""`vembed-lab bench --baseline-python`: the ONNX Runtime baselines (f32 and the
int8 dynamic, per-channel quantization) are exported from the real model,
checked against sentence-transformers before they are timed, and reported
beside vembed with ratios."""

import json
import math
import os
import subprocess
import sys
import tempfile

from conftest import LAB_BIN


def test_onnx_baselines_are_checked_then_timed(host_env):
    texts = os.path.join(tempfile.mkdtemp(prefix="vembed-bench-"), "texts.jsonl")
    with open(texts, "w") as f:
        for i in range(24):
            f.write(json.dumps("def handler_%d(request):\n    return validate(request.body, %d)" % (i, i)) + "\n")
    run = subprocess.run(
        [LAB_BIN, "bench", "--json", "--texts", texts, "--requests", "20",
         "--baseline-python", sys.executable, "--baselines", "onnx,onnx-int8"],
        capture_output=True, text=True, timeout=1200,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout)
    assert out["vembed"]["bulk_texts"] == 24
    f32, int8 = out["onnx_runtime"], out["onnx_runtime_int8"]
    assert f32["parity_min_cosine"] >= 0.9999, f32
    # Quantization costs something, within the gate, and is not the f32 model.
    assert 0.95 <= int8["parity_min_cosine"] < 0.99999, int8
    assert "int8" in int8["impl"] and "int8" not in f32["impl"]
    for b in (f32, int8):
        assert b["bulk_texts"] == 24 and b["bulk_tokens_per_s"] > 0 and b["single_query_p50_ms"] > 0
    for key in ("ratios_onnx_runtime", "ratios_onnx_runtime_int8"):
        r = out[key]
        assert all(math.isfinite(v) and v > 0 for v in r.values()), r
    # Text output names the check.
    run = subprocess.run(
        [LAB_BIN, "bench", "--texts", texts, "--requests", "5",
         "--baseline-python", sys.executable, "--baselines", "onnx-int8"],
        capture_output=True, text=True, timeout=1200,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "ONNX Runtime int8" in run.stdout and "least cosine" in run.stdout, run.stdout
