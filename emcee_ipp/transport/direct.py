"""Map traffic over a direct, authenticated connection to each engine.

Runs on the client. ipyparallel remains the control plane (it starts and
watches the engines, and carries the set-up call that opens this channel);
only map chunks travel here, skipping the controller and the engine's
kernel::

    pool.map -> submit:     socket --sig|header|positions|(fn bytes)--> engine
                                         (thread: _direct_engine._connection)
    pool.map <- wait_first: socket <--sig|header|results---------------

Every message is signed with the cluster's session key, and stamped with
its connection's session id and its number in it (``_frames``): a new
connection starts with a hello each way, which picks the id (half from
each side), and each side takes only the next message of that session; it
hangs up on any other (forged, or replayed from this connection or
another). A broken connection is reopened (``_reconnect``), as a new
session. Each request carries an id; a reply whose id is not awaited (a
late reply of an interrupted or timed-out call) is dropped, never taken as
another's answer.

The connection is a TCP socket, or, to an engine on the client's own
machine (Linux), a Unix socket in the abstract namespace: each engine
advertises both (``_direct_engine.serve``) and the client takes the first
that connects. A Unix socket skips the TCP stack: a 600-byte round trip
between two processes here took 35-37 us against 69-77 over TCP loopback
(both sides blocking; 2 cores; benchmarks/bench_channel.py). The name is
random and bound to the engine's network namespace, so elsewhere it
refuses at once and TCP is used.

Why plain sockets and not ZeroMQ, which ipyparallel uses: a ZeroMQ message
is handed to an I/O thread on each side, and every hand-off is a thread
wake-up. A 600-byte round trip between two processes here took 102-106 us
over ZeroMQ (DEALER/ROUTER) against 16 us over a TCP socket, medians of 5000
with both sides polling (on 2 cores). The framing this needs is a length
prefix (``_frames``).
"""

from __future__ import annotations

import itertools
import logging
import os
import select
import socket
import struct
import time
import uuid
from collections import Counter, deque
from urllib.parse import urlparse

from .._host import machine_id, usable_cores
from ..exceptions import EmceeIppError
from . import _direct_engine, _frames
from .base import EngineLost, Transport

log = logging.getLogger("emcee_ipp")

# How long an engine may take to answer the first ping before "auto" falls
# back to ipyparallel's messages (an unreachable address never answers).
PING_TIMEOUT_S = 3.0
# Between emcee's half-steps the client computes for ~0.15-0.25 ms; an
# engine that slept meanwhile wakes slowly. So engines poll for the next
# request for this long after replying, when the engines on their host (the
# address they serve on) do not outnumber the cores an engine may use there.
# Measured on 2 cores (benchmarks/bench_overhead.py and interleaved A/B
# rounds of the quickstart): 50 trivial items 0.31 -> 0.25 ms per map;
# quickstart 1.52 -> 1.42 and 1.68 -> 1.57 of serial; 0.5 ms polls or one
# polling engine of two did worse (all measured over ZeroMQ, before the
# channel moved to TCP and the client polled too: CLIENT_SPIN_S).
ENGINE_SPIN_S = 0.002
# ... but only while the client's own work between maps (from a map's last
# reply to the next map's first request) is shorter than that poll, as
# emcee's half-steps are: polling through a longer gap only takes the cores
# the client computes on. dynesty (bound updates, bootstraps between maps)
# at 1 ms per likelihood call on 2 engines ran 4.52 s with polling engines
# against 3.88 s without (multiprocessing.Pool: 3.74 s; medians of 6 rounds,
# benchmarks/bench_dynesty.py).
# Likewise the client, waiting for a reply, wakes late once it sleeps (the
# vCPU halts). So it polls instead, for up to this long, when replies
# usually come within that time and the engines computing on its machine
# leave it a core (it would otherwise slow them down). Quickstart on 2 cores,
# medians of 6 interleaved rounds of 300 steps: one chunk per map 1.52 ->
# 1.29 of serial; with two chunks, where polling takes an engine's core,
# 1.42 -> 2.09.
CLIENT_SPIN_S = 0.002
RECENT_REPLIES = 16  # replies whose round-trip times decide whether the client polls
# A reply the poll said was arriving, or a request being sent (an outbox
# that does not drain), may stall this long before the engine counts as lost
# (a broken link or a stopped engine, not a slow log-prob: an engine computing
# sends nothing, and is sent a request only once it has answered the last,
# so its connection's thread is free to read it; an engine still running a
# chunk given up earlier is left out meanwhile, see owing()).
IO_TIMEOUT_S = 60.0
RECONNECT_EVERY_S = 1.0  # how often to retry a broken connection to a live engine
_TIMEVAL = struct.Struct("@ll")  # struct timeval, for SO_RCVTIMEO


class DirectUnavailable(EmceeIppError, ConnectionError):
    """The direct channel cannot be used with this cluster."""


def open_connection(url: str, timeout: float) -> socket.socket:
    """A stream socket connected to an engine's ``tcp://HOST:PORT`` or ``unix:@NAME``."""
    if url.startswith("unix:@"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect("\0" + url[len("unix:@") :])
        except BaseException:
            sock.close()
            raise
        return sock
    address = urlparse(url)
    assert address.port is not None  # (engines publish their urls with the port)
    sock = socket.create_connection((address.hostname, address.port), timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


class DirectTransport(Transport):
    """One connection per engine, to the engine's own server."""

    name = "direct"

    def __init__(self, client, control):
        self._key = client.session.key
        if getattr(client, "curve_serverkey", None):
            raise DirectUnavailable(
                "the cluster encrypts its messages (CurveZMQ) and the direct channel "
                "would send them in the clear; use transport='ipp'."
            )
        if not self._key:
            raise DirectUnavailable(
                "the cluster has no session key, so the direct channel could not be "
                "authenticated; use transport='ipp'."
            )
        self._control = control  # an IppTransport, for the set-up calls
        self._retry_at: dict[int, float] = {}  # engine id -> when to try reconnecting
        self._sockets: dict[int, socket.socket] = {}
        self._sessions: dict[int, _frames.Session] = {}  # engine id -> its connection's session
        self._readers: dict[int, _frames.Reader] = {}  # engine id -> its connection's reader
        self._urls: dict[int, list[str]] = {}  # engine id -> the URLs it serves on
        self.routes: dict[int, str] = {}  # engine id -> the URL its connection uses
        self._by_fd: dict[int, int] = {}  # socket fd -> engine id
        self._prefix = uuid.uuid4().hex[:12]
        self._ids = itertools.count()
        self._awaited: dict[str, tuple[int, float]] = {}  # request id -> (engine id, sent at)
        self._held: list = []  # (request id, reply) of a map, read by _ping
        self._lost: list[str] = []  # awaited ids whose engine's connection broke
        self._given_up: dict[int, deque] = {}  # engine id -> forgotten request ids, for interrupt()
        # engine id -> forgotten request ids whose (late) reply has not come:
        # the engine still evaluates one, and would make new chunks wait
        self._owed: dict[int, set] = {}
        self._poller = select.poll()
        # engine id -> [views still to send it, in order; when some last went]
        # (a large message, such as a new function's 50 MB, goes out while
        # the others do; see _queue)
        self._outbox: dict[int, list] = {}
        self.dropped = 0  # late replies thrown away, and refused ones (each hangs up)
        self._cores: dict[int, int] = {}  # engine id -> cores it may use (its pong)
        self._machines: dict[int, str] = {}  # engine id -> its machine (its pong)
        self._spin: dict[int, float] = {}  # engine id -> how long its requests ask it to poll
        self._machine, self._machine_cores = machine_id(), usable_cores()
        self._round_trips: deque = deque(maxlen=RECENT_REPLIES)
        self._gaps: deque = deque(maxlen=RECENT_REPLIES)  # the client's recent gaps between maps
        self._gaps_short = True  # whether their median is under ENGINE_SPIN_S
        self._last_reply_at = None  # when the last eval reply came, with none awaited since
        self._replies_quick = False  # whether the recent round trips were under CLIENT_SPIN_S

    # -- engines ---------------------------------------------------------------

    def add_engines(self, engine_ids: list[int], timeout: float) -> None:
        """Open the channel to each new engine and check it answers, or raise DirectUnavailable."""
        engine_ids = [eid for eid in engine_ids if eid not in self._sockets]
        if not engine_ids:
            return
        calls = [(eid, self._control.call(eid, _direct_engine.serve)) for eid in engine_ids]
        urls = {}
        for eid, ar in calls:
            try:
                served = ar.get(timeout=timeout)
                # (a str: an older engine's single URL)
                urls[eid] = [served] if isinstance(served, str) else list(served)
            except Exception as exc:
                raise DirectUnavailable(
                    f"engine {eid} could not open a direct channel: {exc}"
                ) from exc
        deadline = time.monotonic() + PING_TIMEOUT_S
        for eid, url in urls.items():
            self._urls[eid] = url
            try:
                self._connect(eid, max(0.0, deadline - time.monotonic()))
            except (OSError, ValueError) as exc:
                raise self._unreachable({eid: url}, exc) from exc
        self._ping(list(urls), deadline)
        self._set_spin()

    def _connect(self, engine_id: int, timeout: float) -> socket.socket:
        """Connect to the first of the engine's URLs that answers, and open a
        session on it (within ``timeout`` s in all)."""
        failures, end = [], time.monotonic() + timeout
        for url in self._urls[engine_id]:
            try:
                sock = open_connection(url, max(end - time.monotonic(), 1e-3))
            except (OSError, ValueError) as exc:
                failures.append(f"{url}: {exc}")
                continue
            try:
                session = self._hello(engine_id, sock, end)
                break
            except OSError as exc:
                sock.close()
                failures.append(f"{url}: {exc}")
            except BaseException:
                sock.close()
                raise
        else:
            raise ConnectionError("; ".join(failures) or "the engine serves on no URL")
        self.routes[engine_id] = url
        # Blocking, with the kernel's own time-outs (settimeout would add a
        # poll before every send and receive).
        sock.settimeout(None)
        # (Sends never block: see _queue.)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _TIMEVAL.pack(int(IO_TIMEOUT_S), 0))
        self._sockets[engine_id] = sock
        self._sessions[engine_id] = session
        self._readers[engine_id] = _frames.Reader(sock)
        self._by_fd[sock.fileno()] = engine_id
        self._poller.register(sock, select.POLLIN)
        return sock

    def _hello(self, engine_id: int, sock, end: float) -> _frames.Session:
        """A new connection's session: the client's hello, then the engine's
        (blocking, until ``end`` on the monotonic clock)."""
        session, hello = _frames.hello(self._key)
        sock.settimeout(max(end - time.monotonic(), 1e-3))
        _frames.send(sock, hello)
        sock.settimeout(max(end - time.monotonic(), 1e-3))
        reply = _frames.recv(sock)
        if reply is None:
            raise ConnectionError("the engine hung up instead of answering the hello")
        try:
            session.confirm(reply)
        except _frames.Rejected as exc:
            self._refused(engine_id, exc)
            raise ConnectionError(f"the engine's hello was refused: {exc}") from None
        return session

    def _refused(self, engine_id: int, why) -> None:
        self.dropped += 1
        log.warning(
            "emcee_ipp: dropped a message from engine %s on the direct channel, and hung up: %s",
            engine_id,
            why,
        )

    def _reconnect(self, engine_id: int) -> socket.socket | None:
        """A new connection to an engine whose last one broke (an interrupted
        send, a network blip), tried at most once a second; None if it fails."""
        if engine_id not in self._urls or time.monotonic() < self._retry_at.get(engine_id, 0.0):
            return None
        self._retry_at[engine_id] = time.monotonic() + RECONNECT_EVERY_S
        try:
            return self._connect(engine_id, RECONNECT_EVERY_S)
        except OSError:
            return None

    def _set_spin(self) -> None:
        """Engines poll only where they do not outnumber their machine's cores
        (pollers would then take cores from engines that compute)."""
        per_machine = Counter(self._machines.values())
        self._spin = {
            eid: ENGINE_SPIN_S
            if per_machine[self._machines[eid]] <= self._cores.get(eid, 0)
            else 0.0
            for eid in self._sockets
            if eid in self._machines
        }

    @property
    def rotate_engines(self) -> bool:
        """An engine that just replied is polling for the next request, where
        another one may be asleep: reuse it (a one-chunk map of 50 trivial
        items 0.26 -> 0.22 ms, median of 8 interleaved rounds of 1000 maps).
        Without polling (or while the client's gaps between maps are long),
        spread the maps."""
        return not (self._gaps_short and any(self._spin.values()))

    def _ping(self, engine_ids, deadline: float) -> None:
        handles = {}
        for eid in engine_ids:
            rid = self._send(eid, {"op": "ping"})
            handles[rid] = eid
        others = []  # a map's replies, read while a new engine is pinged mid-map
        try:
            while handles and time.monotonic() < deadline:
                for rid, reply in self.wait_first(list(handles), deadline - time.monotonic()):
                    eid = handles.pop(rid, None)
                    if eid is None:
                        others.append((rid, reply))
                        continue
                    if isinstance(reply, EngineLost):
                        raise self._unreachable({eid: self._urls[eid]}, "it hung up")
                    _, self._cores[eid], self._machines[eid] = reply
        finally:
            self._held.extend(others)  # the map's next wait_first returns them
        if handles:
            self.forget(list(handles))
            raise self._unreachable(
                {handles[r]: self._urls[handles[r]] for r in handles}, "no reply"
            )

    @staticmethod
    def _unreachable(urls: dict, why) -> DirectUnavailable:
        return DirectUnavailable(
            f"engines did not answer on their direct channel within {PING_TIMEOUT_S} s: "
            f"{urls} ({why}). The client cannot reach them (a firewall, NAT or SSH "
            "tunnel?); transport='ipp' works wherever ipyparallel does."
        )

    def remove_engine(self, engine_id: int) -> None:
        self._urls.pop(engine_id, None)
        self.routes.pop(engine_id, None)
        self._retry_at.pop(engine_id, None)
        self._given_up.pop(engine_id, None)
        self._cores.pop(engine_id, None)
        self._machines.pop(engine_id, None)
        self._hang_up(engine_id)
        self._set_spin()

    def _hang_up(self, engine_id: int) -> None:
        self._outbox.pop(engine_id, None)
        self._owed.pop(engine_id, None)  # no reply comes on a closed connection
        self._sessions.pop(engine_id, None)
        self._readers.pop(engine_id, None)
        sock = self._sockets.pop(engine_id, None)
        if sock is not None:
            del self._by_fd[sock.fileno()]
            self._poller.unregister(sock)
            sock.close()

    def _connection_broke(self, engine_id: int) -> None:
        """The engine hung up or its link failed: its awaited replies are lost.
        (The next chunk for it reconnects, if it still runs: ``_reconnect``.)"""
        self._hang_up(engine_id)
        self._lost.extend(rid for rid, (eid, _) in self._awaited.items() if eid == engine_id)

    def interrupt(self, engine_ids: list[int], given_up_only: bool = False) -> bool:
        """The log-prob runs in an engine's server thread, which SIGINT does
        not reach: the engine's main thread raises KeyboardInterrupt there.
        (No SIGINT as well: it could abort that very call.) Only the chunks
        given up (forgotten) on each engine are interrupted, if any were;
        else whatever the engine runs, unless ``given_up_only``. (The
        interrupt travels through ipyparallel, slower than the channel: on
        an engine that had finished, it would land in the next map's chunk.)"""
        for eid in engine_ids:
            given_up = self._given_up.pop(eid, None)
            if given_up_only and not given_up:
                continue
            try:
                self._control.call(
                    eid, _direct_engine.interrupt, sorted(given_up) if given_up else None
                )
            except Exception:  # the engine may be gone
                pass
        return True

    # -- the Transport contract -----------------------------------------------

    def submit(self, engine_id, token, payload, chunk, objects=()):
        if self._last_reply_at is not None and not self._awaited:
            # a new map: how long since the last
            self._gaps.append(time.perf_counter() - self._last_reply_at)
            self._gaps_short = _median(self._gaps) < ENGINE_SPIN_S
        self._last_reply_at = None
        fields, data = _frames.encode_chunk(chunk)
        spin = self._spin.get(engine_id, 0.0) if self._gaps_short else 0.0
        header = {
            "op": "eval",
            "token": token,
            "payload": payload is not None,
            "spin": spin,
            **fields,
        }
        parts = [data] if payload is None else [data, payload]
        if objects:
            header["objects"] = [key for key, _ in objects]
            parts.extend(b for _, b in objects)
        return self._send(engine_id, header, *parts)

    def wait_first(self, handles, timeout):
        # Every reply still awaited belongs to one of ``handles``: the pool
        # waits on all its calls in flight at once.
        if self._outbox:
            self._break_stalled()
        got = self._take_lost()
        if self._held:  # read by _ping
            got.extend(self._held)
            self._held.clear()
        if not got and self._replies_quick and self._core_to_spare(handles):
            end = time.perf_counter() + min(CLIENT_SPIN_S, max(timeout, 0.0))
            while not self._poller.poll(0) and time.perf_counter() < end:
                os.sched_yield()
        deadline = time.monotonic() + max(timeout, 0.0)
        while not got:
            remaining = deadline - time.monotonic()
            for fd, events in self._poller.poll(max(0.0, remaining * 1000)):
                eid = self._by_fd.get(fd)
                if eid is None:  # hung up earlier in this loop
                    continue
                if events & select.POLLOUT:
                    self._flush(eid)
                    got.extend(self._take_lost())
                    if events == select.POLLOUT or eid not in self._sockets:
                        continue
                self._read(eid, got)
            if remaining <= 0:
                break
        return got

    def _read(self, engine_id: int, got: list) -> None:
        """Take the messages an engine's socket has for us (it is readable):
        append to ``got`` the replies they bring."""
        reader, session = self._readers[engine_id], self._sessions[engine_id]
        while True:  # one read may bring more than one message
            try:
                message = reader.recv()
            except OSError:
                message = None
            except BaseException:  # Ctrl-C mid-message: the stream is out of step
                self._connection_broke(engine_id)
                raise
            if message is not None:
                try:
                    header, parts = session.unpack(message)
                except _frames.Rejected as exc:
                    self._refused(engine_id, exc)
                    message = None
            if message is None:  # the engine hung up, the link broke, or we refused
                self._connection_broke(engine_id)
                got.extend(self._take_lost())
                return
            reply = self._accept(header, parts)
            if reply is not None:
                got.append(reply)
            if not reader.ready():
                return

    def sending(self):
        return bool(self._outbox)

    def owing(self):
        """Engines still evaluating a chunk the pool gave up: one stuck in C
        code, which no interrupt reaches (the interrupt lands at its next
        Python instruction), would hold every later chunk sent to it. Its
        late reply, read while the pool waits for others, frees it."""
        return self._owed.keys()

    def forget(self, handles):
        for rid in handles:
            awaited = self._awaited.pop(rid, None)
            if awaited is not None:
                # A few per engine: at most one chunk per engine is in flight.
                self._given_up.setdefault(awaited[0], deque(maxlen=16)).append(rid)
                self._owed.setdefault(awaited[0], set()).add(rid)

    def close(self):
        for eid in list(self._sockets):
            self.remove_engine(eid)

    # -- helpers ---------------------------------------------------------------

    def _send(self, engine_id, header, *parts) -> str:
        rid = f"{self._prefix}-{next(self._ids)}"
        sock = self._sockets.get(engine_id) or self._reconnect(engine_id)
        self._awaited[rid] = (engine_id, time.perf_counter())
        try:
            if sock is None:
                raise ConnectionError(f"engine {engine_id}'s connection broke earlier")
            message = self._sessions[engine_id].pack({"id": rid, **header}, *parts)
            self._queue(engine_id, sock, _frames.framed(message))
        except OSError:
            self._connection_broke(engine_id)  # its reply is lost: rid comes back as EngineLost
        except BaseException:  # Ctrl-C mid-send: the caller never gets rid
            del self._awaited[rid]
            self._connection_broke(engine_id)
            raise
        return rid

    def _queue(self, engine_id: int, sock, views: list) -> None:
        """Send what the engine's socket takes now; the rest goes out from
        wait_first as the socket drains, so the client never blocks on one
        engine's large message while other engines wait for theirs (a new
        50 MB function's first map on 2 engines took 0.27-0.33 s sent one
        engine after the other, 0.21-0.23 s this way, against 0.16 s on
        one engine: benchmarks/bench_channel.py)."""
        pending = self._outbox.get(engine_id)
        if pending:  # earlier bytes are still going out: keep the order
            pending[0].extend(views)
            return
        rest = _frames.send_some(sock, views, socket.MSG_DONTWAIT)
        if rest:
            self._outbox[engine_id] = [rest, time.monotonic()]
            self._poller.modify(sock, select.POLLIN | select.POLLOUT)

    def _flush(self, engine_id: int) -> None:
        """Send more of an engine's outbox, now that its socket has room."""
        sock, pending = self._sockets[engine_id], self._outbox.get(engine_id)
        if not pending:
            self._poller.modify(sock, select.POLLIN)
            return
        try:
            rest = _frames.send_some(sock, pending[0], socket.MSG_DONTWAIT)
        except OSError:
            self._connection_broke(engine_id)
            return
        except BaseException:  # Ctrl-C mid-send: the stream is out of step
            self._connection_broke(engine_id)
            raise
        if rest:
            pending[1] = time.monotonic()
        else:
            del self._outbox[engine_id]
            self._poller.modify(sock, select.POLLIN)

    def _break_stalled(self) -> None:
        """Give up on connections whose outbox has not drained for IO_TIMEOUT_S
        (their awaited requests come back as lost, and run elsewhere)."""
        now = time.monotonic()
        for eid, (_, moved) in list(self._outbox.items()):
            if now - moved > IO_TIMEOUT_S:
                log.warning(
                    "emcee_ipp: engine %s took nothing sent to it for %.0f s; hanging up on it",
                    eid,
                    IO_TIMEOUT_S,
                )
                self._connection_broke(eid)

    def _core_to_spare(self, handles) -> bool:
        """Whether the client may poll: the engines computing on its machine
        leave it a core."""
        here = sum(
            1
            for rid in handles
            if rid in self._awaited and self._machines.get(self._awaited[rid][0]) == self._machine
        )
        return here < self._machine_cores

    def _take_lost(self) -> list:
        """``(request id, EngineLost)`` for awaited requests of broken connections."""
        lost = [
            (rid, EngineLost()) for rid in self._lost if self._awaited.pop(rid, None) is not None
        ]
        self._lost.clear()
        return lost

    def _accept(self, header: dict, parts: list):
        rid = header.get("id")
        if rid not in self._awaited:
            self.dropped += 1  # a late reply of an abandoned call
            for eid, owed in list(self._owed.items()):
                owed.discard(rid)
                if not owed:
                    del self._owed[eid]
            return None
        _, sent_at = self._awaited.pop(rid)
        if header.get("status") == "pong":
            cores, machine = header.get("cores"), header.get("machine")
            return rid, ("pong", cores if isinstance(cores, int) else 0, str(machine))
        now = time.perf_counter()
        self._round_trips.append(now - sent_at)
        self._replies_quick = _median(self._round_trips) < CLIENT_SPIN_S
        self._last_reply_at = now
        return rid, _frames.decode_reply(header, parts[0] if parts else b"")


def _median(values) -> float:
    """The median of a few numbers (statistics.median costs ~3 us here, per map)."""
    ordered = sorted(values)
    n = len(ordered)
    return ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2
