"""A pool's own cluster is forked from a zygote (emcee_ipp/_zygote.py).

Real clusters, real kills: the controller and engines are the zygote's
children; an engine that dies is reported with its exit code and output and
replaced by another fork; with the zygote gone, engines start as
ipyparallel starts them; and opting out, or ``blas_threads=None``, starts
no zygote at all.
"""

from __future__ import annotations

import os
import signal
import time

import helpers
import numpy as np
import pytest

from emcee_ipp import EngineCrashError, IPyParallelPool
from emcee_ipp._cluster import ZYGOTE_VAR
from emcee_ipp._reaper import MARKER

BOUND_S = 30.0  # an engine replaced takes ~1 s; slack for a loaded 2-core machine


def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def _environ(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/environ", "rb") as f:
        pairs = [item.split(b"=", 1) for item in f.read().split(b"\0") if b"=" in item]
    return {k.decode(): v.decode() for k, v in pairs}


def _engine_pids(pool, n: int) -> list[int]:
    """The pids of ``n`` engines, once ``pool.size == n`` and all are prepared."""
    deadline = time.monotonic() + BOUND_S
    while pool.size != n:
        assert time.monotonic() < deadline, f"pool.size stayed {pool.size}, not {n}"
        time.sleep(0.05)
    pool.map(float, np.zeros(2 * n))  # prepares every registered engine
    return sorted(pool.engine_pids[e] for e in pool.client.ids if e in pool.engine_pids)


def _kill_and_wait_replaced(pool, victim: int) -> list[int]:
    """SIGKILL engine ``victim``; the engines' pids once another took its place."""
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + BOUND_S
    while True:
        pids = _engine_pids(pool, 2)
        if victim not in pids:
            return pids
        assert time.monotonic() < deadline, f"engine {victim} was not replaced"
        time.sleep(0.05)


def crashes(x):
    if x > 0.5:
        os.write(2, b"about to exit\n")  # onto the output file (print() is captured)
        os._exit(5)
    return x


def segfaults(x):
    if x > 0.5:
        import ctypes

        ctypes.string_at(0)
    return x


def draw() -> float:
    """A draw from numpy's global generator, where it runs. (Not
    ``np.random.random`` itself: that bound method pickles the generator.)"""
    return float(np.random.random())  # noqa: NPY002 (the legacy global one is the point)


@pytest.fixture
def pool():
    with IPyParallelPool(2) as pool:
        yield pool


@pytest.mark.timeout(120)
def test_controller_and_engines_are_forked_from_the_zygote(pool):
    zygote = pool._owned.zygote  # noqa: SLF001
    assert zygote is not None and zygote.alive()
    engines = _engine_pids(pool, 2)
    controller = pool.cluster.controller.pid
    assert [_parent(p) for p in [controller, *engines]] == [zygote.pid] * 3
    token = pool._owned.token  # noqa: SLF001
    for pid in [zygote.pid, controller, *engines]:  # what the reaper looks for
        assert _environ(pid)[MARKER] == token
        assert pid in pool._owned.pids()  # noqa: SLF001
    x = np.linspace(-1, 1, 12)
    assert pool.map(np.sin, x) == list(map(np.sin, x))
    helpers.assert_chain_matches_serial(pool, helpers.gaussian, 20)


@pytest.mark.timeout(120)
def test_forked_engines_draw_different_random_numbers(pool):
    """Forked from one process, each engine still seeds numpy's global
    generator afresh (as a started one does)."""
    _engine_pids(pool, 2)
    draws = pool.client[:].apply_sync(draw)
    assert len(set(draws)) == len(draws), draws


@pytest.mark.timeout(120)
def test_a_log_prob_importing_scipy_works_on_forked_engines(pool):
    x = np.linspace(-2, 2, 8)
    assert pool.map(helpers.scipy_gaussian, x) == [helpers.scipy_gaussian(v) for v in x]


@pytest.mark.timeout(180)
@pytest.mark.parametrize(
    "log_prob, exitcode, says",
    [(crashes, 5, "about to exit"), (segfaults, -signal.SIGSEGV, "Fatal Python error")],
    ids=["exit", "segfault"],
)
def test_dead_forked_engine_is_reported_and_replaced_by_a_fork(pool, log_prob, exitcode, says):
    zygote = pool._owned.zygote  # noqa: SLF001
    before = _engine_pids(pool, 2)
    with pytest.raises(EngineCrashError) as info:
        pool.map(log_prob, [0.0, 1.0])
    assert info.value.exitcode == exitcode
    assert says in info.value.stderr  # the tail of its output file
    after = _engine_pids(pool, 2)
    new = set(after) - set(before)
    assert new and all(_parent(p) == zygote.pid for p in new)
    assert pool.map(log_prob, [0.0, 0.25]) == [0.0, 0.25]


@pytest.mark.timeout(180)
def test_without_the_zygote_engines_start_as_ipyparallel_starts_them(pool):
    """The zygote dies (SIGKILL): the engines it forked live on; one of them
    killed is still noticed (its exit code is lost with the zygote) and
    replaced by a process started afresh; close() leaves nothing."""
    zygote = pool._owned.zygote  # noqa: SLF001
    before = _engine_pids(pool, 2)
    os.kill(zygote.pid, signal.SIGKILL)
    deadline = time.monotonic() + BOUND_S
    while zygote.alive():
        assert time.monotonic() < deadline, "the zygote's death went unnoticed"
        time.sleep(0.02)
    assert all(helpers.alive(p) for p in before)
    after = _kill_and_wait_replaced(pool, before[0])
    (new,) = set(after) - set(before)
    assert _parent(new) == os.getpid()  # Popen'd by ipyparallel's launcher
    assert _environ(new)[MARKER] == pool._owned.token  # noqa: SLF001
    keeper = pool._owned.keeper  # noqa: SLF001
    assert keeper.dead(before[0]) is not None
    helpers.assert_chain_matches_serial(pool, helpers.gaussian, 20)
    pids = pool._owned.pids()  # noqa: SLF001
    pool.close()
    assert not [p for p in pids if helpers.alive(p)]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("how", ["env", "blas_threads=None"])
def test_no_zygote_when_opted_out(monkeypatch, how):
    kwargs: dict = {}
    if how == "env":
        monkeypatch.setenv(ZYGOTE_VAR, "0")
    else:
        kwargs["blas_threads"] = None  # numpy's BLAS threads: no fork
    with IPyParallelPool(2, **kwargs) as pool:
        assert pool._owned.zygote is None  # noqa: SLF001
        engines = _engine_pids(pool, 2)
        assert [_parent(p) for p in engines] == [os.getpid()] * 2
        x = np.linspace(-1, 1, 6)
        assert pool.map(np.cos, x) == list(map(np.cos, x))
