"""The platform wheel as a user installs it (scripts/wheel-tests): a fresh
venv with only the wheel and pytest, and a PATH with no cargo, no target/
and no venv bin. Every host these tests reach is one the wheel's code
started from the wheel's own binary, checked through /proc/PID/exe.

The runner sets VEMBED_WHEEL_VENV (the fresh venv), VEMBED_VICTOR_PYTHON
(Victor's venv, the wheel installed into it) and VEMBED_TEST_ROOT. A missing
one is an error, never a skip."""

import json
import math
import os
import shutil
import subprocess

import pytest


def need_env(name):
    value = os.environ.get(name)
    if not value:
        raise RuntimeError("%s is not set: run these tests through scripts/wheel-tests" % name)
    return value


VENV = need_env("VEMBED_WHEEL_VENV")
VICTOR_PYTHON = need_env("VEMBED_VICTOR_PYTHON")
ROOT = need_env("VEMBED_TEST_ROOT")
BARE_PATH = "/usr/local/bin:/usr/bin:/bin"


@pytest.fixture
def runtime(tmp_path):
    """A private runtime dir (so a host starts for this test alone) and the
    environment a user's shell would give, minus every path of the build."""
    run = tmp_path / "run"
    run.mkdir(mode=0o700)
    env = {
        "PATH": BARE_PATH,
        "HOME": os.environ["HOME"],
        "VEMBED_RUNTIME_DIR": str(run),
        "VEMBED_STATE_DIR": str(tmp_path / "state"),
        "LANG": "C.UTF-8",
    }
    for k in ("XDG_CACHE_HOME",):
        if os.environ.get(k):
            env[k] = os.environ[k]
    assert "cargo" not in env["PATH"] and "target" not in env["PATH"]
    yield env
    subprocess.run([os.path.join(VENV, "bin", "vembed"), "--no-spawn", "stop"], env=env, capture_output=True)


def host_exe(env, cli):
    out = subprocess.run([cli, "--no-spawn", "status", "--json"], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return os.path.realpath("/proc/%d/exe" % json.loads(out.stdout)["pid"])


def cosine(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def test_the_wheel_installs_both_binaries_without_the_test_fault_hooks():
    for b in ("vembed", "vembed-host"):
        path = os.path.join(VENV, "bin", b)
        assert os.path.isfile(path) and os.access(path, os.X_OK), path
    with open(os.path.join(VENV, "bin", "vembed-host"), "rb") as f:
        assert b"VEMBED_TEST_FAULT" not in f.read()
    assert shutil.which("cargo", path=BARE_PATH) is None, "cargo must not be reachable in these tests"


def test_the_console_command_embeds_through_the_bundled_host(runtime):
    env = dict(runtime, PATH=os.path.join(VENV, "bin") + ":" + BARE_PATH)
    out = subprocess.run(["vembed", "embed", "how to authenticate users?"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    row = json.loads(out.stdout.strip().splitlines()[0])
    assert len(row["embedding"]) == 384 and row["tokens"] > 0
    assert abs(math.sqrt(sum(x * x for x in row["embedding"])) - 1.0) < 1e-3
    assert host_exe(env, "vembed") == os.path.realpath(os.path.join(VENV, "bin", "vembed-host"))


GOLDEN = r"""
import json, math, sys
import vembed
golden = json.load(open(sys.argv[1]))["items"]
client = vembed.Client()
vecs = client.embed([g["text"] for g in golden]).vectors
def cos(a, b):
    return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))
print(json.dumps({"least": min(cos(list(v), g["embedding"]) for v, g in zip(vecs, golden)),
                  "n": len(vecs), "numpy": "numpy" in sys.modules}))
"""


def test_import_vembed_spawns_the_bundled_host_and_matches_sentence_transformers(runtime):
    """The golden parity check through the wheel's host, from a Python whose
    venv is not activated (its bin is not on PATH)."""
    golden = os.path.join(ROOT, "tests", "golden", "all-MiniLM-L6-v2.json")
    out = subprocess.run([os.path.join(VENV, "bin", "python"), "-c", GOLDEN, golden], env=runtime,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    r = json.loads(out.stdout.strip().splitlines()[-1])
    with open(golden) as f:
        assert r["n"] == len(json.load(f)["items"]) > 10
    assert r["least"] >= 0.9999, r
    assert r["numpy"] is False
    assert host_exe(runtime, os.path.join(VENV, "bin", "vembed")) == os.path.realpath(
        os.path.join(VENV, "bin", "vembed-host"))


def test_the_shim_runs_a_sentence_transformers_program(runtime, tmp_path):
    prog = tmp_path / "prog.py"
    prog.write_text(
        "import sys\n"
        "from sentence_transformers import SentenceTransformer\n"
        "m = SentenceTransformer('all-MiniLM-L6-v2')\n"
        "v = m.encode(['a', 'b'])\n"
        "print(len(v), len(v[0]), 'torch' in sys.modules)\n"
    )
    out = subprocess.run([os.path.join(VENV, "bin", "python"), "-m", "vembed.shim", str(prog)], env=runtime,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "2 384 False"


def test_model_fetch_and_list_through_the_console_command(runtime):
    cli = os.path.join(VENV, "bin", "vembed")
    out = subprocess.run([cli, "model", "fetch"], env=runtime, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    out = subprocess.run([cli, "model", "list"], env=runtime, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "all-MiniLM-L6-v2" in out.stdout, out.stdout + out.stderr


def test_victors_plug_in_selects_tools_on_the_wheels_host(runtime, tmp_path):
    """victor-ai 0.17.0 from PyPI with numpy and no torch, the wheel installed
    into its venv, VEMBED_VICTOR=1: Victor's own SemanticToolSelector and
    intent classifier get real vectors from the host the plug-in started."""
    env = dict(runtime, HOME=str(tmp_path), XDG_CACHE_HOME=runtime.get("XDG_CACHE_HOME")
               or os.path.join(os.environ["HOME"], ".cache"), VEMBED_VICTOR="1", HF_HUB_OFFLINE="1",
               VICTOR_SKIP_ENV_FILE="1", TOKENIZERS_PARALLELISM="false")
    select = os.path.join(ROOT, "python", "bench", "victor_select.py")
    queries = ["run the test suite and tell me which tests fail", "commit my changes with a good message"]
    out = subprocess.run([VICTOR_PYTHON, select, "sentence-transformers", "sentence-transformers/all-MiniLM-L6-v2",
                          "http://127.0.0.1:9", str(tmp_path / "cache"), json.dumps(queries)],
                         env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "failed to load" not in out.stderr, out.stderr[-3000:]
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["torch"] is False and r["shim"] == "_Shim", r
    assert abs(r["intent"]["norm"] - 1.0) < 1e-4, r  # a real vector, not Victor's zero fallback
    assert all(len(p) >= 1 for p in r["picks"]), r
    bindir = os.path.dirname(VICTOR_PYTHON)
    assert host_exe(env, os.path.join(bindir, "vembed")) == os.path.realpath(os.path.join(bindir, "vembed-host"))
    subprocess.run([os.path.join(bindir, "vembed"), "--no-spawn", "stop"], env=env, capture_output=True)
