"""The chunk-count policy: on its own (pure client-side arithmetic), and
what the pool tells it."""

import helpers
import numpy as np
import pytest

from emcee_ipp._chunking import (
    EXPLORE_EVERY,
    EXPLORE_RATIO,
    MARGIN,
    MAX_BLOCK,
    MAX_EXPLORE_EVERY,
    PROBE_BLOCKS,
    SETTLE_S,
    ChunkPolicy,
    _Probe,
)
from emcee_ipp.transport.direct import ENGINE_SPIN_S


def _drive(
    policy, cost, n_items=50, n_engines=2, calls=200, compute=lambda k: 0.0, slack=None, trail=None
):
    """Feed the policy a model of wall time ``cost(k)``, of the longest
    chunk's compute time ``compute(k)`` and of the busiest engine's excess
    over the mean ``slack(k)``; return its choices (and append its current
    count after each map to ``trail``). By default the work is even: with
    fewer chunks than engines, the idle engines make the slack."""
    if slack is None:
        slack = lambda k: compute(k) * max(0.0, 1 - k / n_engines)  # noqa: E731
    chosen = []
    for _ in range(calls):
        k = policy.n_chunks(n_items, n_engines)
        policy.record(n_items, k, cost(k), compute(k), slack(k))
        chosen.append(k)
        if trail is not None:
            trail.append(policy.current)
    return chosen


def half_ms(k):
    """The longest chunk's compute time of 0.5 ms of work split ``k`` ways."""
    return 0.5e-3 / k


def test_first_calls_use_every_engine():
    assert ChunkPolicy().n_chunks(50, 4) == 4
    assert ChunkPolicy().n_chunks(3, 8) == 3  # never more chunks than items


def test_cheap_work_moves_to_one_chunk():
    p = ChunkPolicy()
    chosen = _drive(p, lambda k: 0.6e-3 + 0.3e-3 * k, calls=1000)
    assert chosen[:3] == [2, 2, 2]
    assert p.current == 1
    assert chosen[100:].count(1) > 0.9 * len(chosen[100:])


def test_costly_work_stays_spread_and_probes_rarely():
    n_engines = 8
    compute = lambda k: 160e-3 / min(k, 8)  # noqa: E731
    chosen = _drive(
        ChunkPolicy(),
        lambda k: compute(k) + 0.3e-3 * k,
        n_items=16,
        n_engines=n_engines,
        calls=400,
        compute=compute,
    )
    assert chosen.count(8) > 0.9 * len(chosen)
    assert 4 not in chosen  # compute dominates: fewer chunks are never probed
    assert 16 not in chosen  # the work is even: more chunks are never probed


def test_uneven_work_moves_to_more_chunks():
    # Walkers' costs vary: at 2 chunks one engine computes 60 ms and the other
    # 20 (slack 20 ms of a 60 ms cycle); 4 and 8 chunks even that out.
    compute = {2: 60e-3, 4: 30e-3, 8: 15e-3}
    slack = {2: 20e-3, 4: 6e-3, 8: 1e-3}
    cost = {2: 60e-3, 4: 46e-3, 8: 42e-3}
    p = ChunkPolicy()
    _drive(p, cost.get, n_items=16, calls=400, compute=compute.get, slack=slack.get)
    assert p.current == 8


def test_even_work_within_the_margin_is_not_probed():
    # The busiest engine computes 4% of the cycle more than the mean: even
    # spread perfectly, the map could not win by the probe's margin.
    cycle = 80e-3
    chosen = _drive(
        ChunkPolicy(),
        lambda k: cycle,
        n_items=16,
        calls=400,
        compute=lambda k: 0.95 * cycle,
        slack=lambda k: (1 - MARGIN) * cycle * 0.8,
    )
    assert set(chosen) == {2}


def test_cheap_maps_probe_fewer_chunks():
    # Messages dominate (a chunk computes 0.1 ms of a 0.9 ms map): halving pays.
    compute = lambda k: 0.2e-3 / k  # noqa: E731
    chosen = _drive(ChunkPolicy(), lambda k: compute(k) + 0.8e-3 * k, calls=1000, compute=compute)
    assert chosen[100:].count(1) > 0.9 * len(chosen[100:])


def test_follows_a_changing_cost():
    p = ChunkPolicy()
    _drive(p, lambda k: 0.6e-3 + 0.3e-3 * k)
    assert p.current == 1
    compute = lambda k: 60e-3 / min(k, 2)  # noqa: E731
    _drive(p, lambda k: compute(k) + 0.3e-3 * k, calls=2 * MAX_EXPLORE_EVERY, compute=compute)
    assert p.current == 2


def test_engine_count_change_restarts_measuring():
    p = ChunkPolicy()
    _drive(p, lambda k: 0.6e-3 + 0.3e-3 * k)
    assert p.n_chunks(50, 4) == 4


def test_steady_cost_probes_ever_more_rarely():
    cheap = lambda k: 0.6e-3 + 0.3e-3 * k  # noqa: E731  (one chunk is best)
    # At one chunk the other engine idles (the default slack): two are probed.
    chosen = _drive(ChunkPolicy(), cheap, calls=2 * MAX_EXPLORE_EVERY + 200, compute=half_ms)
    late = chosen[-MAX_EXPLORE_EVERY:]
    # Every EXPLORE_EVERY maps would be 16 rounds here; doubling leaves one
    # or two, each of PROBE_BLOCKS blocks of probe maps.
    block = _Probe(2, 1, cheap(1)).block
    assert 0 < sum(k != 1 for k in late) <= 2 * PROBE_BLOCKS * block


def _rounds(chosen, current):
    """[first, last] index of each probe round: maps off ``current``, in
    blocks that a probe interleaves with blocks at ``current``."""
    rounds: list = []
    for i, k in enumerate(chosen):
        if k == current:
            continue
        if rounds and i - rounds[-1][1] <= MAX_BLOCK + 1:
            rounds[-1][1] = i
        else:
            rounds.append([i, i])
    return rounds


def test_a_probe_alternates_blocks_with_the_current_count_and_decides_pair_by_pair():
    # The machine slows down 3x while the first probe runs. Compared with the
    # maps before it, the probe would look slower; block pair by block pair,
    # it wins.
    p = ChunkPolicy()
    calls = []

    def drifting(k):
        slow = 3.0 if len(calls) > 3 else 1.0
        calls.append(k)
        return slow * (0.6e-3 + 0.3e-3 * k)

    block = _Probe(1, 2, drifting(2)).block
    calls.clear()
    chosen = _drive(p, drifting, calls=3 + 2 * PROBE_BLOCKS * block + 1)
    probe = chosen[3 : 3 + 2 * PROBE_BLOCKS * block]
    assert probe == ([1] * block + [2] * block) * PROBE_BLOCKS  # probe first, then the current
    assert p.current == 1


def test_maps_just_after_a_switch_are_not_counted():
    # Cheap maps: a block is at least BLOCK_S long and skips its first SETTLE_S.
    probe = _Probe(2, 1, 0.5e-3)
    assert probe.block >= 10 and probe.skip >= 5
    done = False
    for _ in range(2 * PROBE_BLOCKS * probe.block):
        k = probe.next_k()
        position = probe._last[1]  # noqa: SLF001
        # The probe costs 30% more. The current count's first maps after each
        # switch are slow (the probe's polling engines): counted, they would
        # make the probe look faster and win.
        done = probe.record(5.0 if k == 1 and position < probe.skip else (1.3 if k == 2 else 1.0))
    assert done and not probe.won()
    assert [len(b) for b in probe.samples] == [probe.block - probe.skip] * (2 * PROBE_BLOCKS)


def test_settling_outlasts_the_engines_polling():
    assert SETTLE_S > ENGINE_SPIN_S


def test_probe_rounds_double_their_gap_and_restart_after_a_move():
    cheap = lambda k: 0.6e-3 + 0.3e-3 * k  # noqa: E731  (one chunk is best)
    p = ChunkPolicy()
    chosen = _drive(p, cheap, calls=2500, compute=half_ms)
    rounds = _rounds(chosen, current=1)[1:]  # from the second round: the first moved
    # A round is counted from its last map, which ends a block at the current count.
    block = _Probe(2, 1, cheap(1)).block
    gaps = [b[0] - (a[1] + block) for a, b in zip(rounds, rounds[1:])]
    # ... and at least EXPLORE_RATIO times the round's own length.
    took = 2 * PROBE_BLOCKS * block
    assert gaps[:3] == [max(EXPLORE_EVERY * 2**i, EXPLORE_RATIO * took) for i in range(3)]
    assert gaps[2] > gaps[1]
    # The cost changes: two chunks now pay. The next round moves, and the one
    # after it comes sooner, not after the long gap.
    compute = lambda k: 60e-3 / min(k, 2)  # noqa: E731
    costly = lambda k: compute(k) + 0.3e-3 * k  # noqa: E731
    trail: list = []
    chosen = _drive(
        p,
        costly,
        calls=MAX_EXPLORE_EVERY + 3 * EXPLORE_EVERY,
        compute=compute,
        slack=lambda k: 5e-3,
        trail=trail,
    )  # uneven: 4 chunks are probed
    assert p.current == 2
    moved_at = trail.index(2)
    rounds = _rounds(chosen[moved_at + 1 :], current=2)
    # Right after the move it probes the new count's neighbours; then it waits.
    assert rounds[0][0] == 0
    block = _Probe(4, 2, costly(2)).block
    gap = rounds[1][0] - (rounds[0][1] + block)
    assert EXPLORE_EVERY <= gap < MAX_EXPLORE_EVERY  # without the restart: MAX_EXPLORE_EVERY


@pytest.mark.parametrize("chunks", [1, 2])
def test_the_pool_reports_how_unevenly_its_engines_worked(pool, chunks):
    # The first 4 walkers sleep 20 ms each, the last 4 return at once. In two
    # chunks one engine gets each half; in one, one engine gets all and the
    # others idle.
    x = np.zeros((8, 2))
    x[:4, 0] = 1.0
    with helpers.chunk_policy(pool, helpers.FixedChunks(chunks)) as policy:
        for _ in range(2):  # a map is recorded when the next one starts
            assert pool.map(helpers.sleeps_if_positive, x) == [helpers.gaussian(r) for r in x]
    assert len(policy.recorded) == 1  # the first map's, no earlier test's
    n_items, k, _, compute, slack = policy.recorded[0]
    assert (n_items, k) == (8, chunks)
    assert compute >= 4 * 0.02
    # The busiest engine's compute minus the mean over all the pool's
    # engines, idle ones counting 0: with one chunk, compute * (1 - 1/size);
    # with two, the other chunk's few microseconds (under 5 ms) lower it.
    mean_share = 1 / pool.size
    assert compute * (1 - mean_share) - 5e-3 * mean_share <= slack <= compute * (1 - mean_share)
    if chunks == 1:
        assert slack == pytest.approx(compute * (1 - mean_share))
