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
import helpers
import numpy as np
import pytest

from emcee_ipp import IPyParallelPool, MapTimeoutError, NoEnginesError
from emcee_ipp.transport import direct
from emcee_ipp.transport.base import EngineLost

HERE = pathlib.Path(__file__).parent


@pytest.mark.timeout(180)
@pytest.mark.parametrize(
    "transport",
    ["direct", "ipp", "ipp-client-sockets", "direct-client-computes", "ipp-client-computes"],
)
@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGSTOP], ids=["killed", "stopped"])
def test_engine_lost_mid_run_chain_still_identical(transport, how):
    """An engine killed (or silently stopped: a lost host) during emcee's run:
    its chunks go to the survivor (with client_computes, to the survivor or
    the client) and the chain equals the serial one. A stopped engine is
    noticed when it misses 20 heartbeats of 100 ms (2 s)."""
    client_computes = transport.endswith("client-computes")
    with IPyParallelPool(
        2, transport=transport.split("-")[0], client_computes=client_computes
    ) as pool:
        if transport == "ipp-client-sockets":  # the path of a client tunnelled over SSH
            pool._transport._mux = False  # noqa: SLF001
        victim_id = pool.client.ids[0]
        victim = pool.engine_pids[victim_id]
        # The victim signals itself at its 20th walker, inside a chunk, a few
        # maps into the run; every engine takes a chunk of every map.
        log_prob = helpers.SignalsItself(victim, how, n=20)
        try:
            with helpers.chunk_policy(pool, helpers.FixedChunks(2 + client_computes)):
                helpers.assert_chain_matches_serial(pool, log_prob, 40)
            # The run may end before ipyparallel drops the engine (the direct
            # channel sees a killed engine hang up at once): wait for that. A
            # stopped engine of the pool's own cluster is then ended by the
            # pool (and replaced: tests/test_crash.py).
            deadline = time.monotonic() + 20
            while (
                victim_id in pool.client.ids or helpers.alive(victim)
            ) and time.monotonic() < deadline:
                pool.map(helpers.gaussian, np.zeros((2, 2)))  # (each map lets the pool notice)
                time.sleep(0.1)
            assert victim_id not in pool.client.ids
            assert not helpers.alive(victim)
        finally:
            if how == signal.SIGSTOP and helpers.alive(victim):
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
        with helpers.chunk_policy(pool, helpers.FixedChunks(2)):
            assert pool.map(helpers.gaussian, x) == [helpers.gaussian(r) for r in x]
        assert eid in transport._sockets  # noqa: SLF001  (reconnected)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("transport", ["direct", "ipp"])
def test_every_engine_gone_is_a_clear_error_not_a_hang(transport, ipython_dir):
    """On a cluster the pool only connected to (its own would start another
    engine: tests/test_crash.py), the last engine's death ends the map with
    NoEnginesError."""
    import ipyparallel as ipp

    cluster = ipp.Cluster(
        n=1,
        profile="emcee_ipp_test",
        cluster_id=f"gone-{transport}",
        log_level=30,
        controller_args=[  # the owned clusters' 2 s
            "--HeartMonitor.period=100",
            "--HeartMonitor.max_heartmonitor_misses=20",
        ],
    )
    client = cluster.start_and_connect_sync(activate=False)
    try:
        with IPyParallelPool(client=client, transport=transport) as pool:
            victim = pool.engine_pids[pool.client.ids[0]]
            threading.Timer(0.5, os.kill, (victim, signal.SIGKILL)).start()
            t0 = time.monotonic()
            with pytest.raises(NoEnginesError, match="every engine of the pool is gone"):
                pool.map(helpers.python_hang, np.zeros((2, 2)))
            # Noticed within the heartbeat bound plus slack for a loaded machine.
            assert time.monotonic() - t0 < 15
    finally:
        client.close()
        cluster.stop_cluster_sync()


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "transport, how, bound",
    [
        ("direct", signal.SIGKILL, 2.0),  # claimed: at once, its connection drops
        ("ipp", signal.SIGKILL, 6.0),  # claimed: 20 missed 100 ms heartbeats, 2 s
        ("direct", signal.SIGSTOP, 6.0),  # claimed: 2 s
        ("ipp", signal.SIGSTOP, 6.0),
    ],
    ids=["direct-killed", "ipp-killed", "direct-stopped", "ipp-stopped"],
)
def test_a_lost_engine_is_noticed_within_its_bound(transport, how, bound, tmp_path):
    """An engine lost while it computes a chunk (it hangs there) is noticed
    within the bound the README claims, with slack for a loaded machine: the
    map returns, its chunk rerun on the other engine, this long after the
    signal (both ends timed on this process's monotonic clock)."""
    with IPyParallelPool(2, transport=transport) as pool:
        victim = pool.engine_pids[pool.client.ids[0]]
        hangs = helpers.Hangs(tmp_path / "hung", pid=victim)
        sent = []

        def signal_once_it_hangs():
            helpers.wait_for_file(hangs.path)
            sent.append(time.monotonic())
            os.kill(victim, how)

        signaller = threading.Thread(target=signal_once_it_hangs, daemon=True)
        signaller.start()
        pool.timeout = 30.0  # if the signal never comes, the map still ends
        try:
            x = -np.ones((8, 2))
            with helpers.chunk_policy(pool, helpers.FixedChunks(2)):
                assert pool.map(hangs, x) == [helpers.gaussian(r) for r in x]
            took = time.monotonic() - sent[0]
        finally:
            signaller.join(timeout=35)
            if how == signal.SIGSTOP:
                os.kill(victim, signal.SIGKILL)  # ours: the pool's own engine
    print(f"\n{transport} {signal.Signals(how).name}: noticed in {took:.3f} s")
    assert took < bound


@pytest.mark.timeout(60)
def test_hanging_log_prob_times_out_names_engine_and_pool_recovers(pool, tmp_path):
    x = np.array([[-1.0, 0.0], [1.0, 0.0], [2.0, 0.0], [3.0, 0.0]])
    hangs = helpers.Hangs(tmp_path / "hung")
    pool.timeout = 1.0
    try:
        t0 = time.monotonic()
        with (
            helpers.chunk_policy(pool, helpers.FixedChunks(2)),
            pytest.raises(MapTimeoutError, match=r"timeout=1.0 s; engines \[\d") as info,
        ):
            pool.map(hangs, x)
        assert time.monotonic() - t0 < 3
        assert isinstance(info.value, TimeoutError)
    finally:
        pool.timeout = None
    # The next map is prompt and correct. It runs at once, and long enough
    # (4 x 20 ms per engine) for a late interrupt to land in it: only the
    # chunk given up may be interrupted, not the next map's work on the
    # engine that had finished its own.
    t0 = time.monotonic()
    y = np.arange(16, dtype=float).reshape(8, 2)
    assert pool.map(helpers.gaussian_20ms, y) == [helpers.gaussian(r) for r in y]
    assert time.monotonic() - t0 < 5
    # The hung engine was interrupted: the log-prob's frame there raised
    # KeyboardInterrupt, and the engine computes again. (Left hanging for its
    # 60 s, the direct channel would leave it out of every map meanwhile, and
    # the map above would pass on the other engine alone.)
    hung = int(helpers.wait_for_file(hangs.path))
    assert hung in pool.engine_pids.values()
    assert int(helpers.wait_for_file(hangs.path + ".interrupted", timeout=10)) == hung
    assert helpers.engine_computes(pool, hung)


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "transport, call", [("direct", "map"), ("ipp", "map"), ("direct", "split")]
)
def test_ctrl_c_in_client_is_prompt_and_leaks_nothing(transport, call, tmp_path):
    """SIGINT once the engines hang in the log-prob: KeyboardInterrupt
    within 1 s (measured here, from the signal sent to the child's line
    read), the engines' log-prob interrupted, the next map right."""
    marker = tmp_path / "hung"
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "ctrl_c_client.py"), transport, call, str(marker)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=HERE,
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        helpers.wait_for_file(marker, alive=lambda: proc.poll() is None)  # it hangs now
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        line = proc.stdout.readline().strip()
        took = time.monotonic() - sent
        outcome = json.loads(proc.stdout.readline())
        # The engines' log-prob was interrupted (before the pool closes: the
        # cluster's stop sends a SIGINT of its own).
        helpers.wait_for_file(f"{marker}.interrupted", timeout=10)
        proc.stdin.write("close\n")
        proc.stdin.flush()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        err = proc.stderr.read()
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            pipe.close()
    print(f"\n{transport}-{call}: KeyboardInterrupt {took:.3f} s after SIGINT")
    assert line == "interrupted", err
    assert took < 1.0
    assert outcome["next_ok"]
    assert outcome["next_s"] < 5


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


@pytest.mark.timeout(120)
def test_an_engine_whose_registration_the_client_never_heard_of_is_found(
    external_cluster, add_external_engine
):
    """ipyparallel's Client connects its notification socket only after the
    hub's connection reply, so an engine that registers in between is never
    announced to it, and ``Client.wait_for_engines`` waits for it forever
    (32 engines on 2 cores lost one in 1 of 5 loaded starts). Here the client
    stops listening before an engine registers, which loses its notice the
    same way; a pool on that client must still find and use it."""
    import zmq

    client = external_cluster.connect_client_sync()
    watcher = external_cluster.connect_client_sync()  # listening since before the engine
    try:
        n = len(client.ids)
        deaf = threading.Event()

        def unsubscribe():  # on the client's IO thread, which owns the socket
            client._notification_socket.setsockopt(zmq.UNSUBSCRIBE, b"")
            deaf.set()

        client._io_loop.add_callback(unsubscribe)
        assert deaf.wait(10)
        add_external_engine()
        watcher.wait_for_engines(n + 1, timeout=60, interactive=False)  # the hub has it
        assert len(client.ids) == n  # the deaf client was never told
        with IPyParallelPool(client=client, n=n + 1, start_timeout=10) as pool:
            assert pool.size == n + 1
            pids = {
                pid
                for _, pid in pool.map(helpers.slow_gaussian_with_pid, np.ones((8 * (n + 1), 2)))
            }
            assert len(pids) == n + 1
    finally:
        watcher.close()
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


SLOW_PACKAGE = """
import os
import time

from ._part import *  # noqa: F403  (binds _part here only when _part is loaded now)

if os.getpid() != {client}:
    time.sleep({seconds})  # on an engine: the import the interrupt may land in


def log_prob(x):
    return _part.SCALE * float(x @ x)  # noqa: F405
"""


@pytest.mark.timeout(120)
@pytest.mark.parametrize("transport", ["direct", "ipp"])
def test_an_interrupt_never_lands_in_an_import_on_an_engine(transport, tmp_path, monkeypatch):
    """A map times out while its engine imports the log-prob's package (its
    unpickling does). Interrupted inside that import, the engine would keep
    the package's submodule but not the package, and fail every later map
    with a NameError (once seen with scipy). The interrupt waits for the run
    to begin: the next map is right."""
    name = f"slowpkg_{os.getpid()}_{transport}"
    package = tmp_path / name
    package.mkdir()
    (package / "_part.py").write_text("SCALE = -0.5\n")
    (package / "__init__.py").write_text(SLOW_PACKAGE.format(client=os.getpid(), seconds=3.0))
    monkeypatch.syspath_prepend(str(tmp_path))  # the pool's own engines get it too
    module = __import__(name)
    x = np.arange(6.0).reshape(3, 2)
    with IPyParallelPool(1, transport=transport, ship_modules=False) as pool:
        pool.timeout = 1.0  # the engine spends 3 s importing
        with pytest.raises(MapTimeoutError):
            pool.map(module.log_prob, x)
        pool.timeout = 60.0
        assert pool.map(module.log_prob, x) == [module.log_prob(r) for r in x]
