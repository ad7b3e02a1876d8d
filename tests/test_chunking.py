"""The chunk-count policy, on its own (pure client-side arithmetic)."""
from emcee_ipp._chunking import EXPLORE_EVERY, MAX_EXPLORE_EVERY, PROBE_MAPS, ChunkPolicy


def _drive(policy, cost, n_items=50, n_engines=2, calls=200, compute=lambda k: 0.0):
    """Feed the policy a model of wall time ``cost(k)`` and of the longest
    chunk's compute time ``compute(k)``; return its choices."""
    chosen = []
    for _ in range(calls):
        k = policy.n_chunks(n_items, n_engines)
        policy.record(n_items, k, cost(k), compute(k))
        chosen.append(k)
    return chosen


def test_first_calls_use_every_engine():
    assert ChunkPolicy().n_chunks(50, 4) == 4
    assert ChunkPolicy().n_chunks(3, 8) == 3  # never more chunks than items


def test_cheap_work_moves_to_one_chunk():
    chosen = _drive(ChunkPolicy(), lambda k: 0.6e-3 + 0.3e-3 * k)
    assert chosen[:3] == [2, 2, 2]
    assert chosen[20:].count(1) > 0.9 * len(chosen[20:])


def test_costly_work_stays_spread_and_probes_rarely():
    n_engines = 8
    compute = lambda k: 160e-3 / min(k, 8)  # noqa: E731
    chosen = _drive(ChunkPolicy(), lambda k: compute(k) + 0.3e-3 * k,
                    n_items=16, n_engines=n_engines, calls=400, compute=compute)
    assert chosen.count(8) > 0.9 * len(chosen)
    assert 4 not in chosen  # compute dominates: fewer chunks are never probed


def test_cheap_maps_probe_fewer_chunks():
    # Messages dominate (a chunk computes 0.1 ms of a 0.9 ms map): halving pays.
    compute = lambda k: 0.2e-3 / k  # noqa: E731
    chosen = _drive(ChunkPolicy(), lambda k: compute(k) + 0.8e-3 * k, compute=compute)
    assert chosen[20:].count(1) > 0.9 * len(chosen[20:])


def test_follows_a_changing_cost():
    p = ChunkPolicy()
    _drive(p, lambda k: 0.6e-3 + 0.3e-3 * k)
    assert p.current == 1
    _drive(p, lambda k: 60e-3 / min(k, 2) + 0.3e-3 * k, calls=5 * EXPLORE_EVERY)
    assert p.current == 2


def test_engine_count_change_restarts_measuring():
    p = ChunkPolicy()
    _drive(p, lambda k: 0.6e-3 + 0.3e-3 * k)
    assert p.n_chunks(50, 4) == 4


def test_steady_cost_probes_ever_more_rarely():
    cheap = lambda k: 0.6e-3 + 0.3e-3 * k  # noqa: E731  (one chunk is best)
    chosen = _drive(ChunkPolicy(), cheap, calls=2 * MAX_EXPLORE_EVERY + 200)
    late = chosen[-MAX_EXPLORE_EVERY:]
    # Every EXPLORE_EVERY maps would be 16 rounds here; doubling leaves one or two.
    assert 0 < sum(k != 1 for k in late) <= 2 * PROBE_MAPS


def _round_starts(chosen, current=1):
    return [i for i, k in enumerate(chosen) if k != current and (i == 0 or chosen[i - 1] == current)]


def test_probe_rounds_double_their_gap_and_restart_after_a_move():
    cheap = lambda k: 0.6e-3 + 0.3e-3 * k  # noqa: E731  (one chunk is best)
    p = ChunkPolicy()
    chosen = _drive(p, cheap, calls=1700)
    starts = _round_starts(chosen[10:])
    # A round's last probe map is the one it is counted from.
    gaps = [b - a - (PROBE_MAPS - 1) for a, b in zip(starts, starts[1:])]
    assert gaps[:3] == [EXPLORE_EVERY, 2 * EXPLORE_EVERY, 4 * EXPLORE_EVERY]
    # The cost changes: two chunks now pay. The next round moves, and the one
    # after it comes EXPLORE_EVERY maps later, not after the long gap.
    costly = lambda k: 60e-3 / min(k, 2) + 0.3e-3 * k  # noqa: E731
    chosen = _drive(p, costly, calls=MAX_EXPLORE_EVERY + 3 * EXPLORE_EVERY)
    moved_at = chosen.index(2)
    assert p.current == 2
    later = _round_starts(chosen[moved_at + 2 * PROBE_MAPS:], current=2)
    assert later and later[0] <= EXPLORE_EVERY + 2 * PROBE_MAPS
