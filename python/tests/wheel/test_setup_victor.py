"""`vembed setup victor` as a user runs it (scripts/wheel-tests): the
`vembed` command from the wheel's venv, a fresh venv with Victor (victor-ai
0.17.0 and victor-coding 0.13.0 from PyPI, no vembed, no torch) whose
`victor` command is on PATH, and a scratch HOME with Victor's own
settings.yaml in it.

After setup, a new Victor process of that venv (no VEMBED_* or VICTOR_*
variable from the test) selects tools with Victor's own SemanticToolSelector
built from its own settings, on the host's vectors, and answers Victor's
`code` tool from vembed's index, without importing torch. `--undo` leaves
settings.yaml, the config file and the venv's files as they were.

The runner sets VEMBED_SETUP_VICTOR_VENV (the fresh Victor venv) and
VEMBED_WHEEL besides the variables test_wheel.py needs."""

import hashlib
import http.server
import json
import os
import subprocess
import threading

import pytest

from test_wheel import BARE_PATH, ROOT, VENV, need_env

VICTOR_VENV = need_env("VEMBED_SETUP_VICTOR_VENV")
WHEEL = need_env("VEMBED_WHEEL")
VICTOR_PY = os.path.join(VICTOR_VENV, "bin", "python")
VEMBED = os.path.join(VENV, "bin", "vembed")
PROOF = os.path.join(ROOT, "crates", "client", "src", "cli", "setup", "proof.py")
SETTINGS = "# my Victor settings\nprovider:\n  default_provider: anthropic\n"


@pytest.fixture
def user(tmp_path):
    """A scratch HOME with Victor's settings.yaml, a runtime dir, and the
    PATH a user has: Victor's venv and the wheel's venv, nothing of the build."""
    home = tmp_path / "home"
    (home / ".victor").mkdir(parents=True)
    (home / ".victor" / "settings.yaml").write_text(SETTINGS)
    run = tmp_path / "run"
    run.mkdir(mode=0o700)
    env = {
        "HOME": str(home),
        "PATH": "%s:%s:%s" % (os.path.join(VICTOR_VENV, "bin"), os.path.join(VENV, "bin"), BARE_PATH),
        "XDG_RUNTIME_DIR": str(run),
        # The model, cached: the user's model store.
        "XDG_CACHE_HOME": os.environ.get("XDG_CACHE_HOME") or os.path.join(os.environ["HOME"], ".cache"),
        "HF_HUB_OFFLINE": "1",
        "VICTOR_SKIP_ENV_FILE": "1",
        "LANG": "C.UTF-8",
    }
    yield env, home
    subprocess.run([VEMBED, "--no-spawn", "stop"], env=env, capture_output=True)
    # Whatever a failed test left, Victor's venv goes back to no vembed.
    if os.path.exists(os.path.join(home, ".local", "state", "vembed", "setup", "victor.json")):
        subprocess.run([VEMBED, "setup", "victor", "--undo", "--force"], env=env, capture_output=True)


def snapshot(home):
    """What undo must restore: every file under HOME but vembed's own
    state and caches and Victor's entry-point cache (which Victor keys on
    the installed packages and rebuilds when they change), and every file
    of Victor's venv (name and sha256)."""
    files = {}
    skip_home = ("/.local/state/vembed", "/.cache", "/.victor/cache")
    for top, skip in ((str(home), skip_home), (VICTOR_VENV, ("__pycache__",))):
        for d, dirs, names in os.walk(top):
            if any(s in d for s in skip):
                continue
            for n in names:
                p = os.path.join(d, n)
                if os.path.isfile(p) and not p.endswith(".pyc"):
                    with open(p, "rb") as f:
                        files[p] = hashlib.sha256(f.read()).hexdigest()
    return files


def setup(env, *args, check=True):
    out = subprocess.run([VEMBED, "setup", "victor", *args], env=env, capture_output=True, text=True,
                         stdin=subprocess.DEVNULL, timeout=600)
    if check:
        assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-3000:]
    return out


def victor_process(env):
    """A new Victor process in Victor's venv, with nothing from the test's
    environment that names vembed: Victor's settings as it reads them, and
    the proof run's own findings (tool selection, code search, torch)."""
    settings = subprocess.run(
        [VICTOR_PY, "-c", "import json, os\n"
         "from victor.config.settings import load_settings\n"
         "s = load_settings()\n"
         "print(json.dumps({'tools': [s.tools.embedding_provider, s.tools.embedding_model],"
         " 'store': s.search.codebase_vector_store, 'plugin': os.environ.get('VEMBED_VICTOR')}))"],
        env=env, capture_output=True, text=True, timeout=300)
    assert settings.returncode == 0, settings.stderr[-3000:]
    proof = subprocess.run([VICTOR_PY, PROOF], env=env, capture_output=True, text=True, timeout=600)
    assert proof.returncode == 0, proof.stderr[-3000:]
    return json.loads(settings.stdout.strip().splitlines()[-1]), json.loads(proof.stdout.strip().splitlines()[-1])


def assert_on_the_host(p):
    assert p["errors"] == [], p["errors"]
    assert p["query_cosine"] >= 0.9999, p  # the host's vector, not Victor's random fallback
    assert p["picks"], p
    assert p["code"]["source"] == "entry-point:code_search", p["code"]
    assert p["code"]["text"].splitlines()[0].startswith("- auth/passwords.py:"), p["code"]["text"]
    assert p["torch"] is False and p["sentence_transformers"] == "_Shim", p


def test_setup_puts_victor_on_the_host_and_undo_puts_everything_back(user):
    env, home = user
    before = snapshot(home)
    assert not any("vembed" in os.path.basename(p) for p in before if p.startswith(VICTOR_VENV)), \
        "Victor's venv must start without vembed"

    # The plan alone writes nothing; without a terminal or --yes nothing is made.
    plan = setup(env, "--wheel", WHEEL, "--dry-run")
    assert "vembed-victor.pth" in plan.stdout and "pip install --no-deps" in plan.stdout, plan.stdout
    no = setup(env, "--wheel", WHEEL, check=False)
    assert no.returncode != 0 and "--yes" in no.stderr, no.stderr
    assert snapshot(home) == before

    out = setup(env, "--wheel", WHEEL, "--yes")
    assert "Victor 0.17.0 in %s" % VICTOR_VENV in out.stdout, out.stdout
    assert "Victor is on vembed" in out.stdout and "torch imported: false" in out.stdout, out.stdout
    assert (home / ".victor" / "settings.yaml").read_text() == SETTINGS

    settings, proof = victor_process(env)
    assert settings == {"tools": ["sentence-transformers", "sentence-transformers/all-MiniLM-L6-v2"],
                        "store": "vembed", "plugin": "1"}, settings
    assert_on_the_host(proof)
    # The host is the one the wheel put into Victor's venv.
    status = subprocess.run([VEMBED, "--no-spawn", "status", "--json"], env=env, capture_output=True, text=True)
    assert status.returncode == 0, status.stderr
    exe = os.path.realpath("/proc/%d/exe" % json.loads(status.stdout)["pid"])
    assert exe == os.path.realpath(os.path.join(VICTOR_VENV, "bin", "vembed-host")), exe

    again = setup(env, "--yes", "--no-proof")
    assert "nothing to change" in again.stdout, again.stdout

    subprocess.run([VEMBED, "--no-spawn", "stop"], env=env, capture_output=True)
    undone = setup(env, "--undo")
    assert "as it was before" in undone.stdout, undone.stdout
    assert snapshot(home) == before
    nothing = setup(env, "--undo", check=False)
    assert nothing.returncode != 0 and "nothing to undo" in nothing.stderr, nothing.stderr


def test_ollama_mode_serves_victors_ollama_address_and_undo_restores_the_config(user):
    env, home = user
    config = home / ".config" / "vembed" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text("# mine\nidle_timeout_secs = 300\n\n[remote.other]\nprovider = \"openai\"\n"
                      "url = \"http://127.0.0.1:9/v1\"\nmodel = \"m\"\n")
    before = snapshot(home)
    out = setup(env, "--mode", "ollama", "--wheel", WHEEL, "--yes")
    assert "+http_listen = \"127.0.0.1:11434\"" in out.stdout, out.stdout
    assert "Victor is on vembed" in out.stdout, out.stdout
    settings, proof = victor_process(env)
    assert settings["tools"] == ["ollama", "sentence-transformers/all-MiniLM-L6-v2"], settings
    assert_on_the_host(proof)
    subprocess.run([VEMBED, "--no-spawn", "stop"], env=env, capture_output=True)
    setup(env, "--undo")
    assert snapshot(home) == before


def test_ollama_mode_refuses_when_another_server_holds_11434(user):
    env, home = user

    class Ollama(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"Ollama is running")

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 11434), Ollama)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        before = snapshot(home)
        out = setup(env, "--mode", "ollama", "--wheel", WHEEL, "--yes", check=False)
        assert out.returncode != 0, out.stdout
        assert "127.0.0.1:11434 is held by pid %d" % os.getpid() in out.stderr, out.stderr
        assert "--mode plugin" in out.stderr, out.stderr
        assert snapshot(home) == before
    finally:
        server.shutdown()
        server.server_close()
