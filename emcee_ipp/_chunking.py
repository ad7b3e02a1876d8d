"""How many chunks one map call is split into.

Runs on the client. A message costs ~0.3 ms on the direct channel and ~3 ms
through ipyparallel; a cheap log-prob (the quickstart's takes ~12 us) finishes
50 walkers in about the time one message takes. Whether spreading a map over
more engines pays depends on the log-prob, the transport and the machine, so
the policy measures instead of modelling: it keeps the median of the last few
wall times per item for each candidate chunk count (a median, so one slow
first call, which ships the function and imports its modules, cannot skew
it), tries each candidate a few times, then uses the fastest, and now and then tries its neighbours again in
case the cost has changed. More chunks than engines let the engines that
finish first take more work (load balancing; see ``Transport.run_map``).

Any split gives the same results in the same order: the choice changes speed,
never the chain.
"""
from __future__ import annotations

import statistics
from collections import deque

# Tuned with benchmarks/bench_pools.py (quickstart, 1 ms and 10 ms log-probs
# on 2 engines) and benchmarks/bench_balance.py (walkers of unequal cost):
MIN_SAMPLES = 3  # tries of each candidate before trusting its mean
EXPLORE_EVERY = 50  # every this many maps, re-try a neighbour of the best
WINDOW = 5  # recent wall times kept per candidate
MAX_CHUNKS_PER_ENGINE = 4  # most chunks per engine, for balancing


def candidates(n_items: int, n_engines: int) -> list[int]:
    """Chunk counts worth trying: 1, powers of two, the engine count, a few per engine."""
    ks = {1, min(n_engines, n_items)}
    k = 2
    while k <= n_engines * MAX_CHUNKS_PER_ENGINE:
        ks.add(k)
        k *= 2
    ks.update(n_engines * m for m in (2, MAX_CHUNKS_PER_ENGINE))
    return sorted(k for k in ks if k <= n_items)


class ChunkPolicy:
    """Measured wall time per item for each chunk count, and the choice it implies."""

    def __init__(self) -> None:
        self._engines = None
        self._stats: dict[int, deque] = {}  # k -> recent wall seconds per item
        self._calls = 0
        self._explore_up = True

    def n_chunks(self, n_items: int, n_engines: int) -> int:
        """Chunks for a map of ``n_items`` over ``n_engines`` engines."""
        if n_engines != self._engines:  # engines joined or left: measure again
            self._engines, self._stats = n_engines, {}
        ks = candidates(n_items, n_engines)
        self._calls += 1
        untried = [k for k in ks if len(self._stats.get(k, ())) < MIN_SAMPLES]
        if untried:
            # Every engine first (the natural default), then one, then the rest.
            spread = min(n_engines, n_items)
            order = sorted(untried, key=lambda k: (k != spread, k != 1, k))
            return order[0]
        best = min(ks, key=lambda k: statistics.median(self._stats[k]))
        if self._calls % EXPLORE_EVERY == 0:
            i = ks.index(best) + (1 if self._explore_up else -1)
            self._explore_up = not self._explore_up
            return ks[min(max(i, 0), len(ks) - 1)]
        return best

    def record(self, n_items: int, n_chunks: int, wall_s: float) -> None:
        """Learn from one finished map of ``n_items`` split into ``n_chunks``."""
        self._stats.setdefault(n_chunks, deque(maxlen=WINDOW)).append(wall_s / n_items)

    def best(self) -> int | None:
        """The fastest chunk count measured so far (None before any map)."""
        tried = {k: statistics.median(v) for k, v in self._stats.items() if len(v) >= MIN_SAMPLES}
        return min(tried, key=tried.get) if tried else None
