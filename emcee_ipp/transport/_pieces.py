"""Finding the walkers that kill their engine, by splitting their chunk.

Runs on the client, inside :meth:`Transport.iter_map`. A map's chunks are
its first *pieces*. A piece whose engine dies goes to another engine; one
that kills a second engine is split in halves, each retried, until a single
walker has killed two engines on its own: that walker is named
(:class:`emcee_ipp.exceptions.EngineCrashError`). An engine killed by
something else (the out-of-memory killer, an admin, a lost host) costs its
piece one retry, and no name: a walker is named only after two deaths with
it alone.

The halves of a split piece start with one death to their name (their
parent died twice), so a half that dies again is split at once; a single
walker starts from zero. Finding one walker among 20 costs about 7 engine
deaths: 2 for the chunk, 1 for each halving (10, 5, 3, 2), 2 for the walker.

A split chunk's pieces' replies are merged back into one reply for the
chunk, so the rest of the map never sees the split.
"""

from __future__ import annotations

from .._wire import OBJECTS, unpack_results

# Deaths with a piece before it is split, or its single walker named.
DEATHS = 2
# Reply statuses that end a map (the caller raises): the function raised,
# an item could not be loaded on the engine, or a walker kills its engine.
FAILED = ("error", "badinput", "crash")


class Pieces:
    """The pieces of one map's chunks (client side)."""

    __slots__ = ("spans", "n_chunks", "top", "deaths", "parts")

    def __init__(self, bounds: list[tuple[int, int]]):
        self.spans = bounds  # piece index -> (first item, end); copied on the first split
        self.n_chunks = len(bounds)  # pieces below this are whole chunks
        self.top: dict[int, int] = {}  # split piece -> its chunk
        self.deaths: dict[int, int] = {}  # piece -> engines it was on when they died
        self.parts: dict[int, dict] = {}  # split chunk -> {piece: reply}, until all are done

    def tainted(self, piece: int) -> bool:
        """Whether an engine died while it held ``piece`` or the piece it
        was split from (such a piece must never run in the client: it may
        kill the user's process)."""
        return piece in self.deaths

    def lost(self, piece: int) -> tuple[int, ...]:
        """``piece``'s engine died: the pieces to run in its place (itself,
        or its two halves), or ``()`` when it is a single walker that has
        now killed :data:`DEATHS` engines."""
        deaths = self.deaths[piece] = self.deaths.get(piece, 0) + 1
        if deaths < DEATHS:
            return (piece,)
        a, b = self.spans[piece]
        if b - a == 1:
            return ()
        if len(self.spans) == self.n_chunks:
            self.spans = list(self.spans)  # the caller's bounds stay as they were
        chunk = self.top.get(piece, piece)
        parts = self.parts.setdefault(chunk, {})
        parts.pop(piece, None)
        halves = []
        for span in ((a, (a + b) // 2), ((a + b) // 2, b)):
            half = len(self.spans)
            self.spans.append(span)
            self.top[half] = chunk
            parts[half] = None
            # (a single walker needs its own two deaths to be named)
            self.deaths[half] = DEATHS - 1 if span[1] - span[0] > 1 else 0
            halves.append(half)
        return tuple(halves)

    def crash(self, piece: int, eid, note: tuple) -> tuple:
        """The reply that names ``piece``'s walker, as its chunk's
        (``note``: the engine's exit code and last stderr lines)."""
        chunk = self.top.get(piece, piece)
        index = self.spans[piece][0] - self.spans[chunk][0]
        return chunk, eid, ("crash", index, *note)

    def done(self, piece: int, eid, reply: tuple) -> tuple | None:
        """``(chunk, engine id, reply)`` once ``piece``'s chunk is finished
        (or failed), else None."""
        if piece < self.n_chunks:
            return piece, eid, reply
        chunk = self.top[piece]
        if reply[0] in FAILED:  # the index is the chunk's, not the piece's
            shift = self.spans[piece][0] - self.spans[chunk][0]
            return chunk, eid, (reply[0], reply[1] + shift, *reply[2:])
        parts = self.parts[chunk]
        parts[piece] = reply
        if any(r is None for r in parts.values()):
            return None
        del self.parts[chunk]
        return chunk, eid, _merge([parts[p] for p in sorted(parts, key=self.spans.__getitem__)])


def _merge(replies: list[tuple]) -> tuple:
    """One ``"ok"`` reply of a chunk from its pieces' replies, in item order."""
    results: list = []
    seconds = 0.0
    out, err = [], []
    for reply in replies:
        results.extend(unpack_results(reply[1], reply[2]))
        seconds += reply[3]
        if len(reply) > 4:  # what the log-prob printed
            out.append(reply[4][0] or "")
            err.append(reply[4][1] or "")
    merged = ("ok", OBJECTS, results, seconds)
    return (*merged, ("".join(out), "".join(err))) if out else merged
