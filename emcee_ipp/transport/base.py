"""The seam between the pool and the way its messages travel.

Runs on the client. A transport only knows how to start one chunk on one
engine (:meth:`Transport.submit`) and how to wait for the first replies
(:meth:`Transport.wait_first`). :meth:`Transport.run_map` holds what every
transport shares: handing chunks to engines as they become free, sending the
function's bytes to engines that lack them, and giving a lost engine's chunk
to another engine.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Generator, Sequence
from typing import Any, Callable, Protocol

from ..exceptions import MapTimeoutError, NoEnginesError
from ._pieces import FAILED, Pieces

# How often a wait wakes to check for lost engines and the deadline.
WAKE_S = 0.1


class EngineLost(Exception):
    """A reply placeholder: the engine died before it answered."""


class Transport(ABC):
    """How chunks reach engines and replies come back (client side)."""

    name: str

    @property
    def rotate_engines(self) -> bool:
        """Whether a map that needs fewer chunks than engines should start on
        the next engine each call (True) or on the first (False). See the
        subclasses."""
        return True

    # Engines whose chunks the last map gave up unfinished (an error, a
    # timeout, Ctrl-C): the ones to interrupt, and only those.
    abandoned: tuple = ()

    @abstractmethod
    def submit(
        self, engine_id: int, token: str, payload: bytes | None, chunk, objects: Sequence = ()
    ) -> Any:
        """Start ``_engine.evaluate(token, payload, chunk, ..., objects)`` on one
        engine; return a handle. ``chunk`` is a float64 array or a
        ``_wire.Packed``; ``objects`` the ``(token, bytes)`` of cached objects
        its items name that the engine lacks."""

    @abstractmethod
    def wait_first(self, handles: list, timeout: float) -> list[tuple[Any, Any]]:
        """Wait up to ``timeout`` s; return ``(handle, reply)`` for the finished ones.

        A reply is the tuple :func:`emcee_ipp._engine.evaluate` returned, or
        an :class:`EngineLost` instance.
        """

    def sending(self) -> bool:
        """Whether requests are still going out (the client then sends before
        it computes a chunk of its own: engines must not wait for their bytes)."""
        return False

    def forget(self, handles: list) -> None:
        """Stop tracking ``handles`` whose replies will never be read (by
        default there is nothing to stop)."""
        return None

    def owing(self):
        """Engines still busy with a chunk given up earlier, which new chunks
        would wait behind (new maps go to the other engines, if any)."""
        return frozenset()

    def add_engines(self, engine_ids: list[int], timeout: float) -> None:
        """Make new engines reachable (ipyparallel's messages reach them already)."""
        return None

    def remove_engine(self, engine_id: int) -> None:
        """Drop what the transport holds for an engine that left (by default
        nothing)."""
        return None

    def interrupt(self, engine_ids: list[int], given_up_only: bool = False) -> bool:
        """Interrupt map work the transport runs outside the engines' main
        threads; return False when that work runs in them (SIGINT's job).
        With ``given_up_only``, only chunks the pool gave up (see
        :meth:`forget`) may be interrupted."""
        return False

    def close(self) -> None:
        """Release what the transport holds (sockets, views; by default
        nothing)."""
        return None

    def run_map(
        self, entry, items, bounds, engines, timeout, roster, local=None, encode=None
    ) -> list:
        """Evaluate every chunk; return ``(engine_id, reply)`` per chunk, in
        chunk order (:meth:`iter_map`'s replies; after an error reply, None
        for the chunks not finished)."""
        replies: list = [None] * len(bounds)
        for i, eid, reply in self.iter_map(
            entry, items, bounds, engines, timeout, roster, local, encode
        ):
            replies[i] = (eid, reply)
        return replies

    def iter_map(
        self,
        entry,
        items,
        bounds: list[tuple[int, int]],
        engines: list[int],
        timeout: float | None,
        roster: Roster,
        local: Callable[[Any], tuple] | None = None,
        encode: Callable[[Any], tuple] | None = None,
    ) -> Generator[tuple[int, int | None, tuple], None, None]:
        """Evaluate every chunk; yield ``(chunk index, engine_id, reply)`` as
        each finishes, and stop after an error reply.

        The first chunks go to ``engines`` in order; each further chunk goes
        to the first engine that finishes, and a chunk whose engine died to
        another engine (``roster`` tells which are alive); a chunk that
        kills engines is split until the walker that does is found
        (``_pieces``). ``encode(items[a:b])`` gives what
        travels for a chunk and the object-cache entries it names
        (``_shipping``); their bytes, like the function's, go to engines
        that lack them. With ``local`` (the pool's ``client_computes``), the
        client evaluates the last chunk itself, ``local(chunk)``, once the
        others are sent (:meth:`sending`), and later ones whenever no engine
        is free, never one whose engine died; its replies carry the
        engine id None. ``timeout`` counts only while the generator runs,
        not while its consumer holds it (``imap``). Closing the generator
        gives up the chunks still in flight (:attr:`abandoned`).
        """
        pieces = Pieces(bounds)
        pending = deque(range(len(bounds)))  # pieces to send; lost ones go first
        mine = pending.pop() if local is not None else None  # the client's next piece
        idle = deque(engines)
        inflight: dict = {}  # handle -> (piece, engine id)
        lost: set = set()  # engines lost during this map
        wire: dict = {}  # piece -> (what travels, object entries it names)
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while pending or inflight or mine is not None:
                finished = []
                while pending and idle:
                    eid, p = idle.popleft(), pending.popleft()
                    if p not in wire:
                        a, b = pieces.spans[p]
                        wire[p] = encode(items[a:b]) if encode else (items[a:b], ())
                    chunk, named = wire[p]
                    payload = None if eid in entry.engines else entry.payload
                    objects = [(e.token, e.payload) for e in named if eid not in e.engines]
                    inflight[self.submit(eid, entry.token, payload, chunk, objects)] = (p, eid)
                if mine is not None and not self.sending():  # the engines compute meanwhile
                    assert local is not None  # (the client has pieces only with local)
                    a, b = pieces.spans[mine]
                    finished.append((mine, None, local(items[a:b])))
                    mine = _own_piece(pending, pieces) if not inflight else None
                    wake = 0.0  # collect what finished meanwhile, then go on
                else:
                    wake = (
                        WAKE_S
                        if deadline is None
                        else min(WAKE_S, max(0.0, deadline - time.monotonic()))
                    )
                done = self.wait_first(list(inflight), wake) if inflight else []
                for handle, reply in done:
                    if handle not in inflight:
                        continue  # sent by a map interrupted before it held the handle
                    p, eid = inflight.pop(handle)
                    if isinstance(reply, EngineLost):
                        entry.engines.discard(eid)
                        lost.add(eid)
                        crash = self._lose(p, eid, pieces, pending, roster)
                        if crash:
                            finished.append(crash)
                    elif reply[0] == "miss":  # it lost its cache: send the bytes again
                        entry.engines.discard(eid)
                        for held in wire[p][1]:
                            held.engines.discard(eid)
                        pending.appendleft(p)
                        idle.appendleft(eid)
                    else:
                        entry.engines.add(eid)
                        for held in wire[p][1]:
                            held.engines.add(eid)
                        finished.append((p, eid, reply))
                        if reply[0] not in FAILED:
                            idle.append(eid)
                if done and pending and not idle:
                    self._recruit(inflight, idle, roster.live(), lost)
                elif not done and (
                    local is None or inflight or not pending or pieces.tainted(pending[-1])
                ):
                    # (with nothing in flight, the client finishes the map itself)
                    finished.extend(
                        self._check(
                            inflight, idle, pending, roster, deadline, timeout, lost, pieces
                        )
                    )
                if local is not None and mine is None and pending and not idle:
                    mine = _own_piece(pending, pieces)  # every engine is busy: the client takes one
                if finished:
                    held_at = time.monotonic() if deadline is not None else 0.0
                    for p, by, reply in finished:  # by: an engine id, None for the client
                        out = pieces.done(p, by, reply)
                        if out is None:  # a piece of a split chunk, not the last
                            continue
                        yield out
                        if reply[0] in FAILED:
                            return  # the caller raises; late replies are dropped
                    if deadline is not None:  # the consumer's time is not the map's
                        deadline += time.monotonic() - held_at
        finally:
            self.abandoned = (
                tuple(sorted({eid for _, eid in inflight.values()})) if inflight else ()
            )
            if inflight:
                self.forget(list(inflight))

    @staticmethod
    def _lose(piece, eid, pieces, pending, roster):
        """``piece``'s engine died: queue it (or its halves) first; or, when
        it is a walker that killed its engines, the reply that names it."""
        retry = pieces.lost(piece)
        if not retry:
            return pieces.crash(piece, eid, roster.death(eid))
        pending.extendleft(reversed(retry))
        return None

    @staticmethod
    def _recruit(inflight, idle, live, lost) -> None:
        """Give a lost engine's chunk to live engines this map did not target."""
        busy = {eid for _, eid in inflight.values()}
        idle.extend(e for e in live if e not in busy and e not in lost and e not in idle)

    def _check(self, inflight, idle, pending, roster, deadline, timeout, lost, pieces) -> list:
        """Between replies: requeue pieces of lost engines; enforce the
        deadline. Returns the replies naming a walker that kills engines."""
        live = roster.live()
        crashes = []
        for handle, (p, eid) in list(inflight.items()):
            if eid not in live:
                del inflight[handle]
                self.forget([handle])
                lost.add(eid)
                crash = self._lose(p, eid, pieces, pending, roster)
                if crash:
                    crashes.append(crash)
        for eid in list(idle):
            if eid not in live:
                idle.remove(eid)
        if pending and not idle:
            self._recruit(inflight, idle, live, lost)
        if pending and not inflight and not idle and not crashes:
            if not roster.coming():
                raise NoEnginesError(
                    "every engine of the pool is gone; the map cannot finish. Start "
                    "engines again (or a new IPyParallelPool) and rerun."
                )
            time.sleep(WAKE_S)  # nothing to wait on but the new engines' arrival
        if deadline is not None and time.monotonic() >= deadline:
            busy = sorted({eid for _, eid in inflight.values()})
            held = sorted(set(self.owing()).intersection(busy))
            why = (
                f" Engines {held} were still running a chunk an earlier map gave up: "
                "a log-prob blocked in C code (a sleep, I/O, a C extension) cannot "
                "be interrupted on the direct channel until it returns."
                if held
                else ""
            )
            raise MapTimeoutError(
                f"map did not finish within timeout={timeout} s; engines {busy} "
                "were still working. The log-prob may hang for some parameters; "
                f"raise timeout= or fix the log-prob.{why}"
            )
        return crashes


class Roster(Protocol):
    """What a map asks the pool about its engines (client side)."""

    def live(self) -> list[int]:
        """The engines that may take chunks now (new ones prepared first)."""

    def coming(self) -> bool:
        """Whether engines are on their way (replacing dead ones): with none
        live, the map waits for them rather than failing."""

    def death(self, engine_id: int) -> tuple[int | None, str]:
        """How a dead engine ended: its exit code (``-N`` for signal
        ``N``) and its last stderr lines, where the pool knows them."""


def _own_piece(pending: deque, pieces: Pieces):
    """The next piece the client may compute itself: a fresh one (lost
    pieces are queued on the left, fresh ones stay on the right), or None."""
    return pending.pop() if pending and not pieces.tainted(pending[-1]) else None
