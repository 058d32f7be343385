"""Victor's codebase search on the vembed host, with Victor itself
(victor-ai 0.17.0 and victor-coding 0.13.0 from PyPI), unchanged:

- its ``code`` tool (``code search "..."``) reaches vembed's
  ``victor.tool_callables`` entry and answers with vembed's ranking;
- several Victor processes share one index build;
- with the plug-in off, victor-coding's own function answers as before;
- a host that cannot be reached is an error with vembed's reason;
- ``victor index`` with ``codebase_vector_store: vembed`` fills vembed's
  index, and a later agent process searches it without rebuilding.

None of these processes imports torch or lancedb."""

import json
import os
import re
import subprocess
import sys
import time

import pytest

from conftest import CLI_BIN

FILES = {
    "auth/passwords.py": (
        "import hashlib\n\n\n"
        "def hash_password(password, salt):\n"
        '    """Derive a storage hash from a user\'s password with PBKDF2."""\n'
        "    return hashlib.pbkdf2_hmac('sha256', password.encode(), salt, 100_000)\n\n\n"
        "def check_password(password, salt, stored):\n"
        "    return hash_password(password, salt) == stored\n"
    ),
    "auth/tokens.py": (
        "import secrets\n\n\n"
        "def new_session_token():\n"
        '    """A random token that identifies a logged-in session."""\n'
        "    return secrets.token_urlsafe(32)\n"
    ),
    "net/retry.rs": (
        "use std::time::Duration;\n\n"
        "/// Calls `f` until it succeeds, sleeping twice as long after each failure.\n"
        "pub fn retry_with_backoff<T, E>(mut f: impl FnMut() -> Result<T, E>, tries: u32) -> Result<T, E> {\n"
        "    let mut delay = Duration::from_millis(50);\n"
        "    let mut last = f();\n"
        "    for _ in 1..tries {\n"
        "        if last.is_ok() { break; }\n"
        "        std::thread::sleep(delay);\n"
        "        delay *= 2;\n"
        "        last = f();\n"
        "    }\n"
        "    last\n"
        "}\n"
    ),
    "web/cart.js": (
        "export function cartTotal(items) {\n"
        "  // Sum price times quantity over the shopping cart, then apply tax.\n"
        "  const subtotal = items.reduce((s, i) => s + i.price * i.qty, 0);\n"
        "  return subtotal * 1.2;\n"
        "}\n"
    ),
    "cmd/server.go": (
        "package main\n\n"
        'import "net/http"\n\n'
        "// healthHandler answers the load balancer's liveness probe.\n"
        "func healthHandler(w http.ResponseWriter, r *http.Request) {\n"
        "\tw.WriteHeader(http.StatusOK)\n"
        "}\n"
    ),
    "docs/notes.md": "# Notes\n\nThe billing service sends invoices on the first day of every month.\n",
}

QUERIES = [
    ("derive a storage hash from a user's password", "semantic"),
    ("retry with exponential backoff", "hybrid"),
    ("shopping cart total with tax", "semantic"),
]

# One Victor process: Victor's own `code` tool for the first search, then
# the callable Victor resolves (vembed's, by entry point) for the rest.
VICTOR = r"""
import asyncio, json, sys, time
spec = json.loads(sys.argv[1])
from victor.tools.unified._vertical_resolver import resolve_vertical_callable
from victor.tools.unified.code_tool import code_tool

async def main():
    fn, source = resolve_vertical_callable(
        "code_search", fallback_module="victor_coding.tools.code_search_tool", fallback_attr="code_search"
    )
    out = {"source": source, "calls": []}
    if spec.get("wait_until"):
        while time.time() < spec["wait_until"]:
            time.sleep(0.001)
    for i, (query, path, mode, k) in enumerate(spec["calls"]):
        t = time.perf_counter()
        if i == 0 and spec.get("tool"):
            text = await code_tool(cmd='search "%s" %s --mode %s --k %d' % (query, path, mode, k))
            out["tool_text"] = text
            result = None
        else:
            result = await fn(query=query, path=path, mode=mode, k=k)
        out["calls"].append({"ms": (time.perf_counter() - t) * 1e3, "result": result})
    out["modules"] = [m for m in ("torch", "lancedb") if sys.modules.get(m) is not None]
    print(json.dumps(out, default=str))

asyncio.run(main())
"""


def make_repo(path):
    for rel, text in FILES.items():
        p = path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    return path


def victor_env(on=True, **extra):
    env = dict(os.environ)
    env.pop("VEMBED_VICTOR", None)
    if on:
        env["VEMBED_VICTOR"] = "1"
    env.update(extra)
    return env


def run_victor(spec, env, timeout=300):
    out = subprocess.run(
        [sys.executable, "-c", VICTOR, json.dumps(spec)], capture_output=True, text=True, env=env, timeout=timeout
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def vembed_search(repo, query, mode, k):
    out = subprocess.run(
        [CLI_BIN, "search", query, "--repo", str(repo), "--mode", mode, "-k", str(k), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return [(h["path"], h["start_line"]) for h in json.loads(out.stdout)]


def indexed_lines(host_env, repo):
    """The host log's summaries of indexing jobs of ``repo``: files indexed each."""
    log = os.path.join(host_env, "state", "host.log")
    text = open(log).read() if os.path.exists(log) else ""
    pat = re.compile(r"indexed %s: IndexSummary \{[^}]*?\bindexed: (\d+)" % re.escape(str(repo)))
    return [int(n) for n in pat.findall(text)]


def wait_for_log(host_env, repo, count, limit=20.0):
    deadline = time.monotonic() + limit
    while len(indexed_lines(host_env, repo)) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return indexed_lines(host_env, repo)


def test_victors_code_tool_answers_with_vembeds_ranking(client, host_env, tmp_path):
    repo = make_repo(tmp_path / "repo").resolve()
    calls = [[q, str(repo), m, 5] for q, m in QUERIES]
    calls.append([QUERIES[0][0], str(repo / "auth"), "semantic", 5])
    r = run_victor({"calls": [calls[0]] + calls, "tool": True}, victor_env())
    assert r["source"] == "entry-point:code_search", r
    assert r["modules"] == [], "torch or lancedb imported: %s" % r["modules"]
    # Victor's own tool shows vembed's first hit, in its format.
    assert "auth/passwords.py:" in r["tool_text"].splitlines()[0], r["tool_text"][:500]
    assert "SYSTEM HINT" not in r["tool_text"], r["tool_text"][:500]
    for (query, path, mode, k), call in zip(calls, r["calls"][1:]):
        res = call["result"]
        assert res["success"] is True, res
        got = [(h["path"], h["line"]) for h in res["results"]]
        assert all(h["content"] and h["end_line"] >= h["line"] for h in res["results"]), res
        want = vembed_search(repo, query, mode, 50)
        if path.endswith("/auth"):
            assert got and all(p.startswith("auth/") for p, _ in got), got
            want = [w for w in want if w[0].startswith("auth/")]
        assert got == want[: len(got)] and len(got) == min(k, len(want)), (query, mode, got, want)
    assert r["calls"][1]["result"]["results"][0]["path"] == "auth/passwords.py"


def test_four_victor_processes_share_one_index_build(client, host_env, tmp_path):
    repo = make_repo(tmp_path / "shared").resolve()
    spec = {"calls": [[QUERIES[1][0], str(repo), "hybrid", 3]], "wait_until": time.time() + 8}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", VICTOR, json.dumps(spec)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=victor_env(),
        )
        for _ in range(4)
    ]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    hits = [[(h["path"], h["line"]) for h in r["calls"][0]["result"]["results"]] for r in results]
    assert all(h == hits[0] for h in hits) and hits[0][0][0] == "net/retry.rs", hits
    assert all(r["modules"] == [] for r in results), [r["modules"] for r in results]
    # The host ran at most as many jobs as there were processes, and only
    # one of them embedded the files: the rest joined it or found it current.
    jobs = wait_for_log(host_env, repo, 1)
    time.sleep(0.5)
    jobs = indexed_lines(host_env, repo)
    assert 1 <= len(jobs) <= 4 and jobs.count(len(FILES)) == 1 and jobs.count(0) == len(jobs) - 1, jobs
    # `vembed status` (here Client.indexes) shows the index and its four clients.
    ix = [i for i in client.indexes() if i["root"] == str(repo)]
    assert len(ix) == 1, client.indexes()
    assert set(p.pid for p in procs) <= set(ix[0]["clients"]), (ix, [p.pid for p in procs])
    assert ix[0]["files_embedded"] == len(FILES) and ix[0]["searches"] == 4, ix


def test_with_the_plug_in_off_victor_codings_function_answers(client, tmp_path):
    repo = make_repo(tmp_path / "repo").resolve()
    r = run_victor({"calls": [[QUERIES[0][0], str(repo), "semantic", 3]]}, victor_env(on=False))
    res = r["calls"][0]["result"]
    # victor-coding's own answer outside an agent's tool context, as stock Victor gets it.
    assert res["success"] is False and res["error"] == "Settings not available in tool context.", res
    r = run_victor({"calls": [[QUERIES[0][0], str(repo), "semantic", 3]] * 2, "tool": True}, victor_env(on=False))
    assert "Semantic backend unavailable (Settings not available in tool context.)" in r["tool_text"], r["tool_text"]


def test_an_unreachable_host_is_an_error_with_vembeds_reason(tmp_path):
    repo = make_repo(tmp_path / "repo").resolve()
    run = tmp_path / "run"
    run.mkdir(mode=0o700)
    env = victor_env(VEMBED_RUNTIME_DIR=str(run), VEMBED_HOST_BIN=str(tmp_path / "no-such-vembed-host"))
    env.pop("VEMBED_SOCKET", None)
    env["PATH"] = "/usr/bin:/bin"
    r = run_victor({"calls": [[QUERIES[0][0], str(repo), "semantic", 3]] * 2, "tool": True}, env)
    res = r["calls"][1]["result"]
    assert res["success"] is False and res["error"].startswith("vembed: "), res
    assert "vembed-host" in res["error"], res
    # Victor shows the reason beside its literal fallback.
    assert "Semantic backend unavailable (vembed: " in r["tool_text"], r["tool_text"][:800]


def test_victor_index_fills_vembeds_index_and_an_agent_reuses_it(client, host_env, tmp_path):
    repo = make_repo(tmp_path / "indexed").resolve()
    env = victor_env(VICTOR_CODEBASE_VECTOR_STORE="vembed")
    victor_index = (
        "import sys, atexit\n"
        "atexit.register(lambda: print('MODULES', [m for m in ('torch', 'lancedb') if sys.modules.get(m)]))\n"
        "sys.argv = ['victor', 'index', '--path', sys.argv[1]]\n"
        "from victor.ui.cli import app\n"
        "app()\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", victor_index, str(repo)], capture_output=True, text=True, env=env, timeout=600
    )
    assert out.returncode == 0, (out.stdout[-2000:], out.stderr[-3000:])
    assert "+ vembed" in out.stdout, out.stdout
    assert "MODULES []" in out.stdout, out.stdout[-2000:]
    # vembed's index of the repository is there (its default place) and searchable.
    assert vembed_search(repo, QUERIES[0][0], "semantic", 3)[0][0] == "auth/passwords.py"
    marker = json.loads((repo / ".victor" / "embeddings" / "vembed-index.json").read_text())
    assert marker["store"] == "vembed" and marker["root"] == str(repo), marker
    assert wait_for_log(host_env, repo, 1) == [len(FILES)]
    # A later agent process searches it without embedding anything again.
    r = run_victor({"calls": [[QUERIES[2][0], str(repo), "semantic", 3]]}, env)
    assert r["calls"][0]["result"]["results"][0]["path"] == "web/cart.js", r
    assert r["calls"][0]["result"]["indexed"] == 0, r
    # And Victor's own semantic search (victor-coding's CodebaseIndex) runs
    # on the vembed store: same hits, no rebuild.
    semantic = (
        "import asyncio, json, sys\n"
        "from victor.config.settings import load_settings\n"
        "from victor.core.bootstrap import bootstrap_capabilities\n"
        "bootstrap_capabilities()  # as Victor's entry points do first\n"
        "from victor.ui.commands.utils import _load_code_search_index_builder\n"
        "_get_or_build_index = _load_code_search_index_builder()\n"
        "async def main():\n"
        "    index, rebuilt = await _get_or_build_index(__import__('pathlib').Path(sys.argv[1]), load_settings())\n"
        "    hits = await index.semantic_search(sys.argv[2], max_results=3, expand_query=False)\n"
        "    print(json.dumps({'rebuilt': rebuilt, 'store': type(index.embedding_provider).__name__,\n"
        "        'hits': [[h['file_path'], h['line_number']] for h in hits],\n"
        "        'modules': [m for m in ('torch', 'lancedb') if sys.modules.get(m)]}))\n"
        "asyncio.run(main())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", semantic, str(repo), QUERIES[2][0]], capture_output=True, text=True, env=env, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    s = json.loads(out.stdout.strip().splitlines()[-1])
    assert s["store"] == "VembedVectorStore" and s["rebuilt"] is False and s["modules"] == [], s
    assert [tuple(h) for h in s["hits"]] == vembed_search(repo, QUERIES[2][0], "semantic", 3), s
    assert indexed_lines(host_env, repo).count(len(FILES)) == 1, indexed_lines(host_env, repo)


@pytest.mark.parametrize("bad", ["", "   "])
def test_an_empty_query_is_an_error_not_an_empty_success(client, tmp_path, bad):
    repo = make_repo(tmp_path / "repo").resolve()
    r = run_victor({"calls": [[bad, str(repo), "semantic", 3]]}, victor_env())
    res = r["calls"][0]["result"]
    assert res["success"] is False and "empty" in res["error"], res
