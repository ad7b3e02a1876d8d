"""The chunk-count policy, on its own (pure client-side arithmetic)."""
from emcee_ipp._chunking import ChunkPolicy


def test_first_call_uses_every_engine():
    assert ChunkPolicy().n_chunks(50, 4) == 4
    assert ChunkPolicy().n_chunks(3, 8) == 3


def test_cheap_work_stays_on_one_engine_costly_work_spreads():
    p = ChunkPolicy()
    # quickstart-like: 12 us per item, a 3 ms message.
    p.record(50, [(0, ("ok", 300e-6)), (1, ("ok", 300e-6))], 3e-3 + 300e-6)
    assert p.n_chunks(50, 2) == 1
    q = ChunkPolicy()
    # 1 ms per item: 16 ms of work per map.
    q.record(16, [(0, ("ok", 8e-3)), (1, ("ok", 8e-3))], 8e-3 + 3e-3)
    assert q.n_chunks(16, 2) == 2
    assert q.n_chunks(16, 32) == 5  # 16 ms of work over 3 ms messages


def test_estimates_follow_a_changing_cost():
    p = ChunkPolicy()
    p.record(50, [(0, ("ok", 0.6e-3))], 3.6e-3)
    assert p.n_chunks(50, 2) == 1
    for _ in range(30):  # the log-prob became 100x costlier
        p.record(50, [(0, ("ok", 30e-3)), (1, ("ok", 30e-3))], 33e-3)
    assert p.n_chunks(50, 2) == 2
