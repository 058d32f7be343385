"""Typed errors with messages that say what to do, and recovery from a dead
host. Each test that breaks something runs its own host on its own socket."""

import os
import signal
import subprocess
import sys
import tempfile
import time

import pytest

import vembed
from conftest import HOST_BIN, cosine


def private_dir():
    d = tempfile.mkdtemp(prefix="vembed-err-")
    os.chmod(d, 0o700)
    return d


def wait_until_stopped(pid):
    """Waits until every thread of `pid` is in the stopped state: kill()
    only queues SIGSTOP, and a host that answers before its threads stop
    (a reply takes about a millisecond) is not the stopped host a test
    means."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        states = []
        for tid in os.listdir("/proc/%d/task" % pid):
            try:
                with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                    states.append(f.read().rsplit(")", 1)[1].split()[0])
            except FileNotFoundError:
                pass
        if states and all(s in ("T", "t") for s in states):
            return
        time.sleep(0.01)
    raise AssertionError("pid %d did not stop within 10 s of SIGSTOP" % pid)


def run_python(code, env):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)


def test_no_host_binary_says_how_to_install_one():
    d = private_dir()
    env = {k: v for k, v in os.environ.items() if k != "VEMBED_HOST_BIN"}
    env["VEMBED_RUNTIME_DIR"] = os.path.join(d, "run")
    env["PATH"] = "/usr/bin:/bin"  # no vembed here
    out = run_python(
        "import vembed\n"
        "try:\n    vembed.Client()\n"
        "except vembed.HostUnavailable as e:\n    print('HostUnavailable:', e)\n",
        env,
    )
    assert out.returncode == 0, out.stderr
    assert "HostUnavailable:" in out.stdout, out.stdout
    assert "vembed-host was not found" in out.stdout and "VEMBED_HOST_BIN" in out.stdout
    assert "cargo build --release" in out.stdout and "pip install vembed" in out.stdout


def test_no_spawn_means_host_unavailable():
    d = private_dir()
    with pytest.raises(vembed.HostUnavailable, match="no vembed host is running"):
        vembed.Client(os.path.join(d, "host.sock"), spawn=False)


def test_a_socket_dir_others_can_write_is_refused_before_sending(tmp_path):
    d = tmp_path / "shared"
    d.mkdir()
    os.chmod(d, 0o777)
    with pytest.raises(vembed.UnsafeSocket, match="writable by other users"):
        vembed.Client(str(d / "host.sock"), spawn=False)


def test_a_huge_text_is_text_too_large_and_the_client_goes_on(client):
    with pytest.raises(vembed.TextTooLarge) as info:
        client.embed(["word " * (2 << 20)])  # 10 MiB
    assert info.value.code == "TextTooLarge" and "limit" in str(info.value)
    assert len(client.embed(["still fine"])) == 1


def test_a_host_killed_with_sigkill_is_replaced_on_the_next_call():
    d = private_dir()
    sock = os.path.join(d, "host.sock")
    c = vembed.Client(sock, host_bin=HOST_BIN)
    before = c.embed(["the same text"])[0]
    pid = c.status()["pid"]
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.02)
    after = c.embed(["the same text"])[0]
    assert cosine(before, after) >= 0.99999
    new_pid = c.status()["pid"]
    assert new_pid != pid
    c.shutdown()


def test_an_overloaded_host_says_retry_later():
    d = private_dir()
    sock = os.path.join(d, "host.sock")
    c = vembed.Client(sock, host_bin=HOST_BIN, host_args=["--max-queue-texts", "8"])
    try:
        long_texts = ["a long text to keep the queue busy %d " % i * 30 for i in range(1024)]
        with pytest.raises(vembed.Overloaded, match="retry"):
            c.embed(long_texts)
        assert len(c.embed(["fine again"])) == 1
    finally:
        c.shutdown()


def test_unknown_model_names_what_to_do(client):
    with pytest.raises(vembed.UnknownModel, match="vembed model fetch"):
        client.embed(["x"], model="no-such-org/no-such-model")


def test_a_parallel_start_gives_one_host_that_all_use():
    d = private_dir()
    env = dict(os.environ, VEMBED_RUNTIME_DIR=os.path.join(d, "run"), VEMBED_HOST_BIN=HOST_BIN)
    code = (
        "import vembed\n"
        "c = vembed.Client()\n"
        "assert len(c.embed(['parallel start'])) == 1\n"
        "print(c.hello['pid'])\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for _ in range(6)
    ]
    pids = set()
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        pids.add(int(out.strip()))
    assert len(pids) == 1, pids
    vembed.Client(os.path.join(d, "run", "host.sock"), spawn=False).shutdown()


def test_a_stopped_host_is_reported_unresponsive_not_waited_for():
    import asyncio

    d = private_dir()
    sock = os.path.join(d, "host.sock")
    quick = vembed.Timeouts(connect=0.5, request=120.0, per_text=0.0)
    c = vembed.Client(sock, host_bin=HOST_BIN, timeouts=quick)
    pid = c.status()["pid"]
    a = vembed.AsyncClient(sock, timeouts=quick)

    async def embed():
        return await a.embed(["a query"])

    loop = asyncio.new_event_loop()
    try:
        assert len(loop.run_until_complete(embed())) == 1
        os.kill(pid, signal.SIGSTOP)
        wait_until_stopped(pid)
        try:
            # With a 120 s request timeout, only the liveness check can answer this.
            with pytest.raises(vembed.Unresponsive, match="pid %d" % pid):
                c.embed(["while stopped"])
            with pytest.raises(vembed.Unresponsive, match="pid %d" % pid):
                loop.run_until_complete(embed())
        finally:
            os.kill(pid, signal.SIGCONT)
        assert len(c.embed(["after SIGCONT"])) == 1
        assert len(loop.run_until_complete(embed())) == 1
        loop.run_until_complete(a.close())
    finally:
        loop.close()
        c.shutdown()
