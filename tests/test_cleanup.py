"""A pool's own cluster never outlives the process that started it."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import helpers
import pytest

from emcee_ipp import IPyParallelPool

SCRIPT = pathlib.Path(__file__).with_name("pool_owner.py")
# The reaper notices a closed pipe at once and a dead owner within 0.5 s, then
# gives SIGTERM 2 s before SIGKILL: everything is gone well within 10 s.
BOUND_S = 10.0


def _wait_gone(pids, bound=BOUND_S) -> tuple[float, list[int]]:
    t0 = time.monotonic()
    while time.monotonic() - t0 < bound:
        left = [p for p in pids if helpers.alive(p)]
        if not left:
            return time.monotonic() - t0, []
        time.sleep(0.05)
    return time.monotonic() - t0, [p for p in pids if helpers.alive(p)]


def _start_owner(mode):
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline()
    if not line:
        pytest.fail(f"owner script failed to start: {_finish(proc)}")
    try:
        info = json.loads(line)
        # controller + its schedulers + 2 engines (+ nannies): a real cluster.
        assert len(info["pids"]) >= 3, info
        # the zygote the cluster forked from, which the reaper must end too
        assert info["zygote"] in info["pids"], info
        assert all(helpers.alive(p) for p in info["pids"])
    except BaseException:
        _finish(proc)  # its reaper then stops the cluster
        raise
    return proc, info


def _finish(proc) -> str:
    """Reap the owner subprocess and close its pipes; return its stderr."""
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)
    stderr = proc.stderr.read()
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        pipe.close()
    return stderr


def _kill_leftovers(pids):
    for pid in pids:  # only processes this test's owner started
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


@pytest.mark.timeout(90)
@pytest.mark.parametrize("ending", ["SIGKILL", "SIGTERM", "exit"])
def test_owner_gone_cluster_is_stopped(ending):
    """The owner is killed (its reaper stops the cluster), or its interpreter
    exits without close(): then the owner has disarmed its reaper first
    (which would stop the cluster on its own at the pipe's EOF), so only the
    pool's exit-time clean-up can stop it, and it warns."""
    proc, info = _start_owner("exit" if ending == "exit" else "sleep")
    if ending == "exit":
        _, reaper_left = _wait_gone([info["reaper"]])  # disarmed: it exits
        assert not reaper_left
        proc.stdin.write("go\n")  # the cluster was seen alive: end now
        proc.stdin.flush()
    else:
        os.kill(proc.pid, getattr(signal, ending))
    proc.wait(timeout=30)
    stderr = _finish(proc)
    elapsed, left = _wait_gone(info["pids"] + [info["reaper"]])
    _kill_leftovers(left)
    assert not left, f"still alive {elapsed:.1f} s after the owner ended ({ending}): {left}"
    if ending == "exit":
        assert "ResourceWarning" in stderr and "never closed" in stderr, stderr


@pytest.mark.timeout(90)
def test_unclosed_pool_collected_warns_and_stops_cluster():
    proc, info = _start_owner("gc")
    try:
        assert proc.stdout.readline().strip() == "collected"
        # The owner is still alive: only the finalizer can have stopped them.
        elapsed, left = _wait_gone(info["pids"])
        assert proc.poll() is None
    finally:
        stderr = _finish(proc)
    _kill_leftovers(left)
    assert not left, f"still alive {elapsed:.1f} s after collection: {left}"
    assert "ResourceWarning" in stderr and "never closed" in stderr, stderr


@pytest.mark.timeout(90)
def test_close_cut_short_by_ctrl_c_is_finished_by_the_next_close():
    proc, info = _start_owner("close-interrupted")
    try:
        assert json.loads(proc.stdout.readline()) == {"interrupted": True}
        assert proc.stdout.readline().strip() == "closed"
        # The owner is still alive: only the second close() can have stopped them.
        elapsed, left = _wait_gone(info["pids"], bound=5.0)
        assert proc.poll() is None
    finally:
        stderr = _finish(proc)
    _kill_leftovers(left)
    assert not left, f"still alive {elapsed:.1f} s after the second close(): {left}\n{stderr}"


@pytest.mark.timeout(60)
def test_close_leaves_no_process(external_cluster):
    pool = IPyParallelPool(1)
    pids = pool._owned.pids()  # noqa: SLF001
    assert pids
    pool.close()
    elapsed, left = _wait_gone(pids, bound=5.0)
    assert not left


def test_connected_cluster_is_never_touched(external_cluster):
    client = external_cluster.connect_client_sync()
    try:
        engine_pids = client[:].apply_sync(os.getpid)
        pool = IPyParallelPool(client=client)
        assert not pool.owns_cluster
        pool.close()
        del pool
        time.sleep(0.5)
        assert all(helpers.alive(p) for p in engine_pids)
        assert len(client[:].apply_sync(os.getpid)) == len(engine_pids)
    finally:
        client.close()
