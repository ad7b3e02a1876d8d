"""A walker that kills its engine: named, and the pool keeps its engines.

Real crashes on a real local cluster: ``os._exit``, a segfault in C code
(ctypes), a SIGKILL standing in for the out-of-memory killer, and engines
killed from outside.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import textwrap
import time

import helpers
import numpy as np
import pytest

from emcee_ipp import EngineCrashError, IPyParallelPool, RemoteLogProbError

BAD = 7  # the walker that kills its engine
NWALKERS, NDIM = 40, 3
# Naming one walker of 40 on 2 engines took 6-8 s on a quiet 2-core machine
# (the target is 20 s; benchmarks/bench_chaos.py reports it). Asserted with
# slack for a loaded one: each step waits for a new engine to boot.
NAMING_BOUND_S = 60.0


def exits_if_large(theta):
    if theta[0] > 2.5:
        os._exit(3)
    return -0.5 * float(np.sum(theta**2))


def segfaults_if_large(theta):
    if theta[0] > 2.5:
        ctypes.string_at(0)  # reads address 0: SIGSEGV
    return -0.5 * float(np.sum(theta**2))


def killed_if_large(theta):  # what the out-of-memory killer does
    if theta[0] > 2.5:
        os.kill(os.getpid(), signal.SIGKILL)
    return -0.5 * float(np.sum(theta**2))


def gaussian(theta):
    return -0.5 * float(np.sum(theta**2))


def _walkers():
    p = np.random.default_rng(1).normal(size=(NWALKERS, NDIM))
    p[:, 0] = np.clip(p[:, 0], -2.0, 2.0)
    p[BAD, 0] = 3.0
    return p


def _wait_for_size(pool, n, timeout=20.0) -> float:
    """Seconds until ``pool.size == n`` (polls the pool's own count)."""
    t0 = time.monotonic()
    while pool.size != n:
        assert time.monotonic() - t0 < timeout, f"pool.size stayed {pool.size}, not {n}"
        time.sleep(0.05)
    return time.monotonic() - t0


@pytest.fixture(scope="module", params=["direct", "ipp"])
def crash_pool(request):
    with IPyParallelPool(2, transport=request.param) as pool:
        yield pool


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "log_prob, exitcode, says",
    [
        (exits_if_large, 3, ""),
        (segfaults_if_large, -signal.SIGSEGV, "Segmentation fault"),
        (killed_if_large, -signal.SIGKILL, ""),
    ],
    ids=["exit", "segfault", "oom-kill"],
)
def test_walker_that_kills_its_engine_is_named_and_pool_keeps_its_engines(
    crash_pool, log_prob, exitcode, says
):
    p = _walkers()
    t0 = time.monotonic()
    with pytest.raises(EngineCrashError) as info:
        crash_pool.map(log_prob, p)
    took = time.monotonic() - t0
    print(f"named in {took:.2f} s ({crash_pool.transport})")
    err = info.value
    assert isinstance(err, RemoteLogProbError)
    assert np.array_equal(err.params, p[BAD])
    assert err.exitcode == exitcode
    assert says in err.stderr  # faulthandler's stack, for a segfault
    assert (
        f"exit code {exitcode}" in str(err)
        if exitcode > 0
        else signal.Signals(-exitcode).name in str(err)
    )
    assert took < NAMING_BOUND_S
    # The pool is whole again, and right: a chain identical to serial.
    print(f"back to 2 engines {_wait_for_size(crash_pool, 2):.2f} s after the error")
    p[BAD, 0] = 0.0
    assert crash_pool.map(log_prob, p) == [log_prob(x) for x in p]
    helpers.assert_chain_matches_serial(crash_pool, helpers.gaussian, 20)


@pytest.mark.timeout(120)
def test_engine_killed_from_outside_is_replaced_and_size_is_right_at_once(crash_pool):
    """A SIGKILL between maps: ``pool.size`` drops as soon as the keeper sees
    the process end (before ipyparallel's heartbeat notices), and a new
    engine takes its place within about 2 s."""
    _wait_for_size(crash_pool, 2)
    _, victim = _a_live_engine(crash_pool)
    t0 = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    dropped = _wait_for_size(crash_pool, 1, timeout=1.5)  # the heartbeat takes 2 s
    back = _wait_for_size(crash_pool, 2)
    print(
        f"size dropped after {dropped:.2f} s; replaced {time.monotonic() - t0:.2f} s after the kill"
    )
    assert time.monotonic() - t0 < 10.0  # the claim is ~2 s; slack for a loaded 2-core machine
    assert back >= 0
    # (ipyparallel lists the dead engine until its heartbeat misses; the pool does not)
    x = np.arange(12.0).reshape(4, 3)
    assert crash_pool.map(exits_if_large, x * 0.1) == [exits_if_large(r) for r in x * 0.1]


@pytest.mark.timeout(120)
def test_engine_that_stops_answering_is_replaced(crash_pool):
    """A stopped engine (SIGSTOP: alive, but deaf) misses its heartbeats; the
    pool's own cluster then kills it and starts another."""
    _wait_for_size(crash_pool, 2)
    _, victim = _a_live_engine(crash_pool)
    os.kill(victim, signal.SIGSTOP)
    try:
        x = np.linspace(-1, 1, 30).reshape(10, 3)
        assert crash_pool.map(exits_if_large, x) == [exits_if_large(r) for r in x]
        t0 = time.monotonic()
        while helpers.alive(victim):
            crash_pool.size  # noqa: B018  (each look lets the pool notice)
            crash_pool.map(exits_if_large, x)
            assert time.monotonic() - t0 < 20, "the stopped engine was never ended"
            time.sleep(0.1)
        _wait_for_size(crash_pool, 2)
    finally:
        if helpers.alive(victim):
            os.kill(victim, signal.SIGKILL)


def _a_live_engine(pool) -> tuple[int, int]:
    """(engine id, pid) of an engine whose process runs (ipyparallel lists
    dead engines until their heartbeats are missed)."""
    pool.map(gaussian, np.zeros((4, NDIM)))  # every engine prepared: its pid known
    return next(
        (e, pool.engine_pids[e])
        for e in pool.client.ids
        if e in pool.engine_pids and helpers.alive(pool.engine_pids[e])
    )


CLIENT_COMPUTES_SCRIPT = textwrap.dedent("""
    import os, sys, time
    import numpy as np
    from emcee_ipp import EngineCrashError, IPyParallelPool

    def log_prob(theta):
        if theta[0] > 2.5:
            os._exit(3)
        return -0.5 * float(np.sum(theta**2))

    p = np.random.default_rng(1).normal(size=(40, 3))
    p[:, 0] = np.clip(p[:, 0], -2.0, 2.0)
    with IPyParallelPool(2, client_computes=True, transport=sys.argv[1]) as pool:
        # In chunks of 5, the client takes the last, the two engines the
        # first two: the walker's chunk starts on an engine. (With one engine
        # back of two, the client could take chunk 1 fresh, walker 6 with it:
        # the documented risk of client_computes with a log-prob that crashes.)
        # Its retries must never run here.
        for bad in (0, 3, 6):
            end = time.monotonic() + 60
            while pool.size < 2 and time.monotonic() < end:
                time.sleep(0.05)  # the replacements of the last map's dead engines
            q = p.copy()
            q[bad, 0] = 3.0
            try:
                pool.map(log_prob, q, chunksize=5)
            except EngineCrashError as exc:
                assert exc.params[0] == 3.0, exc.params
                print("named", bad, flush=True)
        assert pool.map(log_prob, p) == [log_prob(x) for x in p]
    print("survived", flush=True)
""")


@pytest.mark.timeout(180)
@pytest.mark.parametrize("transport", ["direct", "ipp"])
def test_client_computes_never_runs_a_chunk_whose_engine_died(tmp_path, transport):
    """The user's process survives: a lost engine's chunk is retried on
    engines only, never in the client (where it would kill the process)."""
    script = tmp_path / "user_script.py"
    script.write_text(CLIENT_COMPUTES_SCRIPT)
    run = subprocess.run(
        [sys.executable, str(script), transport],
        capture_output=True,
        text=True,
        timeout=170,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    # The walker was named each time, and the process lived on.
    assert run.stdout.count("named") == 3 and "survived" in run.stdout, run.stdout + run.stderr


def _mark_initialized(folder):
    open(os.path.join(folder, f"init-{os.getpid()}"), "w").close()


class _WaitsForAReplacement:
    """Item 1 kills its engine (once); item 0 returns only once a replacement
    engine has run the initializer: its reply comes while the pool prepares
    that engine in the middle of the map (it pings it)."""

    def __init__(self, folder, first):
        self.folder, self.first = folder, first

    def __call__(self, x):
        if x[0] == 1:
            flag = os.path.join(self.folder, "killed")
            if not os.path.exists(flag):
                open(flag, "w").close()
                os.kill(os.getpid(), signal.SIGKILL)
            return 1.0
        end = time.time() + 20
        while time.time() < end:
            if set(os.listdir(self.folder)) - self.first - {"killed"}:
                return 0.0
            time.sleep(0.01)
        return -1.0


@pytest.mark.timeout(120)
@pytest.mark.parametrize("transport", ["direct", "ipp"])
def test_a_reply_that_comes_while_a_replacement_is_prepared_is_kept(tmp_path, transport):
    """(A reply read while the pool pinged a new engine was once dropped:
    the map then waited for it until its timeout.)"""
    with IPyParallelPool(
        2, transport=transport, timeout=60, initializer=_mark_initialized, initargs=(str(tmp_path),)
    ) as pool:
        first = set(os.listdir(tmp_path))
        assert len(first) == 2
        got = pool.map(
            _WaitsForAReplacement(str(tmp_path), first), np.array([[0.0], [1.0]]), chunksize=1
        )
    assert got == [0.0, 1.0]
