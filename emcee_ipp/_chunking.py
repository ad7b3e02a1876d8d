"""How many chunks one map call is split into.

Runs on the client. A message costs ~0.3 ms on the direct channel and ~2.5 ms
through ipyparallel; a cheap log-prob (the quickstart's takes ~12 us) finishes
50 walkers in about the time one message takes. Whether spreading a map over
more engines pays depends on the log-prob, the transport and the machine, so
the policy measures instead of modelling. It starts with one chunk per
engine, keeps the median of the last few cycle times per item for each chunk
count it uses (a cycle runs from a map's start to the next map's start, so
what the chunk count does to the caller's work in between counts too; a
median, so one slow call, such as the first, which ships the function and
imports its modules, or a pause between runs, cannot skew it), and climbs: after the
first maps and then now and then, it runs a few maps with twice as many
chunks, and with half as many where that could pay (more chunks than engines,
or messages taking much of the cycle), measured afresh, and moves where the
median was clearly faster. More chunks than engines let the engines that finish
first take more work (load balancing; see ``Transport.run_map``).

Probe rounds come EXPLORE_EVERY maps apart at first, then twice as far
apart after each round that changed nothing (up to MAX_EXPLORE_EVERY), so a
log-prob whose best split is the first one loses a few percent at first and
almost nothing later; a cheap one finds its best within a few maps, and a
cost that changes is noticed within MAX_EXPLORE_EVERY maps. Any split gives
the same results in the same order: the choice changes speed, never the
chain.
"""
from __future__ import annotations

import statistics
from collections import deque

# Tuned with benchmarks/bench_pools.py (quickstart, 1 ms and 10 ms log-probs
# on 2 engines) and benchmarks/bench_overhead.py (2 to 32 engines):
MIN_SAMPLES = 3  # maps at the current chunk count before probing its neighbours
PROBE_MAPS = 3  # maps a probe runs, so one noisy map cannot decide
EXPLORE_EVERY = 100  # after the first probes, probe again after this many maps,
MAX_EXPLORE_EVERY = 1600  # doubling up to this while probes change nothing
WINDOW = 5  # recent wall times kept per chunk count
MARGIN = 0.9  # a probe must be this much faster (per item) to be adopted
MAX_CHUNKS_PER_ENGINE = 4  # most chunks per engine, for balancing


class ChunkPolicy:
    """Hill-climbs the chunk count on measured wall time per item."""

    def __init__(self) -> None:
        self._engines = None
        self._items = None
        self.current = 1
        # k -> recent maps at k: (wall seconds per item, longest chunk compute s)
        self._stats: dict[int, deque] = {}
        self._calls = 0
        self._queue: deque = deque()  # neighbours still to probe
        self._probe = None  # [k, maps left] while probing k
        self._every = EXPLORE_EVERY  # maps between probe rounds
        self._next_round = 0  # the map that starts the next round
        self._moved = False  # whether this round changed the choice

    def n_chunks(self, n_items: int, n_engines: int) -> int:
        """Chunks for a map of ``n_items`` over ``n_engines`` engines."""
        if (n_engines, n_items) != (self._engines, self._items):  # start measuring again
            self._engines, self._items = n_engines, n_items
            self.current, self._stats = min(n_engines, n_items), {}
            self._queue, self._probe, self._calls = deque(), None, 0
            self._every, self._next_round = EXPLORE_EVERY, MIN_SAMPLES + 1
        self._calls += 1
        if self._probe is not None:
            return self._probe[0]
        if len(self._stats.get(self.current, ())) < MIN_SAMPLES:
            return self.current
        if self._calls >= self._next_round:
            self._queue, self._moved = deque(self._neighbours(self.current)), False
            if self._start_probe():
                return self._probe[0]
            self._end_round()
        return self.current

    def record(self, n_items: int, n_chunks: int, wall_s: float, compute_s: float) -> None:
        """Learn from one finished map of ``n_items`` split into ``n_chunks``.

        ``wall_s`` is its cycle time (the pool measures from its start to the
        next map's start); ``compute_s`` the longest time an engine spent
        evaluating one chunk.
        """
        if self._engines is None:  # no choice was made through n_chunks
            return
        recent = self._stats.setdefault(n_chunks, deque(maxlen=WINDOW))
        recent.append((wall_s / n_items, compute_s))
        if self._probe is None or self._probe[0] != n_chunks:
            return
        self._probe[1] -= 1
        if self._probe[1] > 0:
            return
        self._probe = None
        if self._wall(n_chunks) < MARGIN * self._wall(self.current):
            self.current, self._moved = n_chunks, True  # and climb on from there
            self._queue = deque(self._neighbours(n_chunks))
        if not self._start_probe():
            self._end_round()

    def _end_round(self) -> None:
        """Schedule the next probe round: a steady cost needs fewer (each costs
        a few slower maps); a round that moved starts the count again."""
        if self._moved:
            self._every = EXPLORE_EVERY
        self._next_round = self._calls + self._every
        if not self._moved:
            self._every = min(2 * self._every, MAX_EXPLORE_EVERY)

    def _start_probe(self) -> bool:
        """Probe the next queued neighbour with fresh measurements."""
        if not self._queue:
            return False
        k = self._queue.popleft()
        self._stats[k] = deque(maxlen=WINDOW)  # old times may predate a change
        self._probe = [k, PROBE_MAPS]
        return True

    def _neighbours(self, k: int) -> list[int]:
        top = min(self._items, self._engines * MAX_CHUNKS_PER_ENGINE)
        down = k // 2
        if k <= self._engines and not self._messages_dominate(k):
            down = 0
        return [c for c in (down, k * 2) if 1 <= c <= top and c != k]


    def _messages_dominate(self, k: int) -> bool:
        """Could half as many chunks be faster than ``k``?

        With no more chunks than engines, halving them doubles each engine's
        share, so it can only pay when a chunk computes for less than half
        the cycle (the rest being messages and the caller's own work, which
        fewer busy engines can speed up). The benchmark's 1 ms log-prob (8
        walkers a chunk) never qualifies, and skips the probe that cost it
        ~4% (benchmarks/bench_pools.py, "cpu 1 ms").
        """
        if not self._stats.get(k):
            return True
        return 2 * _median(c for _, c in self._stats[k]) < self._wall(k) * self._items

    def _wall(self, k: int) -> float:
        """Median recent cycle seconds per item at ``k`` chunks."""
        return _median(w for w, _ in self._stats[k])


def _median(values) -> float:
    return statistics.median(values)
