"""One coding-agent process that embeds in-process with sentence-transformers,
as Victor does today: the per-process baseline of `vembed experiment`.

It imports sentence-transformers, loads one model (the unified model, for
tool selection and code search alike), prints {"ready": true}, and then
answers one JSON line per command on stdin (see agent.rs in the vembed
sources for the protocol), timing each inside this process.
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--tools-json", required=True)
    args = p.parse_args()
    t0 = time.perf_counter()
    import numpy as np
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(args.model, device="cpu")
    with open(args.tools_json) as f:
        tools = json.load(f)
    tool_texts = ["%s: %s" % (t["name"], t["description"]) for t in tools]
    tool_vectors = None
    out = sys.stdout
    out.write(json.dumps({"ready": True, "pid": os.getpid(), "ms": (time.perf_counter() - t0) * 1e3}) + "\n")
    out.flush()
    for line in sys.stdin:
        cmd = json.loads(line)
        t = time.perf_counter()
        try:
            op = cmd.get("op")
            if op == "tools":
                if tool_vectors is None:
                    tool_vectors = model.encode(tool_texts, normalize_embeddings=True)
                q = model.encode([cmd["query"]], normalize_embeddings=True)[0]
                scores = tool_vectors @ q
                top = np.argsort(-scores)[:5]
                _ = [tools[i]["name"] for i in top]
            elif op == "code":
                model.encode([cmd["query"]], normalize_embeddings=True)
            elif op == "embed":
                model.encode([cmd["text"]], normalize_embeddings=True)
            else:
                raise ValueError("unknown op %r" % op)
            reply = {"ok": True, "ms": (time.perf_counter() - t) * 1e3}
        except Exception as e:  # reported to the driver, which stops the run
            reply = {"ok": False, "error": "%s: %s" % (type(e).__name__, e)}
        out.write(json.dumps(reply) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
