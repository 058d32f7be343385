"""Victor's code search on vembed against stock Victor (victor-coding's
search over the index ``victor index`` builds with sentence-transformers and
LanceDB), with Victor's own code on both sides, in one run.

    scripts/bench-victor-search [--limit 200] [--rounds 3] [--agents 4]

The labelled repository is the held-out docstring set
(benches/eval/docstring_set.py --held-out: requests, click, attrs, boltons
and more-itertools, one function per file with its docstring removed; the
query is the docstring's first paragraph, the answer that file), which no
tuning of vembed's search has seen. Both sides use all-MiniLM-L6-v2.

- Quality: MRR@10 and recall@10 over ``--limit`` queries, one process a side.
- Latency: in ``--rounds`` fresh processes a side (sides alternating), the
  first ``code search`` of the process (the repository already indexed) and
  the median of the later ones, for 8 agent-length queries.
- Memory: ``--agents`` Victor processes alive at once, each selecting tools
  for 16 requests (Victor's SemanticToolSelector) and searching code for 5
  queries; the sum of their PSS, plus the host's on the vembed side.
- Index build: ``vembed index`` through the host vs ``victor index``.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CHILD = os.path.join(HERE, "victor_search_child.py")
sys.path.insert(0, HERE)

from bench_victor import QUERIES as SELECT_QUERIES  # noqa: E402


# Agent-length queries for the latency rounds (the held-out queries are
# whole docstring paragraphs, up to 1,000 characters, whose embedding alone
# takes longer than a short query's search).
LATENCY_QUERIES = [
    "retry a failed HTTP request",
    "parse cookies from a header",
    "command line option with a default value",
    "validate an attribute on assignment",
    "split an iterable into chunks",
    "prompt the user for confirmation",
    "merge two dictionaries recursively",
    "encode a URL query string",
]


def loadavg():
    return " ".join(open("/proc/loadavg").read().split()[:3])


def cpu():
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def pss_of(pid):
    with open("/proc/%d/smaps_rollup" % pid) as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    return 0


def side_env(side, args, home):
    env = dict(os.environ, HOME=home, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", VICTOR_SKIP_ENV_FILE="1",
               TOKENIZERS_PARALLELISM="false", VICTOR_CODEBASE_EMBEDDING_MODEL=args.model_dir)
    if side == "vembed":
        env.update(VEMBED_VICTOR="1", VICTOR_CODEBASE_VECTOR_STORE="vembed")
    else:
        env.pop("VEMBED_VICTOR", None)
        env.update(VICTOR_CODEBASE_VECTOR_STORE="lancedb", VICTOR_CODEBASE_EMBEDDING_PROVIDER="sentence-transformers")
    return env


def child(side, args, home, spec, hold=False):
    env = side_env(side, args, home)
    if hold:
        env["VEMBED_HOLD"] = "1"
    return subprocess.Popen([sys.executable, CHILD, side, args.repo, json.dumps(spec)], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def result_of(p):
    """The child's JSON line (Victor may print its own lines first)."""
    while True:
        line = p.stdout.readline()
        if not line:
            err = p.stderr.read()
            sys.exit("a Victor process failed:\n%s" % err[-3000:])
        if line.startswith('{"rows"'):
            return json.loads(line)


def run_once(side, args, home, spec):
    p = child(side, args, home, spec)
    r = result_of(p)
    p.communicate()
    return r


def mrr(rows, cases):
    rr, hit = [], 0
    for row, case in zip(rows, cases):
        ranks = [i for i, p in enumerate(row["paths"][:10]) if p == case["path"]]
        rr.append(1.0 / (ranks[0] + 1) if ranks else 0.0)
        hit += bool(ranks)
    return sum(rr) / len(rr), hit / len(rr)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--repo", required=True)
    p.add_argument("--cases", required=True)
    p.add_argument("--model-dir", required=True, help="the all-MiniLM-L6-v2 folder")
    p.add_argument("--url", required=True, help="the vembed host's HTTP endpoint (tool selection)")
    p.add_argument("--vembed", required=True, help="the vembed CLI")
    p.add_argument("--limit", type=int, default=200)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--agents", type=int, default=4)
    args = p.parse_args()
    cases = [json.loads(l) for l in open(args.cases)][: args.limit]
    queries = [c["query"] for c in cases]
    home = tempfile.mkdtemp(prefix="vembed-bench-victor-search-")
    print("CPU: %s; load average at start: %s" % (cpu(), loadavg()))

    # Index both sides first (a user's repository is indexed before agents search it).
    t = time.perf_counter()
    subprocess.run([args.vembed, "index", "--rebuild", args.repo], check=True, stdout=subprocess.DEVNULL,
                   env=side_env("vembed", args, home))
    vembed_index_s = time.perf_counter() - t
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", "import sys; sys.argv=['victor','index','--path',sys.argv[1]]\n"
                          "from victor.ui.cli import app\napp()", args.repo],
                         capture_output=True, text=True, env=side_env("stock", args, home))
    stock_index_s = time.perf_counter() - t
    if out.returncode != 0:
        sys.exit("victor index failed:\n%s%s" % (out.stdout[-2000:], out.stderr[-2000:]))
    print("indexed: vembed %.1f s, victor index (sentence-transformers + LanceDB) %.1f s; load average %s"
          % (vembed_index_s, stock_index_s, loadavg()))

    # Quality: every query once, one process a side.
    quality = {}
    for side, mode in (("vembed", "semantic"), ("vembed", "hybrid"), ("stock", "semantic")):
        r = run_once(side, args, home, {"queries": queries, "mode": mode, "k": 10})
        quality[(side, mode)] = mrr(r["rows"], cases) + (r["modules"],)
        print("%s %s: MRR@10 %.3f, recall@10 %.3f, imported %s" % ((side, mode) + quality[(side, mode)]),
              file=sys.stderr)

    # Latency: fresh processes, sides alternating.
    lat = {"vembed": [], "stock": []}
    probe = LATENCY_QUERIES
    for i in range(args.rounds):
        for side in (("vembed", "stock") if i % 2 == 0 else ("stock", "vembed")):
            r = run_once(side, args, home, {"queries": probe, "mode": "semantic", "k": 10})
            ms = [row["ms"] for row in r["rows"]]
            lat[side].append((ms[0], statistics.median(ms[1:])))

    # Memory: N agents alive at once per side.
    host_pid = json.loads(subprocess.run([args.vembed, "status", "--json", "--no-spawn"], capture_output=True,
                                         text=True, check=True, env=side_env("vembed", args, home)).stdout)["pid"]
    mem = {}
    for side in ("vembed", "stock"):
        if side == "vembed":
            select = ["ollama", "all-minilm", args.url, os.path.join(home, "cache-vembed")]
        else:
            select = ["sentence-transformers", args.model_dir, args.url, os.path.join(home, "cache-stock")]
        spec = {"queries": queries[:5], "mode": "semantic", "k": 10, "select": select,
                "select_queries": SELECT_QUERIES}
        procs = [child(side, args, home, spec, hold=True) for _ in range(args.agents)]
        results = [result_of(p) for p in procs]
        total = sum(pss_of(p.pid) for p in procs)
        host = pss_of(host_pid) if side == "vembed" else 0
        mem[side] = (total, host, results[0]["modules"])
        for p in procs:
            p.communicate()

    print("\n| | Victor on vembed | stock Victor (sentence-transformers + LanceDB) | ratio |")
    print("|---|---|---|---|")
    qv, qh, qs = quality[("vembed", "semantic")], quality[("vembed", "hybrid")], quality[("stock", "semantic")]
    print("| MRR@10, %d held-out queries (semantic) | %.3f | %.3f | %.2f |" % (len(cases), qv[0], qs[0],
                                                                            qv[0] / qs[0] if qs[0] else float("inf")))
    print("| MRR@10 (vembed hybrid) | %.3f | | |" % qh[0])
    print("| recall@10 (semantic) | %.3f | %.3f | |" % (qv[1], qs[1]))
    f = lambda side, j: statistics.median(x[j] for x in lat[side])  # noqa: E731
    print("| first code search in a new process, median of %d processes (ms) | %.1f | %.1f | %.3f |"
          % (args.rounds, f("vembed", 0), f("stock", 0), f("vembed", 0) / f("stock", 0)))
    print("| later code search, median (ms) | %.1f | %.1f | %.3f |"
          % (f("vembed", 1), f("stock", 1), f("vembed", 1) / f("stock", 1)))
    (vt, vh, vm), (st, _, sm) = mem["vembed"], mem["stock"]
    print("| %d agents selecting tools and searching code, total PSS (MiB) | %.0f (agents %.0f + host %.0f) | %.0f | %.2f |"
          % (args.agents, (vt + vh) / 2**20, vt / 2**20, vh / 2**20, st / 2**20, (vt + vh) / st))
    print("| index build (s) | %.1f | %.1f | %.2f |" % (vembed_index_s, stock_index_s, vembed_index_s / stock_index_s))
    print("imported torch/lancedb: vembed side %s (quality) %s (agents); stock side %s (quality) %s (agents)"
          % (qv[2], vm, qs[2], sm))
    print("load average at end: %s" % loadavg())


if __name__ == "__main__":
    main()
