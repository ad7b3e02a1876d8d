"""How many chunks one map call is split into.

Runs on the client. A message costs ~0.3 ms on the direct channel and ~2.5 ms
through ipyparallel; a cheap log-prob (the quickstart's takes ~12 us) finishes
50 walkers in about the time one message takes. Whether spreading a map over
more engines pays depends on the log-prob, the transport and the machine, so
the policy measures instead of modelling. It starts with one chunk per
engine and measures each map's cycle time (from its start to the next map's
start, so what the chunk count does to the caller's work in between counts
too). Then it climbs: after the first maps, and now and then later, it
probes twice as many chunks, and half as many where that could pay (more
chunks than engines, or messages taking much of the cycle), and moves where
the probe was clearly faster. More chunks than engines let the engines that
finish first take more work (load balancing; see ``Transport.run_map``).

A probe alternates the two chunk counts, map by map (probe, current,
probe, ...), and compares them pair by pair: on a shared machine whose
speed drifts over seconds, maps a few milliseconds apart see the same
machine, where a probe compared with the maps before it saw another one.
Cheap maps get more pairs (PROBE_S of maps, up to MAX_PROBE_PAIRS), so a
decision rests on more than one noisy map.

Probe rounds come EXPLORE_EVERY maps apart at first, then twice as far
apart after each round that changed nothing (up to MAX_EXPLORE_EVERY), so a
log-prob whose best split is the first one loses a few percent at first and
almost nothing later; a cheap one finds its best within a few maps, and a
cost that changes is noticed within MAX_EXPLORE_EVERY maps. Any split gives
the same results in the same order: the choice changes speed, never the
chain.
"""
from __future__ import annotations

import math
import statistics
from collections import deque

# Tuned with benchmarks/bench_pools.py (quickstart, 1 ms and 10 ms log-probs
# on 2 engines) and benchmarks/bench_overhead.py (2 to 32 engines):
MIN_SAMPLES = 3  # maps at the current chunk count before probing its neighbours
PROBE_MAPS = 3  # fewest pairs of maps a probe runs, so one noisy map cannot decide
PROBE_S = 0.02  # ... and enough pairs to last about this long, for cheap maps
MAX_PROBE_PAIRS = 16
EXPLORE_EVERY = 100  # after the first probes, probe again after this many maps,
MAX_EXPLORE_EVERY = 1600  # doubling up to this while probes change nothing
WINDOW = 5  # recent maps kept per chunk count
# A probe must be this much faster (median of its pairs' ratios) to be
# adopted. The quickstart on 2 engines measured 1.22x serial at 2 chunks
# against 1.27x at 1 (interleaved runs, 2026-11-28): near-equal choices
# flip either way without harm; a 5% margin keeps them from flapping.
MARGIN = 0.95
MAX_CHUNKS_PER_ENGINE = 4  # most chunks per engine, for balancing


class _Probe:
    """Maps alternating between ``k`` (the probe) and ``base`` (the current count)."""

    def __init__(self, k: int, base: int, pairs: int) -> None:
        self.k, self.base, self.pairs = k, base, pairs
        self.cycles: dict[int, list] = {k: [], base: []}

    def next_k(self) -> int:
        """The probe first, then whichever of the two has fewer maps recorded."""
        return self.k if len(self.cycles[self.k]) <= len(self.cycles[self.base]) else self.base

    def record(self, k: int, cycle_s: float) -> bool:
        """Add one map's cycle time; True once every pair is complete."""
        if k in self.cycles:
            self.cycles[k].append(cycle_s)
        return min(map(len, self.cycles.values())) >= self.pairs

    def won(self) -> bool:
        """Was the probe clearly faster, pair by pair?"""
        ratios = [a / b for a, b in zip(self.cycles[self.k], self.cycles[self.base])]
        return statistics.median(ratios) < MARGIN


class ChunkPolicy:
    """Hill-climbs the chunk count on measured cycle time, by paired probes."""

    def __init__(self) -> None:
        self._engines = None
        self._items = None
        self.current = 1
        self._cycles: deque = deque(maxlen=WINDOW)  # recent cycle s at ``current``
        self._compute: dict[int, deque] = {}  # k -> recent longest-chunk compute s
        self._calls = 0
        self._queue: deque = deque()  # neighbours still to probe
        self._probe: _Probe | None = None
        self._every = EXPLORE_EVERY  # maps between probe rounds
        self._next_round = 0  # the map that starts the next round
        self._moved = False  # whether this round changed the choice

    def n_chunks(self, n_items: int, n_engines: int) -> int:
        """Chunks for a map of ``n_items`` over ``n_engines`` engines."""
        if (n_engines, n_items) != (self._engines, self._items):  # start measuring again
            self._engines, self._items = n_engines, n_items
            self.current = min(n_engines, n_items)
            self._cycles, self._compute = deque(maxlen=WINDOW), {}
            self._queue, self._probe, self._calls = deque(), None, 0
            self._every, self._next_round = EXPLORE_EVERY, MIN_SAMPLES + 1
        self._calls += 1
        if self._probe is not None:
            return self._probe.next_k()
        if len(self._cycles) < MIN_SAMPLES:
            return self.current
        if self._calls >= self._next_round:
            self._queue, self._moved = deque(self._neighbours(self.current)), False
            if self._start_probe():
                return self._probe.next_k()
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
        self._compute.setdefault(n_chunks, deque(maxlen=WINDOW)).append(compute_s)
        probe = self._probe
        if probe is None:
            if n_chunks == self.current:
                self._cycles.append(wall_s)
            return
        if not probe.record(n_chunks, wall_s):
            return
        self._probe = None
        if probe.won():
            self.current, self._moved = probe.k, True  # and climb on from there
            self._cycles = deque(probe.cycles[probe.k], maxlen=WINDOW)
            self._queue = deque(self._neighbours(probe.k))
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
        """Probe the next queued neighbour against the current count."""
        if not self._queue:
            return False
        cycle = statistics.median(self._cycles) if self._cycles else PROBE_S
        pairs = min(MAX_PROBE_PAIRS, max(PROBE_MAPS, math.ceil(PROBE_S / max(cycle, 1e-9))))
        self._probe = _Probe(self._queue.popleft(), self.current, pairs)
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
        if not self._compute.get(k) or not self._cycles:
            return True
        return 2 * statistics.median(self._compute[k]) < statistics.median(self._cycles)
