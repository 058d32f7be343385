"""The Python package's numbers, measured in one run beside their baselines.

    scripts/bench-python [--rounds 3] [--json]

Each round, in turn: the Rust client (`vembed-lab bench` on the same texts, one
run for the query and one for the bulk), a Python process using the vembed
package, and a Python process using sentence-transformers in process, all on
the same model, query and 1,024 code chunks (cut by `vembed-lab bench` from this
Python's standard library). Medians over the rounds, and their ratios, are
printed; so is the load average, which says how much to trust them.

Wall-clock throughput on a shared 2-core VM moves by 10-30% between runs, so
the cost of the Python layer is also measured in CPU: the host's CPU seconds
per bulk run (the same work whichever client sends it) and the Python
client's own CPU seconds during it.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import sysconfig
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
QUERY = "find the function that validates email addresses"

WORKER = r"""
import json, os, sys, time
kind, texts_path, model_dir, requests = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
texts = [json.loads(l) for l in open(texts_path)]
t0 = time.perf_counter()
if kind == "vembed":
    import vembed
    model = vembed.SentenceTransformer("sentence-transformers/all-MiniLM-L6-v2")
else:
    from sentence_transformers import SentenceTransformer
    model = SentenceTransformer(model_dir, device="cpu")
ready_s = time.perf_counter() - t0
query = QUERY_REPR
for _ in range(20):
    model.encode(query)
lat = []
for _ in range(requests):
    t = time.perf_counter()
    v = model.encode(query)
    lat.append((time.perf_counter() - t) * 1e3)
    assert v.shape == (384,)
lat.sort()
host = None
if kind == "vembed":
    import vembed
    host = vembed.Client().status()["pid"]
def cpu_of(pid):
    f = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
host0 = cpu_of(host) if host else 0.0
self0 = os.times()
t = time.perf_counter()
out = model.encode(texts, batch_size=32)
bulk_s = time.perf_counter() - t
self1 = os.times()
host_cpu = cpu_of(host) - host0 if host else None
client_cpu = (self1.user - self0.user) + (self1.system - self0.system)
assert out.shape == (len(texts), 384)
mem = {}
for name, path in (("rss", "/proc/self/status"), ("pss", "/proc/self/smaps_rollup")):
    for line in open(path):
        key = "VmRSS:" if name == "rss" else "Pss:"
        if line.startswith(key):
            mem[name] = int(line.split()[1]) * 1024
print(json.dumps({"ready_s": ready_s, "query_p50_ms": lat[len(lat) // 2],
                  "query_p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))],
                  "bulk_chunks_per_s": len(texts) / bulk_s, **mem,
                  "bulk_host_cpu_s": host_cpu, "bulk_client_cpu_s": client_cpu,
                  "torch_loaded": "torch" in sys.modules}))
""".replace("QUERY_REPR", repr(QUERY))


def run_json(cmd, env=None):
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    if out.returncode != 0:
        raise SystemExit("%s failed:\n%s" % (" ".join(cmd), out.stderr[-3000:]))
    return json.loads(out.stdout)


def import_ms(python, module):
    """`python -X importtime -c "import module"`: the module's cumulative µs."""
    out = subprocess.run([python, "-X", "importtime", "-c", "import " + module],
                         capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise SystemExit(out.stderr[-2000:])
    for line in out.stderr.splitlines():
        parts = [p.strip() for p in line.split("|")]
        if len(parts) == 3 and parts[2] == module:
            return int(parts[1]) / 1e3
    raise SystemExit("no importtime line for " + module)


def cpu_of(pid):
    f = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def median(rows, key):
    return statistics.median(r[key] for r in rows)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--lab", default="vembed-lab")
    a = ap.parse_args()
    model_dir = os.path.expanduser("~/.cache/vembed/models/sentence-transformers--all-MiniLM-L6-v2")
    tmp = tempfile.mkdtemp(prefix="vembed-bench-")
    texts = os.path.join(tmp, "chunks.jsonl")
    stdlib = sysconfig.get_paths()["stdlib"]
    # The same 1,024 chunks vembed-lab bench uses, written for every side.
    run_json([a.lab, "bench", "--json", "--corpus", stdlib, "--bulk-texts", "1024",
              "--requests", "10", "--dump-texts", texts])
    worker = os.path.join(tmp, "worker.py")
    with open(worker, "w") as f:
        f.write(WORKER)
    load = [os.getloadavg()[0]]
    rust, ours, st = [], [], []
    for _ in range(a.rounds):
        q = run_json([a.lab, "bench", "--json", "--texts", texts, "--bulk-texts", "1",
                      "--requests", str(a.requests), "--query", QUERY])
        before = cpu_of(q["host_pid"])
        b = run_json([a.lab, "bench", "--json", "--texts", texts, "--bulk-texts", "1024",
                      "--requests", "1", "--query", QUERY])
        b["bulk_host_cpu_s"] = cpu_of(b["host_pid"]) - before
        b["single_query_p50_ms"] = q["single_query_p50_ms"]
        b["single_query_p99_ms"] = q["single_query_p99_ms"]
        rust.append(b)
        ours.append(run_json([sys.executable, worker, "vembed", texts, model_dir, str(a.requests)]))
        st.append(run_json([sys.executable, worker, "st", texts, model_dir, str(a.requests)]))
        load.append(os.getloadavg()[0])
    imports = {m: statistics.median(import_ms(sys.executable, m) for _ in range(3))
               for m in ("vembed", "sentence_transformers")}
    cpu = "unknown"
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                cpu = line.split(":", 1)[1].strip()
    except OSError:
        pass
    r = {
        "cpu": cpu, "python": platform.python_version(), "rounds": a.rounds,
        "load_avg_1m": load,
        "query_p50_ms": {"vembed_python": median(ours, "query_p50_ms"),
                         "vembed_rust_cli": median(rust, "single_query_p50_ms"),
                         "sentence_transformers": median(st, "query_p50_ms")},
        "query_p99_ms": {"vembed_python": median(ours, "query_p99_ms"),
                         "vembed_rust_cli": median(rust, "single_query_p99_ms"),
                         "sentence_transformers": median(st, "query_p99_ms")},
        "bulk_chunks_per_s": {"vembed_python": median(ours, "bulk_chunks_per_s"),
                              "vembed_rust_cli": median(rust, "bulk_chunks_per_s"),
                              "sentence_transformers": median(st, "bulk_chunks_per_s")},
        "import_ms": imports,
        "process_rss_bytes": {"vembed_python": median(ours, "rss"), "sentence_transformers": median(st, "rss")},
        "process_pss_bytes": {"vembed_python": median(ours, "pss"), "sentence_transformers": median(st, "pss")},
        "host_pss_bytes": median(rust, "host_pss_bytes"),
        "bulk_host_cpu_s": {"vembed_python": median(ours, "bulk_host_cpu_s"),
                            "vembed_rust_cli": median(rust, "bulk_host_cpu_s")},
        "bulk_python_client_cpu_s": median(ours, "bulk_client_cpu_s"),
        "rounds_detail": {"rust": rust, "python": ours, "st": st},
        "torch_loaded_by_vembed": any(o["torch_loaded"] for o in ours),
    }
    if a.json:
        print(json.dumps(r, indent=2))
        return
    q, b = r["query_p50_ms"], r["bulk_chunks_per_s"]
    print("CPU %s, Python %s, %d rounds, load average %s" % (
        cpu, r["python"], a.rounds, " ".join("%.2f" % x for x in load)))
    print("one short query, p50 / p99 ms:")
    for k in ("vembed_python", "vembed_rust_cli", "sentence_transformers"):
        print("  %-22s %6.2f / %6.2f   (%.2fx sentence-transformers)" % (
            k, q[k], r["query_p99_ms"][k], q[k] / q["sentence_transformers"]))
    print("bulk, 1,024 code chunks, encode(batch_size=32), chunks/s:")
    for k in ("vembed_python", "vembed_rust_cli", "sentence_transformers"):
        print("  %-22s %6.1f   (%.2fx sentence-transformers)" % (k, b[k], b[k] / b["sentence_transformers"]))
    hc = r["bulk_host_cpu_s"]
    print("  wall: Python %.1f%% %s than the Rust client; host CPU per run %.1f s (Python) vs %.1f s (Rust),"
          " the Python client's own CPU %.2f s" % (
        abs(100 * (1 - b["vembed_python"] / b["vembed_rust_cli"])),
        "slower" if b["vembed_python"] < b["vembed_rust_cli"] else "faster",
        hc["vembed_python"], hc["vembed_rust_cli"], r["bulk_python_client_cpu_s"]))
    im = r["import_ms"]
    print("import: vembed %.1f ms, sentence_transformers %.0f ms (%.0fx)" % (
        im["vembed"], im["sentence_transformers"], im["sentence_transformers"] / im["vembed"]))
    mem = r["process_rss_bytes"]
    print("process RSS after the run: vembed %.1f MiB, sentence-transformers %.0f MiB; PSS %.1f vs %.0f MiB"
          " (host PSS %.0f MiB, shared by every process)" % (
        mem["vembed_python"] / 2**20, mem["sentence_transformers"] / 2**20,
        r["process_pss_bytes"]["vembed_python"] / 2**20, r["process_pss_bytes"]["sentence_transformers"] / 2**20,
        r["host_pss_bytes"] / 2**20))


if __name__ == "__main__":
    main()
