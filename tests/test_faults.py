"""Faults with real process kills: nothing lost, nothing hangs, chains identical."""
from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time

import emcee
import numpy as np
import pytest

import helpers
from emcee_ipp import IPyParallelPool, MapTimeoutError, NoEnginesError
from emcee_ipp.transport import direct
from emcee_ipp.transport.base import EngineLost

HERE = pathlib.Path(__file__).parent


def _serial_and_pooled(pool, nsteps=40, kill=None):
    """Run the same sampler serially and through ``pool``; ``kill()`` fires mid-run."""
    p0 = np.random.RandomState(3).normal(size=(16, 3))
    chains = []
    for target in (None, pool):
        sampler = emcee.EnsembleSampler(16, 3, helpers.sleepy_gaussian, args=(2e-3,), pool=target)
        sampler.random_state = np.random.RandomState(9).get_state()
        timer = None
        if target is not None and kill is not None:
            timer = threading.Timer(0.5, kill)
            timer.start()
        try:
            sampler.run_mcmc(p0, nsteps)
        finally:
            if timer is not None:
                timer.cancel()
        chains.append(sampler.get_chain())
    return chains


@pytest.mark.timeout(180)
@pytest.mark.parametrize("transport", ["direct", "ipp", "ipp-client-sockets",
                                       "direct-client-computes", "ipp-client-computes"])
@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGSTOP], ids=["killed", "stopped"])
def test_engine_lost_mid_run_chain_still_identical(transport, how):
    """An engine killed (or silently stopped: a lost host) during emcee's run:
    its chunks go to the survivor (with client_computes, to the survivor or
    the client) and the chain equals the serial one. A stopped engine is
    noticed when it misses 20 heartbeats of 100 ms (2 s)."""
    with IPyParallelPool(2, transport=transport.split("-")[0],
                         client_computes=transport.endswith("client-computes")) as pool:
        if transport == "ipp-client-sockets":  # the path of a client tunnelled over SSH
            pool._transport._mux = False  # noqa: SLF001
        victim = pool.engine_pids[pool.client.ids[0]]
        try:
            serial, pooled = _serial_and_pooled(pool, kill=lambda: os.kill(victim, how))
            assert np.array_equal(serial, pooled)
            # The run may end before ipyparallel drops the engine (the direct
            # channel sees a killed engine hang up at once): wait for that.
            deadline = time.monotonic() + 10
            while pool.size != 1 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert pool.size == 1
        finally:
            if how == signal.SIGSTOP:
                os.kill(victim, signal.SIGKILL)  # ours: the pool's own engine


@pytest.mark.timeout(120)
def test_an_engine_that_stops_reading_a_large_message_is_given_up(monkeypatch):
    """The client does not block on a large send: the rest waits in an
    outbox. An engine that takes nothing of it for IO_TIMEOUT_S (stopped
    here, briefly enough to keep its heartbeat) is hung up on, its request
    reported lost; once it runs again, the next map reconnects to it."""
    monkeypatch.setattr(direct, "IO_TIMEOUT_S", 0.5)
    with IPyParallelPool(2, transport="direct") as pool:
        transport, eid = pool._transport, pool.client.ids[0]  # noqa: SLF001
        victim = pool.engine_pids[eid]
        os.kill(victim, signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            rid = transport._send(eid, {"op": "ping"}, bytes(20 << 20))  # noqa: SLF001
            assert eid in transport._outbox  # noqa: SLF001
            got: list = []
            while not got and time.monotonic() - t0 < 10:
                got = transport.wait_first([rid], 0.1)
            waited = time.monotonic() - t0
        finally:
            os.kill(victim, signal.SIGCONT)  # ours: the pool's own engine
        assert got and got[0][0] == rid and isinstance(got[0][1], EngineLost)
        assert 0.5 <= waited < 5
        assert eid not in transport._outbox and eid not in transport._sockets  # noqa: SLF001
        x = np.arange(16, dtype=float).reshape(8, 2)
        pool._policy.n_chunks = lambda n_items, n_engines: n_engines  # noqa: SLF001
        assert pool.map(helpers.gaussian, x) == [helpers.gaussian(r) for r in x]
        assert eid in transport._sockets  # noqa: SLF001  (reconnected)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("transport", ["direct", "ipp"])
def test_every_engine_gone_is_a_clear_error_not_a_hang(transport):
    with IPyParallelPool(1, transport=transport) as pool:
        victim = pool.engine_pids[pool.client.ids[0]]
        threading.Timer(0.5, os.kill, (victim, signal.SIGKILL)).start()
        t0 = time.monotonic()
        with pytest.raises(NoEnginesError, match="every engine of the pool is gone"):
            pool.map(helpers.python_hang, np.zeros((2, 2)))
        # Noticed within the heartbeat bound (2 s) plus slack for a loaded machine.
        assert time.monotonic() - t0 < 15


@pytest.mark.timeout(60)
def test_hanging_log_prob_times_out_names_engine_and_pool_recovers(pool):
    x = np.array([[-1.0, 0.0], [1.0, 0.0], [2.0, 0.0], [3.0, 0.0]])
    pool.timeout = 1.0
    try:
        t0 = time.monotonic()
        with pytest.raises(MapTimeoutError, match=r"timeout=1.0 s; engines \[\d") as info:
            pool.map(helpers.hang_if_negative, x)
        assert time.monotonic() - t0 < 3
        assert isinstance(info.value, TimeoutError)
    finally:
        pool.timeout = None
    # The hung engine was interrupted: the next map is prompt and correct.
    # It runs at once, and long enough (4 x 20 ms per engine) for a late
    # interrupt to land in it: only the chunk given up may be interrupted,
    # not the next map's work on the engine that had finished its own.
    t0 = time.monotonic()
    y = np.arange(16, dtype=float).reshape(8, 2)
    assert pool.map(helpers.gaussian_20ms, y) == [helpers.gaussian(r) for r in y]
    assert time.monotonic() - t0 < 5


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "transport, call", [("direct", "map"), ("ipp", "map"), ("direct", "split")]
)
def test_ctrl_c_in_client_is_prompt_and_leaks_nothing(transport, call):
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "interrupt_script.py"), transport, call],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=HERE,
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(1.0)  # the hanging map is under way
        sent = time.time()
        proc.send_signal(signal.SIGINT)
        outcome = json.loads(proc.stdout.readline())
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        err = proc.stderr.read()
        proc.stdout.close()
        proc.stderr.close()
    assert outcome["interrupted"], err
    assert outcome["at"] - sent < 1.0
    assert outcome["next_ok"]
    assert outcome["next_s"] < 5  # the engines were interrupted, not left hanging


@pytest.mark.timeout(60)
def test_too_few_engines_within_the_timeout_is_a_clear_error(external_cluster):
    client = external_cluster.connect_client_sync()
    try:
        t0 = time.monotonic()
        with pytest.raises(NoEnginesError, match=r"registered .* within timeout=2.0 s, 99 needed"):
            IPyParallelPool(client=client, n=99, start_timeout=2.0)
        assert time.monotonic() - t0 < 10
    finally:
        client.close()


@pytest.mark.parametrize("func", [helpers.returns_nan, helpers.returns_string])
def test_bad_log_prob_values_behave_as_serial_emcee(pool, func):
    p0 = np.abs(np.random.RandomState(0).normal(size=(8, 2))) + 0.1

    def run(target):
        sampler = emcee.EnsembleSampler(8, 2, func, pool=target)
        with pytest.raises(Exception) as info:
            sampler.run_mcmc(p0, 3)
        return info.value

    serial, pooled = run(None), run(pool)
    assert type(serial) is type(pooled)
    assert str(serial) == str(pooled)


@pytest.mark.timeout(240)
def test_ten_thousand_maps_do_not_grow_memory_or_fds(pool):
    """RSS may move by allocator slack; 8 MiB over 10,000 maps would be ~800
    bytes leaked per call, far below what any per-call leak of a message,
    socket or array (each >= 1 KiB) would show. fds must not move at all.

    jupyter_client's Session keeps the signature of every message it
    receives, up to ``digest_history_size`` (65,536, ~8.5 MiB of bytes
    objects), to refuse replays: bounded, but over 10,000 maps of the
    client's own sockets (a reply and two statuses per chunk) it grows by
    ~8.5 MiB, the slack itself. The test shrinks it to 1,000 on the client's
    sessions, so only a real leak can fill the slack.
    """
    pool.map(helpers.gaussian, np.ones((4, 3)))  # the ipp transport opens its socket
    sessions = [pool.client.session]
    if getattr(pool._transport, "_mux", None):  # noqa: SLF001 (the ipp transport's own socket)
        sessions.append(pool._transport._mux._session)  # noqa: SLF001
    sizes = [s.digest_history_size for s in sessions]
    for session in sessions:
        session.digest_history_size = 1000
    try:
        _ten_thousand_maps(pool)
    finally:
        for session, size in zip(sessions, sizes):
            session.digest_history_size = size


def _ten_thousand_maps(pool):
    x = np.random.default_rng(0).normal(size=(16, 3))
    for _ in range(500):
        pool.map(helpers.gaussian, x)
    engines_before = pool.client[:].apply_sync(helpers.process_usage)
    client_before = helpers.process_usage()
    for _ in range(10_000):
        pool.map(helpers.gaussian, x)
    client_after = helpers.process_usage()
    engines_after = pool.client[:].apply_sync(helpers.process_usage)
    slack = 8 * 2**20
    assert client_after[1] == client_before[1]
    assert client_after[0] - client_before[0] < slack
    for (rss0, fd0), (rss1, fd1) in zip(engines_before, engines_after):
        assert fd1 == fd0
        assert rss1 - rss0 < slack


@pytest.mark.timeout(240)
def test_thirty_two_engines_on_two_cores_start_and_work():
    with IPyParallelPool(32, start_timeout=180) as pool:
        assert pool.size == 32
        x = np.random.default_rng(1).normal(size=(64, 3))
        got = pool.map(helpers.slow_gaussian_with_pid, x)
        assert [g[0] for g in got] == [helpers.gaussian(r) for r in x]
        assert len({g[1] for g in got}) == 32  # every engine took part
        assert set(pool._transport._spin.values()) == {0.0}  # more engines than cores: none polls
