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
finish first take more work (load balancing; see ``Transport.run_map``), so
twice as many are probed only where the work was unevenly spread: where
the busiest engine computed clearly longer than the engines' mean.

A probe alternates blocks of maps at the two chunk counts (probe, current,
probe, ...) and compares them block pair by block pair: on a shared machine
whose speed drifts over seconds, blocks a few milliseconds apart see the
same machine, where a probe compared with the maps before it saw another
one. A block lasts at least BLOCK_S, and where maps are shorter than
SETTLE_S, those in its first SETTLE_S are not counted: engines poll for 2 ms
after replying (``direct.ENGINE_SPIN_S``), so a map right after a switch
still pays for the other count's engines. A longer map counts from the
first: it pays a smaller share, which a block's median absorbs.

Probe rounds come EXPLORE_EVERY maps apart at first, then twice as far
apart after each round that changed nothing (up to MAX_EXPLORE_EVERY), and
never closer than EXPLORE_RATIO times the last round's length, so a
log-prob whose best split is the first one loses a few percent at first and
almost nothing later; a cheap one finds its best within a few maps, and a
cost that changes is noticed within MAX_EXPLORE_EVERY maps (for the
cheapest maps, whose blocks are longest, within a second or so). Any split
gives the same results in the same order: the choice changes speed, never
the chain.
"""

from __future__ import annotations

import math
import statistics
from collections import deque

# Tuned with benchmarks/bench_pools.py (quickstart, 1 ms and 10 ms log-probs
# on 2 engines) and benchmarks/bench_overhead.py (2 to 32 engines):
MIN_SAMPLES = 3  # maps at the current chunk count before probing its neighbours
PROBE_MAPS = 3  # fewest maps a probe block counts, so one noisy map cannot decide
PROBE_BLOCKS = 3  # block pairs a probe runs
BLOCK_S = 0.005  # a block lasts about this long at least (cheap maps: more maps) ...
MAX_BLOCK = 64  # ... within this many maps
SETTLE_S = 0.0025  # short maps this soon after a switch are not counted (> ENGINE_SPIN_S)
EXPLORE_EVERY = 100  # after the first probes, probe again after this many maps,
MAX_EXPLORE_EVERY = 1600  # doubling up to this while probes change nothing
# ... and at least this many times as many maps as the round took: cheap
# maps have long blocks (MAX_BLOCK), and a round of 384 maps every 100 put a
# quarter of a trivial map's calls on the worse count.
EXPLORE_RATIO = 10
WINDOW = 5  # recent maps kept per chunk count
# A probe must be this much faster (median of its block pairs' ratios) to be
# adopted. The quickstart on 2 engines measured 1.22x serial at 2 chunks
# against 1.27x at 1 (interleaved runs, 2026-11-28): near-equal choices
# flip either way without harm; a 5% margin keeps them from flapping.
MARGIN = 0.95
MAX_CHUNKS_PER_ENGINE = 4  # most chunks per engine, for balancing


class _Probe:
    """Blocks of maps alternating between ``k`` (the probe) and ``base`` (the current count).

    ``cycle_s`` (the current count's recent cycle time) sizes the blocks.
    """

    def __init__(self, k: int, base: int, cycle_s: float) -> None:
        cycle_s = max(cycle_s, 1e-6)
        self.k, self.base = k, base
        self.skip = math.ceil(SETTLE_S / cycle_s) if cycle_s < SETTLE_S else 0
        self.block = min(MAX_BLOCK, max(PROBE_MAPS + self.skip, math.ceil(BLOCK_S / cycle_s)))
        self.skip = min(self.skip, self.block - PROBE_MAPS)
        self.samples: list[list] = [[] for _ in range(2 * PROBE_BLOCKS)]  # per block
        self._handed = 0  # maps handed out
        self._last: tuple[int, int] | None = None  # (block, position) of the map handed out last

    def next_k(self) -> int:
        block, position = divmod(self._handed, self.block)
        self._handed += 1
        self._last = (block, position)
        return self.k if block % 2 == 0 else self.base

    def record(self, cycle_s: float) -> bool:
        """Add the cycle time of the map handed out last; True once the probe is over."""
        if self._last is None:
            return False
        block, position = self._last
        self._last = None
        if block < len(self.samples) and position >= self.skip:
            self.samples[block].append(cycle_s)
        return self._handed >= len(self.samples) * self.block

    def won(self) -> bool:
        """Was the probe clearly faster, block pair by block pair?"""
        ratios = []
        for a, b in zip(self.samples[0::2], self.samples[1::2]):
            if a and b and statistics.median(b) > 0:  # a coarse clock may give 0
                ratios.append(statistics.median(a) / statistics.median(b))
        return bool(ratios) and statistics.median(ratios) < MARGIN

    def cycles(self, of: int) -> list:
        """The counted cycle times of chunk count ``of`` (``k`` or ``base``)."""
        blocks = self.samples[0::2] if of == self.k else self.samples[1::2]
        return [c for block in blocks for c in block]


class ChunkPolicy:
    """Hill-climbs the chunk count on measured cycle time, by paired probes."""

    def __init__(self) -> None:
        self._engines: int | None = None
        self._items: int | None = None
        self.current = 1
        self._cycles: deque = deque(maxlen=WINDOW)  # recent cycle s at ``current``
        self._compute: dict[int, deque] = {}  # k -> recent longest-chunk compute s
        self._slack: dict[int, deque] = {}  # k -> recent busiest engine's excess compute s
        self._calls = 0
        self._queue: deque = deque()  # neighbours still to probe
        self._probe: _Probe | None = None
        self._every = EXPLORE_EVERY  # maps between probe rounds
        self._next_round = 0  # the map that starts the next round
        self._round_start = 0  # the map that started the current round
        self._moved = False  # whether this round changed the choice

    def n_chunks(self, n_items: int, n_engines: int) -> int:
        """Chunks for a map of ``n_items`` over ``n_engines`` engines."""
        if (n_engines, n_items) != (self._engines, self._items):  # start measuring again
            self._engines, self._items = n_engines, n_items
            self.current = min(n_engines, n_items)
            self._cycles, self._compute, self._slack = deque(maxlen=WINDOW), {}, {}
            self._queue, self._probe, self._calls = deque(), None, 0
            self._every, self._next_round = EXPLORE_EVERY, MIN_SAMPLES + 1
        self._calls += 1
        if self._probe is not None:
            return self._probe.next_k()
        if len(self._cycles) < MIN_SAMPLES:
            return self.current
        if self._calls >= self._next_round:
            self._round_start = self._calls
            self._queue, self._moved = deque(self._neighbours(self.current)), False
            probe = self._start_probe()
            if probe is not None:
                return probe.next_k()
            self._end_round()
        return self.current

    def record(
        self, n_items: int, n_chunks: int, wall_s: float, compute_s: float, slack_s: float
    ) -> None:
        """Learn from one finished map of ``n_items`` split into ``n_chunks``.

        ``wall_s`` is its cycle time (the pool measures from its start to the
        next map's start); ``compute_s`` the longest time an engine spent
        evaluating one chunk; ``slack_s`` how much longer the busiest engine
        computed than the mean over all the pool's engines (idle ones count
        as 0): what spreading the same work evenly could save at most.
        """
        if self._engines is None:  # no choice was made through n_chunks
            return
        self._compute.setdefault(n_chunks, deque(maxlen=WINDOW)).append(compute_s)
        self._slack.setdefault(n_chunks, deque(maxlen=WINDOW)).append(slack_s)
        probe = self._probe
        if probe is None:
            if n_chunks == self.current:
                self._cycles.append(wall_s)
            return
        if not probe.record(wall_s):
            return
        self._probe = None
        won = probe.won()
        if won:
            self.current, self._moved = probe.k, True
        # The freshest times of the count now current, for the next probe's
        # block size and for _messages_dominate (which _neighbours asks).
        fresh = probe.cycles(self.current)
        if fresh:
            self._cycles = deque(fresh, maxlen=WINDOW)
        if won:
            self._queue = deque(self._neighbours(probe.k))  # and climb on from there
        if not self._start_probe():
            self._end_round()

    def _end_round(self) -> None:
        """Schedule the next probe round: a steady cost needs fewer (each costs
        a few slower maps); a round that moved starts the count again."""
        if self._moved:
            self._every = EXPLORE_EVERY
        took = self._calls - self._round_start + 1  # maps in the round
        self._next_round = self._calls + max(self._every, EXPLORE_RATIO * took)
        if not self._moved:
            self._every = min(2 * self._every, MAX_EXPLORE_EVERY)

    def _start_probe(self) -> _Probe | None:
        """Probe the next queued neighbour against the current count; the
        probe, or None if no neighbour is left."""
        if not self._queue:
            return None
        cycle = statistics.median(self._cycles) if self._cycles else BLOCK_S
        self._probe = _Probe(self._queue.popleft(), self.current, cycle)
        return self._probe

    def _neighbours(self, k: int) -> list[int]:
        assert self._items is not None and self._engines is not None  # set by n_chunks
        top = min(self._items, self._engines * MAX_CHUNKS_PER_ENGINE)
        down = k // 2
        if k <= self._engines and not self._messages_dominate(k):
            down = 0
        up = k * 2 if self._uneven(k) else 0
        return [c for c in (down, up) if 1 <= c <= top and c != k]

    def _uneven(self, k: int) -> bool:
        """Could twice as many chunks as ``k`` be faster?

        More chunks only help by evening out the engines' work (each message
        costs more, not less): a map can then end no sooner than the mean
        engine's compute time, so it saves at most the busiest engine's
        excess over that mean (``slack``, averaged over recent maps: a noisy
        machine's uneven share counts too). Unless that is more than a probe
        must win by (1 - MARGIN of the cycle), the probe is skipped: evenly
        spread work, such as the benchmark's 10 ms log-prob on 2 engines,
        paid for probing 4 chunks in every run (ipp transport, 8 steps,
        medians of 5 interleaved rounds: 0.549 -> 0.538 of serial without
        the probe; 1 ms, 60 steps, direct: 0.561 -> 0.553). Work that varies
        by walker (benchmarks/bench_pools.py, "uneven: 2 ms or -inf") still probes.
        """
        if not self._slack.get(k) or not self._cycles:
            return True
        return statistics.fmean(self._slack[k]) > (1 - MARGIN) * statistics.median(self._cycles)

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
