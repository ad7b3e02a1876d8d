"""The direct channel: authenticated, bound to the cluster's interface, falls back."""

from __future__ import annotations

import logging
import pickle
import socket
import sys
import threading
import time

import helpers
import numpy as np
import pytest

from emcee_ipp import IPyParallelPool, MapTimeoutError, RemoteLogProbError
from emcee_ipp.transport import DirectUnavailable, _frames, direct
from emcee_ipp.transport.base import EngineLost
from emcee_ipp.transport.direct import open_connection

CLOSED = "closed"  # what _outcome returns when the engine hung up


def open_session(url, key):
    """A connection to an engine's direct channel, its session opened as a
    pool opens one (the hellos); returns ``(socket, session)``."""
    sock = open_connection(url, 10.0)
    session, hello = _frames.hello(key)
    _frames.send(sock, hello)
    session.confirm(_frames.recv(sock))
    return sock, session


def outcome(sock, wait_s=10.0):
    """What the engine did with the last message sent on ``sock``: its reply,
    or CLOSED if it hung up. Fails the test if it did neither within
    ``wait_s`` (a message ignored is not a message refused)."""
    sock.settimeout(wait_s)
    try:
        reply = _frames.recv(sock)
    except ConnectionResetError:
        return CLOSED
    except TimeoutError:
        pytest.fail(f"the engine neither answered nor hung up within {wait_s} s")
    return CLOSED if reply is None else reply


def _evil_request(path):
    """``(header, *parts)`` of a request whose first object loaded on the
    engine (an object its items name) creates ``path`` when unpickled."""
    header = {
        "id": "forged",
        "op": "eval",
        "token": "t",
        "payload": False,
        "kind": "packed",
        "count": 0,
        "objects": ["evil"],
    }
    return header, b"", pickle.dumps(helpers.CreatesFile(str(path)))


def _engine_urls(pool):
    """Every URL each engine serves on (``unix:@...`` where Linux, and ``tcp://``)."""
    return pool._transport._urls  # noqa: SLF001


@pytest.mark.parametrize("route", ["unix", "tcp"])
def test_forged_message_is_dropped_and_never_unpickled(split_pool, tmp_path, route):
    eid = split_pool.client.ids[0]
    urls = [u for u in _engine_urls(split_pool)[eid] if u.startswith(route)]
    if not urls:
        assert route == "unix" and not sys.platform.startswith("linux")
        pytest.skip("engines serve Unix sockets on Linux only")
    url, key = urls[0], split_pool.client.session.key
    before = split_pool.client[eid].apply_sync(helpers.direct_rejected)

    # Each in a session opened with the cluster's key, stamped as the
    # session's next message: only the signature is wrong.
    forged = tmp_path / "forged"
    sock, session = open_session(url, key)
    with sock:
        stamp = _frames.STAMP.pack(session.id, session.sent)
        _frames.send(sock, _frames.pack(b"not the cluster key", stamp, *_evil_request(forged)))
        assert outcome(sock) == CLOSED
    unsigned = tmp_path / "unsigned"
    sock, session = open_session(url, key)
    with sock:
        frame = session.pack(*_evil_request(unsigned))
        _frames.send(sock, [b"\0" * _frames.SIG_BYTES, *frame[1:]])
        assert outcome(sock) == CLOSED
    # Hung up on, so done with both: had either been loaded, its file would be there.
    assert not forged.exists() and not unsigned.exists()
    assert split_pool.client[eid].apply_sync(helpers.direct_rejected) == before + 2

    # Control: the same message signed with the cluster's key is unpickled,
    # so the two above were stopped by the signature, nothing else.
    signed_ok = tmp_path / "signed"
    sock, session = open_session(url, key)
    with sock:
        _frames.send(sock, session.pack(*_evil_request(signed_ok)))
        assert outcome(sock) != CLOSED and signed_ok.exists()
    # The pool still works after all this.
    x = np.ones((6, 2))
    assert split_pool.map(helpers.gaussian, x) == [-1.0] * 6


def test_channel_binds_only_the_clusters_interface(split_pool):
    for urls in _engine_urls(split_pool).values():
        tcp = [u for u in urls if u.startswith("tcp://")]
        assert len(tcp) == 1 and tcp[0].startswith("tcp://127.0.0.1:"), urls
        # Else only an abstract Unix socket: no file, this network namespace only.
        assert all(u.startswith("unix:@emcee_ipp-") for u in urls if u not in tcp), urls


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Unix sockets on Linux only")
def test_engines_on_the_clients_machine_are_reached_by_unix_socket(split_pool):
    routes = split_pool._transport.routes  # noqa: SLF001
    assert set(routes) == set(split_pool.client.ids)
    for eid, url in routes.items():
        assert url.startswith("unix:@") and url == _engine_urls(split_pool)[eid][0]


@pytest.mark.timeout(60)
def test_a_large_message_goes_out_while_the_client_waits_and_keeps_its_order(split_pool):
    transport, eid = split_pool._transport, split_pool.client.ids[0]  # noqa: SLF001
    first = transport._send(eid, {"op": "ping"}, bytes(20 << 20))  # noqa: SLF001
    assert eid in transport._outbox  # noqa: SLF001  (no socket takes 20 MB at once)
    second = transport._send(eid, {"op": "ping"})  # noqa: SLF001  (queued behind it)
    replies: dict = {}
    while len(replies) < 2:
        replies.update(transport.wait_first([first, second], 1.0))
    assert set(replies) == {first, second}
    # Out of order, the engine would have failed the signature and hung up.
    assert not any(isinstance(reply, EngineLost) for reply in replies.values())
    assert all(reply[0] == "pong" for reply in replies.values())
    assert eid not in transport._outbox  # noqa: SLF001
    x = np.arange(12, dtype=float).reshape(6, 2)
    assert split_pool.map(helpers.gaussian, x) == [helpers.gaussian(r) for r in x]


@pytest.mark.timeout(60)
def test_late_reply_never_answers_the_next_call(pool):
    # The log-prob sleeps 20 ms per walker: 40 walkers cannot finish in 0.2 s.
    x = np.zeros((40, 2))
    dropped = pool._transport.dropped  # noqa: SLF001
    pool.timeout = 0.2
    try:
        with pytest.raises(MapTimeoutError, match="timeout=0.2"):
            pool.map(helpers.gaussian_20ms, x)
    finally:
        pool.timeout = None
    # The engines still work through the old chunks; their late replies must
    # be dropped, and this call must get its own answers.
    y = np.arange(12, dtype=float).reshape(6, 2)
    assert pool.map(helpers.gaussian, y) == [helpers.gaussian(r) for r in y]
    assert pool.map(helpers.gaussian, 2 * y) == [helpers.gaussian(r) for r in 2 * y]
    if dropped is not None:  # the stale replies did arrive, and were thrown away
        assert pool._transport.dropped > dropped  # noqa: SLF001


def test_bad_transport_name_is_refused():
    with pytest.raises(ValueError, match="transport='fast'.*auto, direct, ipp"):
        IPyParallelPool(1, transport="fast")


@pytest.mark.timeout(120)
def test_unreachable_engines_fall_back_or_fail_clearly(external_cluster, caplog):
    client = external_cluster.connect_client_sync()
    try:
        # Make the engine advertise an address where nothing listens.
        dead = ["unix:@emcee_ipp-nobody-listens", "tcp://127.0.0.1:9"]
        old = helpers.remotely(client[:], helpers.point_direct_server_at, dead)
        try:
            with pytest.raises(DirectUnavailable, match="did not answer.*transport='ipp'"):
                IPyParallelPool(client=client, transport="direct")
            with caplog.at_level(logging.WARNING, logger="emcee_ipp"):
                t0 = time.monotonic()
                with IPyParallelPool(client=client, transport="auto") as p:
                    fell_back = time.monotonic() - t0
                    assert p.transport == "ipp"
                    assert p.map(helpers.gaussian, np.ones((3, 2))) == [-1.0] * 3
            assert "uses ipyparallel messages" in caplog.text
            assert fell_back < direct.PING_TIMEOUT_S  # refused at once: no wait
            # An address that takes the connection but never answers: "auto"
            # waits PING_TIMEOUT_S (3 s) for the engine's hello, then falls
            # back. (Slack above it for a loaded 2-core machine.)
            with socket.create_server(("127.0.0.1", 0)) as silent:
                port = silent.getsockname()[1]
                helpers.remotely(
                    client[:], helpers.point_direct_server_at, [f"tcp://127.0.0.1:{port}"]
                )
                t0 = time.monotonic()
                with IPyParallelPool(client=client, transport="auto") as p:
                    fell_back = time.monotonic() - t0
                    assert p.transport == "ipp"
            print(f"auto fell back in {fell_back:.2f} s from a silent address")
            assert direct.PING_TIMEOUT_S <= fell_back < direct.PING_TIMEOUT_S + 7.0
        finally:
            for eid, url in zip(client.ids, old):
                helpers.remotely(client[eid], helpers.point_direct_server_at, url)
    finally:
        client.close()


def test_engines_poll_only_where_they_fit_their_hosts_cores(pools, fresh_pool_on_external):
    from emcee_ipp._host import usable_cores
    from emcee_ipp.transport.direct import ENGINE_SPIN_S

    # Every engine here shares this machine (one host address) and its cores.
    for pool in (pools("direct"), fresh_pool_on_external):
        assert pool.transport == "direct"
        fits = pool.size <= usable_cores()
        assert set(pool._transport._spin.values()) == {ENGINE_SPIN_S if fits else 0.0}
        assert pool._transport.rotate_engines is not (fits and pool._transport._gaps_short)
    # (tests/test_faults.py checks 32 engines on 2 cores do not poll.)


def test_engines_stop_polling_while_the_client_works_long_between_maps(pools):
    """Polling pays only when the next request comes within the poll: after
    maps with 5 ms of client work between them (dynesty's shape) engines are
    asked not to poll; back-to-back maps (emcee's) bring it back."""
    from emcee_ipp.transport.direct import ENGINE_SPIN_S, RECENT_REPLIES

    pool = pools("direct")
    transport = pool._transport  # noqa: SLF001
    x = np.ones((4, 2))
    for _ in range(RECENT_REPLIES + 1):
        pool.map(helpers.gaussian, x)
        end = time.perf_counter() + 2.5 * ENGINE_SPIN_S  # the client's own work
        while time.perf_counter() < end:
            pass
    assert not transport._gaps_short and transport.rotate_engines
    for _ in range(4 * RECENT_REPLIES):
        pool.map(helpers.gaussian, x)
    assert transport._gaps_short and not transport.rotate_engines


@pytest.mark.parametrize(
    "value, expected",
    [
        (0.002, 0.002),
        ("0.001", 0.001),
        (1e9, 0.01),
        (float("inf"), 0.01),
        (-1, 0.0),
        (float("nan"), 0.0),
        (None, 0.0),
        ("soon", 0.0),
        ([1], 0.0),
        (10**400, 0.0),
    ],
)
def test_requested_poll_time_is_bounded_and_malformed_means_none(value, expected):
    from emcee_ipp.transport._direct_engine import MAX_SPIN_S, _spin_seconds

    assert MAX_SPIN_S == 0.01
    assert _spin_seconds(value) == expected


def test_client_polls_only_with_a_core_to_spare(pools):
    from emcee_ipp._host import machine_id, usable_cores

    transport = pools("direct")._transport  # noqa: SLF001
    # Every engine of the shared cluster runs on this machine, as the client.
    assert set(transport._machines.values()) == {machine_id()}  # noqa: SLF001
    engines = sorted(transport._machines)  # noqa: SLF001
    handles = [transport._send(eid, {"op": "ping"}) for eid in engines]  # noqa: SLF001
    try:
        for busy in range(len(handles) + 1):
            # A core to spare while fewer engines than cores compute here.
            assert transport._core_to_spare(handles[:busy]) is (busy < usable_cores())
    finally:
        deadline = time.monotonic() + 10
        while handles and time.monotonic() < deadline:
            for rid, _ in transport.wait_first(handles, 1.0):
                handles.remove(rid)
    assert not handles


def test_broken_connection_to_a_live_engine_is_reopened(pools):
    pool = pools("direct")
    transport = pool._transport  # noqa: SLF001
    x = np.arange(8, dtype=float).reshape(4, 2)
    for eid in list(pool.client.ids):
        transport._connection_broke(eid)  # noqa: SLF001 (as after a Ctrl-C mid-send)
    assert not transport._sockets  # noqa: SLF001
    assert pool.map(helpers.gaussian, x) == [helpers.gaussian(r) for r in x]
    # The engines that took the chunks are connected again, not given up.
    assert transport._sockets  # noqa: SLF001


def busy_request():
    """(On an engine) the id of the request its direct server is evaluating, or None."""
    from emcee_ipp.transport import _direct_engine

    busy = _direct_engine._SERVER.get("busy")  # noqa: SLF001
    return None if busy is None else busy[1]


def _map_held_until(pool, path):
    """Start ``pool.map`` over 4 items in one chunk, the first waiting for
    ``path``; return the thread, what it got (``r`` or ``error``), and the
    engine running the chunk with the chunk's request id, once it runs."""
    got = {}

    def run():
        try:
            got["r"] = pool.map(helpers.WaitsFor(path, 0), range(4), chunksize=4)
        except Exception as exc:
            got["error"] = exc

    worker = threading.Thread(target=run)
    worker.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        busy = pool.client[:].apply_sync(busy_request)
        running = [(eid, rid) for eid, rid in zip(pool.client.ids, busy) if rid is not None]
        if running:
            return worker, got, running[0]
    path.touch()
    worker.join(30)
    pytest.fail("no engine started the chunk within 30 s")


@pytest.mark.timeout(90)
def test_late_interrupt_spares_a_chunk_it_was_not_meant_for(pools, tmp_path):
    """An interrupt names the chunks the pool gave up; another chunk running
    on that engine (the next map's, say) finishes untouched."""
    from emcee_ipp.transport import _direct_engine

    pool = pools("direct")
    go = tmp_path / "go"
    worker, got, (eid, rid) = _map_held_until(pool, go)
    try:
        assert rid.startswith(pool._transport._prefix)  # noqa: SLF001 (this map's chunk)
        assert pool.client[eid].apply_sync(_direct_engine.interrupt, ["another-pool-0"]) is False
        # Had it landed, the chunk would end at its next 5 ms wait, with an error.
        assert pool.client[eid].apply_sync(busy_request) == rid
    finally:
        go.touch()
        worker.join(30)
    assert got == {"r": [0, 10, 20, 30]}

    # Control: the same interrupt naming the running chunk does stop it (so
    # the chunk above was running, interruptible, when it was spared).
    stop = tmp_path / "stop"
    worker, got, (eid, rid) = _map_held_until(pool, stop)
    try:
        assert pool.client[eid].apply_sync(_direct_engine.interrupt, [rid]) is True
        worker.join(30)
    finally:
        stop.touch()
        worker.join(30)
    assert isinstance(got.get("error"), RemoteLogProbError), got
    assert "KeyboardInterrupt" in str(got["error"])
    x = np.arange(8, dtype=float).reshape(4, 2)
    assert pool.map(helpers.gaussian, x) == [helpers.gaussian(r) for r in x]


@pytest.mark.timeout(60)
def test_an_engine_stuck_in_c_code_is_left_out_until_it_answers(pools):
    """A timed-out chunk blocked in C code cannot be interrupted; its engine
    would hold every later chunk. Later maps go to the other engine until
    the stuck one's late reply comes, then to both again."""
    pool = pools("direct")
    x = np.array([[-1.0, 0.0], [1.0, 0.0], [2.0, 0.0], [3.0, 0.0]])
    y = np.arange(16, dtype=float).reshape(8, 2)
    pool.timeout = 1.0
    try:
        t0 = time.monotonic()
        with pytest.raises(MapTimeoutError):
            pool.map(helpers.sleeps_in_c_if_negative, x)
        stuck = pool._transport.owing()  # noqa: SLF001
        assert len(stuck) == 1
        # Still stuck for ~3 s: these maps run on the other engine, in time.
        for _ in range(3):
            assert pool.map(helpers.gaussian, y) == [helpers.gaussian(r) for r in y]
        assert time.monotonic() - t0 < 4.0
        while time.monotonic() - t0 < 15 and pool._transport.owing():  # noqa: SLF001
            pool.map(helpers.gaussian, y)  # reads the late reply when it comes
            time.sleep(0.1)
        assert not pool._transport.owing()  # noqa: SLF001
        # With every engine stuck, the next map times out, and says why.
        with pytest.raises(MapTimeoutError):
            pool.map(helpers.sleeps_in_c_if_negative, -np.ones((4, 2)))
        with pytest.raises(MapTimeoutError, match=r"still running a chunk an earlier map gave up"):
            pool.map(helpers.gaussian, y)
        t1 = time.monotonic()
        while time.monotonic() - t1 < 15 and pool._transport.owing():  # noqa: SLF001
            try:
                pool.map(helpers.gaussian, y)
            except MapTimeoutError:
                pass
    finally:
        pool.timeout = None
    assert not pool._transport.owing()  # noqa: SLF001
    assert pool.map(helpers.gaussian_20ms, y) == [helpers.gaussian(r) for r in y]


@pytest.mark.timeout(60)
def test_a_chunk_left_running_by_an_error_is_interrupted(pools):
    """An error ends the map at once; the other engine's chunk, given up, is
    interrupted rather than left to run (here it would spin for a minute)."""
    pool = pools("direct")
    x = np.array([[1.0, 0.0], [2.0, 0.0], [-1.0, 0.0], [-2.0, 0.0]])
    with pytest.raises(RemoteLogProbError, match="positive"):
        pool.map(helpers.raises_if_positive_hangs_if_negative, x)
    assert pool._transport.abandoned  # noqa: SLF001 (the hanging chunk ran elsewhere)
    t0 = time.monotonic()
    y = np.arange(8, dtype=float).reshape(4, 2)
    while pool._transport.owing() and time.monotonic() - t0 < 10:  # noqa: SLF001
        assert pool.map(helpers.gaussian, y) == [helpers.gaussian(r) for r in y]
        time.sleep(0.05)
    assert not pool._transport.owing()  # noqa: SLF001


@pytest.mark.timeout(120)
def test_a_curvezmq_cluster_uses_ipyparallel_messages(ipython_dir, monkeypatch):
    """A cluster that encrypts its messages (CurveZMQ): the direct channel,
    which would send in the clear, is refused with a reason, and "auto" uses
    ipyparallel's (encrypted) messages; the chain is still serial's."""
    import ipyparallel as ipp

    monkeypatch.setenv("IPP_ENABLE_CURVE", "1")  # the controller and engines read it
    cluster = ipp.Cluster(n=1, profile="emcee_ipp_test", cluster_id="curve", log_level=30)
    client = cluster.start_and_connect_sync(activate=False)
    try:
        assert client.curve_serverkey  # really encrypted
        with pytest.raises(DirectUnavailable, match="CurveZMQ.*transport='ipp'"):
            IPyParallelPool(client=client, transport="direct")
        with IPyParallelPool(client=client, transport="auto") as pool:
            assert pool.transport == "ipp"
            helpers.assert_chain_matches_serial(pool, helpers.gaussian, 10)
    finally:
        client.close()
        cluster.stop_cluster_sync()
