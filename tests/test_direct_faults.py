"""The direct channel under attack and on a broken link: real engines, real
sockets, and a relay in between.

A :class:`Relay` in the test process stands where a network would: the
pool's connection to one engine goes through it (the engine's own server
answers at the other end). It forwards whole messages, records what the
client sends (as anyone on the wire could), and can send a recorded
message again, repeat the engine's next reply, cut the link (a network
blip), or refuse connections. The pool is a pool of its own on the
session cluster's engines, so its connections and state are this test's.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import threading
import time

import helpers
import numpy as np
import pytest
from test_direct import CLOSED, outcome

from emcee_ipp import IPyParallelPool
from emcee_ipp.transport import _frames
from emcee_ipp.transport.direct import RECONNECT_EVERY_S, open_connection

_LENGTH = struct.Struct("<Q")  # the length before each message (_frames)


class Touches:
    """A log-prob that creates a file named after its walker in ``folder``:
    a request for it, replayed, would leave a file."""

    def __init__(self, folder):
        self.folder = str(folder)

    def __call__(self, x):
        open(os.path.join(self.folder, f"walker-{x[0]:g}"), "w").close()
        return helpers.gaussian(x)


class HeldIn:
    """The log-prob and the pid that ran it; in process ``pid``, it first
    creates ``started`` and waits (at most 60 s) for ``release`` to exist."""

    def __init__(self, pid, started, release):
        self.pid, self.started, self.release = pid, str(started), str(release)

    def __call__(self, x):
        if os.getpid() == self.pid:
            open(self.started, "w").close()
            end = time.monotonic() + 60
            while not os.path.exists(self.release) and time.monotonic() < end:
                time.sleep(0.005)
        return helpers.gaussian(x), os.getpid()


class Relay:
    """A TCP relay, in this process, between clients and the engine at
    ``target`` (a ``tcp://`` URL), forwarding whole messages each way."""

    def __init__(self, target: str):
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"tcp://127.0.0.1:{self._listener.getsockname()[1]}"
        self.links: list[tuple[socket.socket, socket.socket]] = []  # (client side, engine side)
        self.sent: list[list[bytes]] = []  # per link: what the client sent, message by message
        self.closed_by: list[str] = []  # per link, once closed: "client" or "engine"
        self.closed = threading.Condition()
        self.attempts = 0  # connections accepted, refused ones too
        self.refusing = False  # accept, then hang up at once
        self.repeat_next_reply = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # closed
                return
            self.attempts += 1
            if self.refusing:
                client.close()
                continue
            engine = open_connection(self.target, 10.0)
            index = len(self.links)
            self.links.append((client, engine))
            self.sent.append([])
            self.closed_by.append("")
            threading.Thread(
                target=self._pump, args=(index, client, engine, "client"), daemon=True
            ).start()
            threading.Thread(
                target=self._pump, args=(index, engine, client, "engine"), daemon=True
            ).start()

    def _pump(self, index: int, source, sink, side: str) -> None:
        try:
            while True:
                message = _frames.recv(source)
                if message is None:
                    break
                frame = _LENGTH.pack(len(message)) + bytes(message)
                if side == "client":
                    self.sent[index].append(frame)
                sink.sendall(frame)
                if side == "engine" and self.repeat_next_reply:
                    self.repeat_next_reply = False
                    sink.sendall(frame)
        except OSError:
            pass
        with self.closed:
            if not self.closed_by[index]:
                self.closed_by[index] = side
            self.closed.notify_all()
        self._close_link(index)

    def _close_link(self, index: int) -> None:
        for sock in self.links[index]:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def inject(self, index: int, frame: bytes) -> None:
        """Send ``frame`` to the engine on link ``index``, as if from its client."""
        self.links[index][1].sendall(frame)

    def wait_closed(self, index: int, timeout: float = 10.0) -> str:
        """Which side closed link ``index`` first; fails the test if neither
        did within ``timeout`` s."""
        with self.closed:
            if not self.closed.wait_for(lambda: self.closed_by[index], timeout):
                pytest.fail(f"neither side closed relayed link {index} within {timeout} s")
            return self.closed_by[index]

    def cut(self) -> None:
        """Break every link at once, as a network blip would."""
        for index in range(len(self.links)):
            with self.closed:
                self.closed_by[index] = self.closed_by[index] or "cut"
            self._close_link(index)

    def close(self) -> None:
        self._listener.close()
        self.cut()
        for link in self.links:
            for sock in link:
                sock.close()


@pytest.fixture
def own_pool(pools):
    """A pool of its own on the session cluster's engines (two)."""
    with IPyParallelPool(cluster=pools("direct").cluster, transport="direct") as pool:
        assert len(pool.client.ids) == 2
        yield pool


@pytest.fixture
def relayed(own_pool):
    """``(pool, engine id, relay)``: the pool's connection to its first
    engine reopened through a relay (the other engines stay direct)."""
    transport = own_pool._transport  # noqa: SLF001
    eid = own_pool.client.ids[0]
    tcp = [url for url in transport._urls[eid] if url.startswith("tcp://")]  # noqa: SLF001
    relay = Relay(tcp[0])
    transport._urls[eid] = [relay.url]  # noqa: SLF001
    transport._connection_broke(eid)  # noqa: SLF001 (the next request reconnects)
    try:
        yield own_pool, eid, relay
    finally:
        relay.close()


def _one_chunk_per_engine(pool, func):
    """``pool.map(func, x)`` with one row per engine, in one chunk each (so
    each engine, the relayed one too, takes one); returns ``(x, results)``."""
    x = np.arange(len(pool.client.ids), dtype=float)[:, None] * [1.0, 0.5] + 1.0
    return x, pool.map(func, x, chunksize=1)


def _rejected(pool, eid) -> int:
    return pool.client[eid].apply_sync(helpers.direct_rejected)


@pytest.mark.timeout(120)
def test_a_captured_request_replayed_is_dropped_and_runs_nowhere(relayed, tmp_path):
    """A real signed request, captured on the wire and sent again on its own
    connection or on a new one (with its connection's hello, or alone), is
    refused: the engine logs it, counts it and hangs up, and nothing runs."""
    pool, eid, relay = relayed
    folder = tmp_path / "touched"
    folder.mkdir()
    x, results = _one_chunk_per_engine(pool, Touches(folder))
    assert results == [helpers.gaussian(r) for r in x]
    assert len(relay.links) == 1
    # The map's request, and what the connection sent before it (its hello).
    *opening, request = relay.sent[0]
    assert sorted(os.listdir(folder)) == sorted(f"walker-{r[0]:g}" for r in x)
    for name in os.listdir(folder):
        os.remove(folder / name)
    before = _rejected(pool, eid)

    # 1. Sent again on its own connection: the engine hangs up.
    relay.inject(0, request)
    assert relay.wait_closed(0) == "engine"
    assert _rejected(pool, eid) == before + 1

    # 2. On a new connection after the hello it was made in (which opens a
    # new session), and 3. alone on a new connection: hung up on too.
    url = relay.target
    with open_connection(url, 10.0) as sock:
        for message in opening:
            sock.sendall(message)
            assert outcome(sock) != CLOSED  # the engine's hello: a session of its own
        sock.sendall(request)
        assert outcome(sock) == CLOSED
    with open_connection(url, 10.0) as sock:
        sock.sendall(request)
        assert outcome(sock) == CLOSED
    assert _rejected(pool, eid) == before + 3
    # Each was refused before it ran (the engine hung up instead of answering).
    assert os.listdir(folder) == []

    # The pool notices its connection is gone, reruns that chunk elsewhere
    # and reconnects.
    x, results = _one_chunk_per_engine(pool, helpers.gaussian)
    assert results == [helpers.gaussian(r) for r in x]
    assert pool.map(helpers.gaussian, x) == [helpers.gaussian(r) for r in x]


def test_the_engine_logs_a_refused_message(caplog):
    """The engine's side of a connection, run in this process on a socket
    pair: a repeated request is logged, counted and hung up on."""
    from emcee_ipp.transport import _direct_engine

    key = b"a key"
    ours, theirs = socket.socketpair()
    server = threading.Thread(target=_direct_engine._connection, args=(theirs, key))  # noqa: SLF001
    before = _direct_engine.rejected()
    assert _direct_engine._CONNECTIONS.acquire(timeout=10)  # noqa: SLF001 (as its accept does)
    with ours, caplog.at_level(logging.WARNING, logger="emcee_ipp.direct"):
        server.start()
        session, hello = _frames.hello(key)
        _frames.send(ours, hello)
        session.confirm(_frames.recv(ours))
        ping = session.pack({"id": "p-1", "op": "ping"})
        _frames.send(ours, ping)
        assert outcome(ours) != CLOSED
        _frames.send(ours, ping)
        assert outcome(ours) == CLOSED
        server.join(10)
    assert not server.is_alive()
    assert _direct_engine.rejected() == before + 1
    assert "message #1 where #2 was due" in caplog.text
    assert "hung up" in caplog.text


@pytest.mark.timeout(120)
def test_a_repeated_reply_is_refused_by_the_client(relayed, caplog):
    """The client takes each reply once: one sent again (by the relay) is
    logged and counted, the client hangs up, and the chunk it was waiting
    for on that engine runs elsewhere."""
    pool, eid, relay = relayed
    transport = pool._transport  # noqa: SLF001
    x, results = _one_chunk_per_engine(pool, helpers.gaussian)
    assert results == [helpers.gaussian(r) for r in x]
    dropped = transport.dropped
    relay.repeat_next_reply = True
    with caplog.at_level(logging.WARNING, logger="emcee_ipp"):
        for _ in range(2):  # the second map reads the repeat, if the first did not
            x, results = _one_chunk_per_engine(pool, helpers.slow_gaussian_with_pid)
            assert [r[0] for r in results] == [helpers.gaussian(r) for r in x]
    assert relay.wait_closed(0) == "client"
    assert transport.dropped == dropped + 1
    assert f"dropped a message from engine {eid}" in caplog.text
    assert "message #2 where #3 was due" in caplog.text


@pytest.mark.timeout(120)
def test_a_broken_link_sends_the_chunk_elsewhere_and_reconnects_at_most_once_a_second(
    relayed, tmp_path
):
    """The README's row: the direct connection to a live engine breaks (a
    network blip): the chunk goes elsewhere; the pool reconnects, at most
    once a second."""
    pool, eid, relay = relayed
    pids = pool.client[:].apply_sync(os.getpid)
    pid, other = pids[0], pids[1]
    started, release = tmp_path / "started", tmp_path / "release"
    got = {}

    def run():
        try:
            got["r"] = _one_chunk_per_engine(pool, HeldIn(pid, started, release))
        except Exception as exc:
            got["error"] = exc

    worker = threading.Thread(target=run)
    worker.start()
    try:
        deadline = time.monotonic() + 30
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.005)
        assert started.exists(), "the relayed engine never started its chunk"
        relay.refusing = True  # the link stays down for a while
        relay.cut()
        worker.join(30)  # the engine still holds the chunk: only a rerun elsewhere ends the map
        assert not worker.is_alive(), "the map waited for the engine whose link broke"
    finally:
        release.touch()
        worker.join(30)
    x, results = got["r"]
    assert [r[0] for r in results] == [helpers.gaussian(r) for r in x]
    assert [r[1] for r in results] == [other, other]  # the held chunk went elsewhere

    # While the link is down, each map tries the engine again: at most once a second.
    attempts = relay.attempts
    t0 = time.monotonic()
    while time.monotonic() - t0 < 2.5 * RECONNECT_EVERY_S:
        x, results = _one_chunk_per_engine(pool, helpers.slow_gaussian_with_pid)
        assert [r[0] for r in results] == [helpers.gaussian(r) for r in x]
        time.sleep(0.01)
    elapsed = time.monotonic() - t0
    tried = relay.attempts - attempts
    assert 2 <= tried <= 1 + elapsed / RECONNECT_EVERY_S, (tried, elapsed)

    # The link is back: within a few seconds the engine takes work again.
    relay.refusing = False
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        x, results = _one_chunk_per_engine(pool, helpers.slow_gaussian_with_pid)
        if pid in [r[1] for r in results]:
            break
        time.sleep(0.01)
    assert pid in [r[1] for r in results], "the pool never reconnected to the engine"
