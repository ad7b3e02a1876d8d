"""The chunk-count policy, on its own (pure client-side arithmetic)."""
from emcee_ipp._chunking import EXPLORE_EVERY, MIN_SAMPLES, ChunkPolicy, candidates


def test_candidates():
    assert candidates(50, 2) == [1, 2, 4, 8]
    assert candidates(3, 8) == [1, 2, 3]
    assert candidates(100, 8)[-1] == 32
    assert 1 in candidates(1, 1)


def _drive(policy, cost, n_items=50, n_engines=2, calls=200):
    """Feed the policy a wall-time model ``cost(k)``; return its choices."""
    chosen = []
    for _ in range(calls):
        k = policy.n_chunks(n_items, n_engines)
        policy.record(n_items, k, cost(k))
        chosen.append(k)
    return chosen


def test_first_call_uses_every_engine():
    assert ChunkPolicy().n_chunks(50, 4) == 4
    assert ChunkPolicy().n_chunks(3, 8) == 3  # never more chunks than items


def test_settles_on_the_fastest_and_keeps_checking():
    # Cheap work: one chunk is fastest. Costly work: one chunk per engine.
    cheap = _drive(ChunkPolicy(), lambda k: 0.6e-3 + 0.3e-3 * k)
    costly = _drive(ChunkPolicy(), lambda k: 50e-3 / min(k, 2) + 0.3e-3 * k)
    warmup = MIN_SAMPLES * 4
    assert cheap[warmup:].count(1) > 0.9 * len(cheap[warmup:])
    assert costly[warmup:].count(2) > 0.9 * len(costly[warmup:])
    assert set(cheap[warmup:]) != {1}  # it re-tries neighbours now and then


def test_follows_a_changing_cost():
    p = ChunkPolicy()
    _drive(p, lambda k: 0.6e-3 + 0.3e-3 * k)
    assert p.best() == 1
    _drive(p, lambda k: 60e-3 / min(k, 2) + 0.3e-3 * k, calls=20 * EXPLORE_EVERY)
    assert p.best() == 2


def test_engine_count_change_restarts_measuring():
    p = ChunkPolicy()
    _drive(p, lambda k: 0.6e-3 + 0.3e-3 * k)
    assert p.n_chunks(50, 4) == 4
