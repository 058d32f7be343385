"""Real Victor (victor-ai from PyPI) on the vembed host over HTTP:

- its SemanticToolSelector, built from Victor's own tool registry with
  ``embedding_provider="ollama"`` and ``ollama_base_url`` at the host, picks
  the same top-5 tools in the same order as with sentence-transformers;
- with the plug-in on (``VEMBED_VICTOR=1``), a Victor process that selects
  tools and runs its intent classifier never imports torch, and the plug-in
  does nothing unless asked;
- four such processes plus the host use less memory (PSS) than one Victor
  with sentence-transformers."""

import json
import os
import subprocess
import sys

from conftest import MODEL_DIR, ROOT

QUERIES = [
    "read the file src/main.py and explain what it does",
    "run the test suite and tell me which tests fail",
    "search the codebase for where the database connection is opened",
    "rename the function parse_config to load_config everywhere",
    "commit my changes with a good message",
    "show me the git diff of the last commit",
    "create a new file called utils.py with a slugify helper",
    "find all TODO comments in the project",
    "fix the failing import in the tests directory",
    "list the files in the current directory",
    "refactor this class to use dependency injection",
    "what does the function handle_request return",
    "install the requests package and add it to requirements",
    "run the linter and fix the warnings",
    "search the web for the latest release notes of Django",
    "edit the README to document the new flag",
    "delete the unused helper functions in helpers.py",
    "show the structure of the project as a tree",
    "find where the variable MAX_RETRIES is defined",
    "write unit tests for the parser module",
    "check the build for type errors",
    "summarize the changes in this pull request",
    "open a shell and run make",
    "look up the documentation of the os.path module",
]

SELECT = os.path.join(ROOT, "python", "bench", "victor_select.py")


def victor_env(http_host, tmp_path, **extra):
    env = dict(http_host.env, HOME=str(tmp_path), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               VICTOR_SKIP_ENV_FILE="1", TOKENIZERS_PARALLELISM="false")
    env.update(extra)
    return env


def run_select(env, provider, model, url, cache, queries=QUERIES):
    out = subprocess.run(
        [sys.executable, SELECT, provider, model, url, str(cache), json.dumps(queries)],
        capture_output=True, text=True, env=env, timeout=900,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_victors_tool_selector_over_ollama_http_picks_as_sentence_transformers(http_host, tmp_path):
    env = victor_env(http_host, tmp_path)
    ours = run_select(env, "ollama", "all-minilm", http_host.url, tmp_path / "c1")
    ref = run_select(env, "sentence-transformers", MODEL_DIR, http_host.url, tmp_path / "c2")
    assert ours["torch"] is False and ref["torch"] is True
    same = [i for i, (a, b) in enumerate(zip(ours["picks"], ref["picks"])) if a == b]
    differ = [(QUERIES[i], ours["picks"][i], ref["picks"][i]) for i in range(len(QUERIES)) if i not in same]
    assert all(len(p) >= 1 for p in ours["picks"]), ours["picks"]
    assert len(same) >= 20, differ
    print("identical top-5 for %d of %d requests; differ: %s" % (len(same), len(QUERIES), differ))


def test_the_victor_plugin_keeps_torch_out(http_host, tmp_path):
    env = victor_env(http_host, tmp_path, VEMBED_VICTOR="1")
    r = run_select(env, "ollama", "all-minilm", http_host.url, tmp_path / "c", QUERIES[:3])
    assert r["torch"] is False, r
    assert r["shim"] == "_Shim", r
    assert r["intent"]["model"] == "sentence-transformers/all-MiniLM-L6-v2", r
    assert abs(r["intent"]["norm"] - 1.0) < 1e-4, r  # a real vector, not Victor's zero fallback
    assert r["intent"]["tools"] > 20


def test_the_victor_plugin_is_off_unless_asked(http_host, tmp_path):
    prog = (
        "import json, sys\n"
        "from victor.core.bootstrap import bootstrap_container\n"
        "bootstrap_container()\n"
        "import vembed.victor\n"
        "print(json.dumps({'shim': 'sentence_transformers' in sys.modules, 'hook': vembed.victor.bootstrap() is None}))\n"
    )
    env = victor_env(http_host, tmp_path)
    env.pop("VEMBED_VICTOR", None)
    out = subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"shim": False, "hook": True}
    # The entry point is registered, so Victor finds it.
    from importlib.metadata import entry_points

    eps = [e.value for e in entry_points(group="victor.bootstrap_services")]
    assert "vembed.victor:bootstrap" in eps, eps


def pss(pid):
    with open("/proc/%d/smaps_rollup" % pid) as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no Pss for %d" % pid)


def test_four_victors_on_vembed_use_less_memory_than_one_with_sentence_transformers(http_host, tmp_path):
    def start(env, provider, model, cache):
        p = subprocess.Popen(
            [sys.executable, SELECT, provider, model, http_host.url, str(cache), json.dumps(QUERIES[:2])],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            env=dict(env, VEMBED_HOLD="1"),
        )
        line = p.stdout.readline()
        assert line, "a Victor process died"
        return p, json.loads(line)

    procs = []
    try:
        for i in range(4):
            env = victor_env(http_host, tmp_path / ("v%d" % i), VEMBED_VICTOR="1")
            (tmp_path / ("v%d" % i)).mkdir()
            p, r = start(env, "ollama", "all-minilm", tmp_path / ("c%d" % i))
            assert r["torch"] is False
            procs.append(p)
        ours = sum(pss(p.pid) for p in procs) + pss(http_host.proc.pid)
        (tmp_path / "st").mkdir()
        st, r = start(victor_env(http_host, tmp_path / "st"), "sentence-transformers", MODEL_DIR, tmp_path / "cst")
        procs.append(st)
        assert r["torch"] is True
        theirs = pss(st.pid)
    finally:
        for p in procs:
            p.stdin.close()
            p.wait(timeout=60)
    print("PSS: 4 Victors on vembed + host %.0f MiB; 1 Victor with sentence-transformers %.0f MiB"
          % (ours / 2**20, theirs / 2**20))
    assert ours < theirs, (ours, theirs)
