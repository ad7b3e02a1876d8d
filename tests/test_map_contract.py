"""The pool's map against the built-in map, on the same inputs."""
from __future__ import annotations

import numpy as np
import pytest

import helpers
from emcee_ipp import EngineSetupError, MapTimeoutError, RemoteLogProbError


def _same(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert type(g) is type(w), (g, w)
        if isinstance(w, tuple):
            assert len(g) == len(w)
            for gi, wi in zip(g, w):
                assert np.array_equal(gi, wi)
        else:
            assert g == w or (np.isnan(g) and np.isnan(w))


@pytest.mark.parametrize(
    "func", [helpers.gaussian, helpers.gaussian_np, helpers.returns_int]
)
@pytest.mark.parametrize("n_items", [1, 2, 3, 50, 101])
def test_scalars_match_builtin_map(pool, func, n_items):
    x = np.random.default_rng(n_items).normal(size=(n_items, 3))
    _same(pool.map(func, x), list(map(func, x)))


def test_tuples_with_blobs_match_builtin_map(pool):
    x = np.random.default_rng(1).normal(size=(40, 3))
    got = pool.map(helpers.gaussian_with_blobs, x)
    want = list(map(helpers.gaussian_with_blobs, x))
    assert [g[:2] for g in got] == [w[:2] for w in want]
    assert all(isinstance(g, tuple) for g in got)


def test_dicts_match_builtin_map(pool):
    rng = np.random.default_rng(2)
    items = [dict(zip("abc", rng.normal(size=3))) for _ in range(30)]
    _same(pool.map(helpers.gaussian_named, items), list(map(helpers.gaussian_named, items)))


def test_generator_and_list_inputs(pool):
    rows = [np.full(3, float(i)) for i in range(10)]
    want = list(map(helpers.gaussian, rows))
    _same(pool.map(helpers.gaussian, iter(rows)), want)
    _same(pool.map(helpers.gaussian, rows), want)


def test_empty_iterable_returns_empty_list(pool):
    assert pool.map(helpers.gaussian, []) == []
    assert pool.map(helpers.gaussian, np.empty((0, 3))) == []


def test_order_kept_when_spread_over_every_engine(pool):
    # A log-prob costly enough that the policy uses every engine.
    x = np.arange(60, dtype=float).reshape(20, 3)
    for _ in range(3):  # 20 x 5 ms of work: dozens of messages' worth
        got = pool.map(helpers.slower_gaussian_with_pid, x)
        assert [g[0] for g in got] == [helpers.gaussian(r) for r in x]
    assert len({g[1] for g in got}) == pool.size


def test_remote_error_names_engine_and_parameters(pool):
    x = np.array([[1.0, 0.0], [-2.5, 1.0]])
    with pytest.raises(RemoteLogProbError) as info:
        pool.map(helpers.raises_on_negative, x)
    err = info.value
    assert err.engine_id in pool.client.ids
    assert np.array_equal(err.params, x[1])
    assert "ValueError" in str(err) and "-2.5" in str(err)
    assert "negative first parameter" in str(err.__cause__)
    assert "raises_on_negative" in err.__cause__.tb
    # The pool stays usable.
    assert pool.map(helpers.gaussian, x) == list(map(helpers.gaussian, x))


@pytest.mark.timeout(60)
def test_result_that_cannot_travel_back_is_an_error_not_a_hang(pool):
    x = np.array([[1.0, 0.0], [2.0, 1.0]])
    pool.timeout = 20.0  # a hang fails the test with MapTimeoutError
    try:
        with pytest.raises(Exception, match="(?i)pickle") as info:
            pool.map(helpers.unpicklable_blob, x)
        assert not isinstance(info.value, MapTimeoutError)
    finally:
        pool.timeout = None
    assert pool.map(helpers.gaussian, x) == list(map(helpers.gaussian, x))


def test_what_the_log_prob_prints_is_shown_here_in_order(pool, capsys):
    """Prints on the engines reach the client's stdout and stderr, chunk by
    chunk in input order, when the map returns; the client keeps none of it."""
    x = np.arange(24, dtype=float).reshape(12, 2)
    held_before = _metadata_text(pool)
    for _ in range(20):
        assert pool.map(helpers.chatty, x) == [helpers.gaussian(r) for r in x]
        captured = capsys.readouterr()
        assert captured.out == "".join(f"walker {r[0]:.1f}\n" for r in x)
        assert captured.err == "".join(f"note {r[0]:.1f}\n" for r in x)
    assert _metadata_text(pool) == held_before
    # What a chunk printed before its error is shown too.
    y = np.array([[-2.0, 0.0], [-1.0, 0.0], [1.0, 0.0], [2.0, 0.0]])
    with pytest.raises(RemoteLogProbError):
        pool.map(helpers.chatty_raises_on_positive, y)
    assert "walker 1.0\n" in capsys.readouterr().out


def _metadata_text(pool) -> int:
    """Characters of engine output the ipyparallel client holds."""
    return sum(len(md.get("stdout") or "") + len(md.get("stderr") or "")
               for md in list(pool.client.metadata.values()) if isinstance(md, dict))
