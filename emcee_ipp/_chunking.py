"""How many engines one map call should use.

Runs on the client. A message through ipyparallel costs milliseconds; a cheap
log-prob (the quickstart's takes ~12 us) finishes 50 walkers faster than one
message takes to travel. Spreading such a map over every engine only adds
messages. The policy keeps two running estimates, the log-prob's cost per
item and the cost of a message, and gives each chunk at least one message's
worth of work: ``k = work // message_cost`` chunks, between 1 and the number
of engines. Messages to several engines overlap, so this errs towards
spreading; on 2 engines it picks 1 chunk for the quickstart and 2 for a 1 ms
log-prob (benchmarks/bench_pools.py).

Any split gives the same results in the same order: the choice changes speed,
never the chain.
"""
from __future__ import annotations

# Weight of the newest observation in the running estimates. Small enough to
# ride out one slow call, large enough to follow a log-prob whose cost changes.
EWMA_WEIGHT = 0.2


class ChunkPolicy:
    """Running cost estimates, and the chunk count they imply."""

    def __init__(self) -> None:
        self.item_cost: float | None = None  # seconds of log-prob per item
        self.message_cost: float | None = None  # seconds a message adds

    def n_chunks(self, n_items: int, n_engines: int) -> int:
        """Chunks for a map of ``n_items`` over ``n_engines`` engines."""
        if self.item_cost is None or self.message_cost is None:
            return min(n_items, n_engines)  # first call: measure with every engine
        work = n_items * self.item_cost
        k = int(work / max(self.message_cost, 1e-9))
        return max(1, min(k, n_engines, n_items))

    def record(self, n_items: int, replies: list, wall_s: float) -> None:
        """Learn from one finished map: its ``(engine, reply)`` pairs and wall time.

        Each reply carries its chunk's compute seconds last. The critical path
        is the busiest engine's compute; the rest of the wall time is message
        cost, spread over that engine's chunks.
        """
        per_engine: dict = {}
        for eid, reply in replies:
            total, count = per_engine.get(eid, (0.0, 0))
            per_engine[eid] = (total + reply[-1], count + 1)
        compute = sum(t for t, _ in per_engine.values())
        critical, chunks = max(per_engine.values())
        self.item_cost = _ewma(self.item_cost, compute / n_items)
        self.message_cost = _ewma(self.message_cost, max(wall_s - critical, 0.0) / chunks)


def _ewma(old: float | None, new: float) -> float:
    return new if old is None else (1 - EWMA_WEIGHT) * old + EWMA_WEIGHT * new
