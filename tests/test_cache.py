"""Per-engine caching: pickled once, never stale, bounded, clearable."""

from __future__ import annotations

import gc

import helpers
import numpy as np

from emcee_ipp import _engine
from emcee_ipp._cache import MAX_ENTRIES, FunctionCache
from emcee_ipp._logprob import LogProb, portable


def _on_every_engine(pool, fn):
    return pool.client[:].apply_sync(fn)


def test_function_pickled_once_per_engine(pool):
    x = np.random.default_rng(0).normal(size=(20, 3))
    big = np.random.default_rng(1).normal(size=1_000_000)  # 8 MB of args
    f = helpers.CountingLogProb(scale=2.0, data=big)
    before_client = helpers.N_PICKLES
    before_engines = _on_every_engine(pool, helpers.n_unpickles)
    for _ in range(10):
        got = pool.map(f, x)
    assert got == [f(r) for r in x]
    assert helpers.N_PICKLES - before_client == 1
    after_engines = _on_every_engine(pool, helpers.n_unpickles)
    deltas = [a - b for a, b in zip(after_engines, before_engines)]
    assert all(d <= 1 for d in deltas), deltas
    assert sum(deltas) >= 1


def test_every_engine_unpickles_at_most_once_when_all_are_used(pool):
    x = np.arange(48, dtype=float).reshape(16, 3)
    f = helpers.CountingLogProb(scale=3.0)
    before = _on_every_engine(pool, helpers.n_unpickles)
    # Spread every call over every engine, whatever the chunk policy prefers.
    with helpers.chunk_policy(pool, helpers.FixedChunks(pool.size)):
        for _ in range(5):
            assert pool.map(f, x) == [f(r) for r in x]
    after = _on_every_engine(pool, helpers.n_unpickles)
    assert [a - b for a, b in zip(after, before)] == [1] * pool.size


def test_new_object_reusing_an_id_is_not_stale(pool):
    x = np.ones((6, 2))
    seen_ids = []
    for k in range(60):
        f = helpers.Offset(k)
        seen_ids.append(id(f))
        assert pool.map(f, x) == [2.0 + k] * 6, f"stale result for k={k}"
        del f
        # Drop the client's entry (and so its reference) but not the engines':
        # the next Offset often lands at the freed address, while the engines
        # still hold the old function under the old token.
        pool._cache.clear()  # noqa: SLF001
        gc.collect()
    # The scenario really happened: new objects reused old ones' id().
    assert len(set(seen_ids)) <= len(seen_ids) - 3


def test_cache_is_bounded_and_clearable(pool):
    x = np.ones((4, 2))
    keep = [helpers.Offset(100 + k) for k in range(MAX_ENTRIES + 3)]
    for f in keep:
        pool.map(f, x)
    assert len(pool._cache) <= MAX_ENTRIES  # noqa: SLF001
    for tokens in _on_every_engine(pool, _engine.cached_tokens):
        assert len(tokens) <= MAX_ENTRIES
    pool.clear_cache()
    assert len(pool._cache) == 0  # noqa: SLF001
    assert all(t == [] for t in _on_every_engine(pool, _engine.cached_tokens))
    # Still works after clearing: the engines are refilled lazily.
    assert pool.map(keep[0], x) == [102.0] * 4


def test_emcee_s_wrapper_is_pickled_as_the_same_call_without_emcee():
    import cloudpickle
    from emcee.ensemble import _FunctionWrapper

    wrapped = _FunctionWrapper(helpers.gaussian_shifted, [0.5], {"scale": 2.0})
    entry = FunctionCache().get(wrapped)
    assert entry.func is wrapped  # looked up by the object emcee passes
    assert b"emcee.ensemble" not in entry.payload
    received = cloudpickle.loads(entry.payload)
    assert type(received) is LogProb
    x = np.random.default_rng(2).normal(size=(5, 2))
    assert [received(r) for r in x] == [wrapped(r) for r in x]
    assert portable(helpers.gaussian) is helpers.gaussian  # anything else as it is
    del wrapped.kwargs  # a future emcee's wrapper of another shape: sent as it is
    assert portable(wrapped) is wrapped
