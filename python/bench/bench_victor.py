"""Real Victor's tool selection through vembed's HTTP endpoint against
Victor with sentence-transformers in process, in one run, sides alternating.

    scripts/bench-victor [--rounds 3]

For each side, each round starts a fresh Victor process that builds its tool
registry and SemanticToolSelector (Victor's own code, unchanged), and reports:
- start to first selection: from the parent's spawn to the first
  ``select_relevant_tools`` answer, with Victor's tool-embedding cache warm
  (a previous start wrote it, as on every start after a user's first);
- one selection: the median of ``select_relevant_tools`` over 16 distinct
  queries, each selected once (Victor's EmbeddingService caches the vectors
  of texts it has seen, so a repeated query would time its cache);
- the process's PSS after selecting.
The vembed side runs with the plug-in on (VEMBED_VICTOR=1), so that process
loads no torch at all; the host is started first (its own start is not in
Victor's time, as a user's host already runs).
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

QUERIES = [
    "read the file src/main.py and explain what it does",
    "run the test suite and tell me which tests fail",
    "search the codebase for where the database connection is opened",
    "rename the function parse_config to load_config everywhere",
    "commit my changes with a good message",
    "show me the git diff of the last commit",
    "find all TODO comments in the project",
    "write unit tests for the parser module",
    "create a new file called utils.py with a slugify helper",
    "fix the failing import in the tests directory",
    "list the files in the current directory",
    "what does the function handle_request return",
    "run the linter and fix the warnings",
    "edit the README to document the new flag",
    "find where the variable MAX_RETRIES is defined",
    "summarize the changes in this pull request",
]

CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "victor_select.py")


def loadavg():
    return open("/proc/loadavg").read().split()[:3]


def run(side, args, home):
    env = dict(os.environ, HOME=home, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", VICTOR_SKIP_ENV_FILE="1",
               TOKENIZERS_PARALLELISM="false")
    if side == "vembed":
        env["VEMBED_VICTOR"] = "1"
        argv = ["ollama", "all-minilm", args.url]
    else:
        env.pop("VEMBED_VICTOR", None)
        argv = ["sentence-transformers", args.model_dir, args.url]
    cache = os.path.join(home, "cache-" + side)
    started = time.time()
    out = subprocess.run([sys.executable, CHILD] + argv + [cache, json.dumps(QUERIES)],
                         capture_output=True, text=True, env=env, timeout=1200)
    if out.returncode != 0:
        sys.exit("%s side failed:\n%s" % (side, out.stderr[-3000:]))
    r = json.loads(out.stdout.strip().splitlines()[-1])
    return {"start_to_first": r["first"] - started, "select_ms": statistics.median(r["times"]) * 1e3,
            "pss": r["pss"], "torch": r["torch"]}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True, help="the vembed host's HTTP endpoint")
    p.add_argument("--model-dir", required=True, help="the all-MiniLM-L6-v2 folder, for sentence-transformers")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    print("CPU: %s; load average at start: %s" % (platform.processor() or open("/proc/cpuinfo").read().split("model name")[1].split("\n")[0].strip(" :\t"), " ".join(loadavg())))
    home = tempfile.mkdtemp(prefix="vembed-bench-victor-")
    # First starts write Victor's tool-embedding caches; not timed.
    for side in ("vembed", "st"):
        run(side, args, home)
    results = {"vembed": [], "st": []}
    for i in range(args.rounds):
        for side in (("vembed", "st") if i % 2 == 0 else ("st", "vembed")):
            results[side].append(run(side, args, home))
        print("round %d done, load average %s" % (i + 1, " ".join(loadavg())), file=sys.stderr)
    med = lambda side, k: statistics.median(r[k] for r in results[side])  # noqa: E731
    rows = [
        ("start to first selection (s)", "start_to_first", 1),
        ("one selection, median (ms)", "select_ms", 1),
        ("process PSS after selecting (MiB)", "pss", 2**20),
    ]
    print("\n| | Victor on vembed (HTTP, plug-in on) | Victor with sentence-transformers | ratio |")
    print("|---|---|---|---|")
    for name, key, scale in rows:
        a, b = med("vembed", key) / scale, med("st", key) / scale
        print("| %s | %.2f | %.2f | %.2f |" % (name, a, b, a / b))
    print("torch loaded: vembed side %s, sentence-transformers side %s"
          % (results["vembed"][0]["torch"], results["st"][0]["torch"]))
    print("load average at end: %s" % " ".join(loadavg()))
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
