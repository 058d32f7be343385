#!/usr/bin/env python3
"""The in-process baselines vembed is measured against: sentence-transformers
(PyTorch), ONNX Runtime running the same model exported to ONNX, or ONNX
Runtime running that export dynamically quantized to int8 (per channel, the
form sentence-transformers' `export_dynamic_quantized_onnx_model` makes).

Run it from a throwaway venv outside this repository
(`pip install sentence-transformers`, plus `onnxruntime onnx onnxscript` for
`--engine onnx` and `onnx-int8`), on the same texts as `vembed bench
--dump-texts FILE`:

    python st_baseline.py --model DIR --texts FILE [--engine torch|onnx|onnx-int8]
        [--requests 300] [--batch 32] [--threads 2]

Both engines tokenize with the model's own tokenizer, truncate at
max_seq_length, sort a bulk job by length and pad per batch of `--batch`
(as sentence-transformers' encode does), mean-pool and normalize.
Prints JSON with the same keys as `vembed bench --json`. An ONNX engine is
checked against sentence-transformers before it is timed: the least cosine
over a probe set is `parity_min_cosine`, and under 0.9999 (f32) or 0.95
(int8) the run fails.
"""
import argparse
import json
import os
import resource
import statistics
import time

t0 = time.perf_counter()
import torch  # noqa: E402
from sentence_transformers import SentenceTransformer  # noqa: E402

import_s = time.perf_counter() - t0


def kib(path, key):
    with open(path) as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    return 0


def pct(v, q):
    v = sorted(v)
    return v[round((len(v) - 1) * q)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--texts", required=True)
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--query", default="find the function that validates email addresses")
    ap.add_argument("--engine", choices=["torch", "onnx", "onnx-int8"], default="torch")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    t = time.perf_counter()
    model = SentenceTransformer(a.model, device="cpu")
    parity = None
    if a.engine in ("onnx", "onnx-int8"):
        encode, impl, parity = onnx_encoder(model, a.threads, a.engine == "onnx-int8")
    else:
        impl = f"sentence-transformers (torch {torch.__version__})"

        def encode(texts, batch):
            return model.encode(texts, batch_size=batch, normalize_embeddings=True)
    load_s = time.perf_counter() - t
    texts = [json.loads(l) for l in open(a.texts) if l.strip()]
    texts = [x if isinstance(x, str) else x["text"] for x in texts]

    for _ in range(10):
        encode([a.query], 1)
    lat = []
    for _ in range(a.requests):
        t = time.perf_counter()
        encode([a.query], 1)
        lat.append((time.perf_counter() - t) * 1e3)

    tokens = sum(min(len(model.tokenizer(x)["input_ids"]), model.max_seq_length) for x in texts)
    t = time.perf_counter()
    encode(texts, a.batch)
    bulk = time.perf_counter() - t
    with open("/proc/loadavg") as f:
        load = float(f.read().split()[0])
    print(json.dumps({
        "impl": impl,
        "threads": a.threads,
        "parity_min_cosine": parity,
        "load_avg_1m": load,
        "import_seconds": import_s,
        "load_seconds": load_s,
        "single_query_p50_ms": statistics.median(lat),
        "single_query_p99_ms": pct(lat, 0.99),
        "bulk_texts": len(texts),
        "bulk_batch": a.batch,
        "bulk_seconds": bulk,
        "bulk_texts_per_s": len(texts) / bulk,
        "bulk_tokens_per_s": tokens / bulk,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "pss_bytes": kib("/proc/self/smaps_rollup", "Pss:"),
        "rss_bytes": kib("/proc/self/status", "VmRSS:"),
    }, indent=2))


def onnx_encoder(model, threads, int8=False):
    """Exports the model's transformer to ONNX (in a temp dir), with `int8`
    quantizes its weights dynamically (int8, per channel), and returns an
    encode function running it on ONNX Runtime with mean pooling and
    normalization, a description, and the least cosine to
    sentence-transformers over a probe set."""
    import tempfile

    import numpy as np
    import onnxruntime as ort

    hf = model[0].auto_model.eval()
    tok = model.tokenizer
    max_len = model.max_seq_length
    path = os.path.join(tempfile.mkdtemp(prefix="vembed-onnx-"), "model.onnx")
    dummy = tok(["hello world"], return_tensors="pt")

    class Encoder(torch.nn.Module):
        def __init__(self, hf):
            super().__init__()
            self.hf = hf

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.hf(input_ids=input_ids, attention_mask=attention_mask,
                           token_type_ids=token_type_ids).last_hidden_state

    with torch.no_grad():
        torch.onnx.export(
            Encoder(hf),
            (dummy["input_ids"], dummy["attention_mask"], dummy["token_type_ids"]),
            path,
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=["last_hidden_state"],
            dynamic_axes={n: {0: "batch", 1: "seq"} for n in
                          ["input_ids", "attention_mask", "token_type_ids", "last_hidden_state"]},
            opset_version=17,
            dynamo=False,
        )
    if int8:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        qpath = path[:-len(".onnx")] + "-int8.onnx"
        quantize_dynamic(path, qpath, weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=["MatMul"])
        path = qpath
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])

    def run(batch):
        enc = tok(batch, padding=True, truncation=True, max_length=max_len, return_tensors="np")
        feed = {k: enc[k].astype(np.int64) for k in ["input_ids", "attention_mask", "token_type_ids"]}
        hidden = sess.run(None, feed)[0]
        mask = feed["attention_mask"][..., None].astype(np.float32)
        pooled = (hidden * mask).sum(1) / np.clip(mask.sum(1), 1e-9, None)
        return pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)

    def encode(texts, batch):
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out = [None] * len(texts)
        for s in range(0, len(order), batch):
            idx = order[s:s + batch]
            for i, v in zip(idx, run([texts[i] for i in idx])):
                out[i] = v
        return np.stack(out)

    # The export must compute what sentence-transformers computes, padding
    # included; the int8 model within what quantization costs.
    probe = ["def f(x):\n    return x + 1", "a", "socket server " * 80,
             "find the function that validates email addresses",
             "class LRUCache:\n    def get(self, key):\n        return self.items.pop(key)",
             "Returns the number of seconds since the Unix epoch, as a float."]
    ours = encode(probe, 3)
    ref = model.encode(probe, normalize_embeddings=True)
    parity = float(min((ours * ref).sum(1)))
    floor = 0.95 if int8 else 0.9999
    if parity < floor:
        raise SystemExit(f"the ONNX{' int8' if int8 else ''} model disagrees with "
                         f"sentence-transformers: cosine {parity:.5f} < {floor}")
    kind = "int8 dynamic, per channel, " if int8 else ""
    return encode, f"ONNX Runtime {ort.__version__} ({kind}exported with torch {torch.__version__})", parity


if __name__ == "__main__":
    main()
