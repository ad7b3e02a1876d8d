"""Map traffic over a direct, authenticated ZeroMQ channel to each engine.

Runs on the client. ipyparallel remains the control plane (it starts and
watches the engines, and carries the set-up call that opens this channel);
only map chunks travel here, skipping the controller and the engine's
kernel::

    pool.map -> submit:     DEALER --sig|header|positions|(fn bytes)--> engine ROUTER
                                                 (thread: _direct_engine._loop)
    pool.map <- wait_first: DEALER <--sig|header|results---------------

Every message is signed with the cluster's session key (``_frames``). Each
request carries an id; a reply whose id is not awaited (a late reply of an
interrupted or timed-out call) is dropped, never taken as another's answer.
"""
from __future__ import annotations

import itertools
import logging
import time
import uuid
from collections import Counter
from urllib.parse import urlparse

import zmq

from ..exceptions import EmceeIppError
from . import _direct_engine, _frames
from .base import Transport

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
# polling engine of two did worse, and so did a polling client.
ENGINE_SPIN_S = 0.002


class DirectUnavailable(EmceeIppError, ConnectionError):
    """The direct channel cannot be used with this cluster."""


class DirectTransport(Transport):
    """One DEALER socket per engine, connected to the engine's own server."""

    name = "direct"

    def __init__(self, client, control):
        self._key = client.session.key
        if not self._key:
            raise DirectUnavailable(
                "the cluster has no session key, so the direct channel could not be "
                "authenticated; use transport='ipp'."
            )
        self._control = control  # an IppTransport, for the set-up calls
        self._ctx = zmq.Context()
        self._sockets: dict[int, zmq.Socket] = {}
        self._urls: dict[int, str] = {}
        self._prefix = uuid.uuid4().hex[:12]
        self._ids = itertools.count()
        self._awaited: dict[str, int] = {}  # request id -> engine id
        self._poller = zmq.Poller()
        self.dropped = 0  # late or unauthenticated replies thrown away
        self._cores: dict[int, int] = {}  # engine id -> cores it may use (its pong)
        self._spin: dict[int, float] = {}  # engine id -> how long its requests ask it to poll

    # -- engines ---------------------------------------------------------------

    def add_engines(self, engine_ids: list[int], timeout: float) -> None:
        """Open the channel to each new engine and check it answers, or raise DirectUnavailable."""
        engine_ids = [eid for eid in engine_ids if eid not in self._sockets]
        if not engine_ids:
            return
        calls = [(eid, self._control.call(eid, _direct_engine.serve)) for eid in engine_ids]
        for eid, ar in calls:
            try:
                url = ar.get(timeout=timeout)
            except Exception as exc:
                raise DirectUnavailable(f"engine {eid} could not open a direct channel: {exc}") from exc
            sock = self._ctx.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(url)
            self._sockets[eid], self._urls[eid] = sock, url
            self._poller.register(sock, zmq.POLLIN)
        self._ping(engine_ids)
        self._set_spin()

    def _set_spin(self) -> None:
        """Engines poll only where they do not outnumber their host's cores
        (pollers would then take cores from engines that compute)."""
        host = {eid: urlparse(url).hostname for eid, url in self._urls.items()}
        per_host = Counter(host.values())
        self._spin = {
            eid: ENGINE_SPIN_S if per_host[host[eid]] <= self._cores.get(eid, 0) else 0.0
            for eid in self._sockets
        }

    @property
    def rotate_engines(self) -> bool:
        """An engine that just replied is polling for the next request, where
        another one may be asleep: reuse it (a one-chunk map of 50 trivial
        items 0.26 -> 0.22 ms, median of 8 interleaved rounds of 1000 maps).
        Without polling, spread the maps."""
        return not any(self._spin.values())

    def _ping(self, engine_ids) -> None:
        handles = {}
        for eid in engine_ids:
            rid = self._send(eid, {"op": "ping"})
            handles[rid] = eid
        deadline = time.monotonic() + PING_TIMEOUT_S
        while handles and time.monotonic() < deadline:
            for rid, (_, cores) in self.wait_first(list(handles), deadline - time.monotonic()):
                self._cores[handles.pop(rid)] = cores
        if handles:
            self.forget(list(handles))
            unreachable = {handles[r]: self._urls[handles[r]] for r in handles}
            raise DirectUnavailable(
                f"engines did not answer on their direct channel within {PING_TIMEOUT_S} s: "
                f"{unreachable}. The client cannot reach them (a firewall, NAT or SSH "
                "tunnel?); transport='ipp' works wherever ipyparallel does."
            )

    def remove_engine(self, engine_id: int) -> None:
        self._urls.pop(engine_id, None)
        self._cores.pop(engine_id, None)
        sock = self._sockets.pop(engine_id, None)
        if sock is not None:
            self._poller.unregister(sock)
            sock.close(linger=0)
        self._set_spin()

    def interrupt(self, engine_ids: list[int]) -> bool:
        """The log-prob runs in each engine's server thread, which SIGINT does
        not reach: the engine's main thread raises KeyboardInterrupt there.
        (No SIGINT as well: it could abort that very call.)"""
        for eid in engine_ids:
            try:
                self._control.call(eid, _direct_engine.interrupt)
            except Exception:  # the engine may be gone
                pass
        return True

    # -- the Transport contract -----------------------------------------------

    def submit(self, engine_id, token, payload, chunk):
        fields, data = _frames.encode_chunk(chunk)
        header = {"op": "eval", "token": token, "payload": payload is not None,
                  "spin": self._spin.get(engine_id, 0.0), **fields}
        return self._send(engine_id, header, data, *([payload] if payload is not None else []))

    def wait_first(self, handles, timeout):
        # Every reply still awaited belongs to one of ``handles``: the pool
        # waits on all its calls in flight at once.
        got = []
        deadline = time.monotonic() + max(timeout, 0.0)
        while not got:
            remaining = deadline - time.monotonic()
            for sock, _ in self._poller.poll(max(0, int(remaining * 1000))):
                reply = self._accept(sock.recv())  # poll said it is there
                if reply is not None:
                    got.append(reply)
            if remaining <= 0:
                break
        return got

    def forget(self, handles):
        for rid in handles:
            self._awaited.pop(rid, None)

    def close(self):
        for eid in list(self._sockets):
            self.remove_engine(eid)
        self._ctx.term()

    # -- helpers ---------------------------------------------------------------

    def _send(self, engine_id, header, *parts) -> str:
        rid = f"{self._prefix}-{next(self._ids)}"
        self._sockets[engine_id].send(_frames.pack(self._key, {"id": rid, **header}, *parts))
        self._awaited[rid] = engine_id
        return rid

    def _accept(self, frame):
        verified = _frames.unpack(self._key, frame)
        if verified is None:
            self.dropped += 1
            log.warning("emcee_ipp: dropped a reply that failed authentication")
            return None
        header, parts = verified
        rid = header.get("id")
        if rid not in self._awaited:
            self.dropped += 1  # a late reply of an abandoned call
            return None
        del self._awaited[rid]
        if header.get("status") == "pong":
            cores = header.get("cores")
            return rid, ("pong", cores if isinstance(cores, int) else 0)
        return rid, _frames.decode_reply(header, parts[0] if parts else b"")
