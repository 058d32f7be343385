#!/usr/bin/env python3
"""sentence-transformers in process: the baseline vembed is measured against.

Run it from a throwaway venv (`pip install sentence-transformers`), outside
this repository, on the same texts as `vembed bench --dump-texts FILE`:

    python st_baseline.py --model DIR --texts FILE [--requests 300] [--batch 32] [--threads 2]

Prints JSON with the same keys as `vembed bench --json`.
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
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    t = time.perf_counter()
    model = SentenceTransformer(a.model, device="cpu")
    load_s = time.perf_counter() - t
    texts = [json.loads(l) for l in open(a.texts) if l.strip()]
    texts = [x if isinstance(x, str) else x["text"] for x in texts]

    for _ in range(10):
        model.encode([a.query], normalize_embeddings=True)
    lat = []
    for _ in range(a.requests):
        t = time.perf_counter()
        model.encode([a.query], normalize_embeddings=True)
        lat.append((time.perf_counter() - t) * 1e3)

    tokens = sum(min(len(model.tokenizer(x)["input_ids"]), model.max_seq_length) for x in texts)
    t = time.perf_counter()
    model.encode(texts, batch_size=a.batch, normalize_embeddings=True)
    bulk = time.perf_counter() - t
    with open("/proc/loadavg") as f:
        load = float(f.read().split()[0])
    print(json.dumps({
        "impl": f"sentence-transformers (torch {torch.__version__})",
        "threads": a.threads,
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


if __name__ == "__main__":
    main()
