"""The pool's map against the built-in map, on the same inputs."""

from __future__ import annotations

import helpers
import numpy as np
import pytest

from emcee_ipp import RemoteLogProbError


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


@pytest.mark.parametrize("func", [helpers.gaussian, helpers.gaussian_np, helpers.returns_int])
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


@pytest.mark.parametrize("chunks", [2, 5])
def test_order_kept_when_spread_over_every_engine(pool, chunks):
    # One chunk per engine, and more chunks than engines (each to the next
    # free engine), whatever earlier tests taught the pool's chunk policy.
    x = np.arange(60, dtype=float).reshape(20, 3)
    with helpers.chunk_policy(pool, helpers.FixedChunks(chunks)):
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
        with pytest.raises(RemoteLogProbError) as info:
            pool.map(helpers.unpicklable_blob, x)
    finally:
        pool.timeout = None
    err = info.value
    # Named: what failed (the results' trip back), the pickling error and
    # its object, the engine, and a walker of the chunk.
    assert err.type_name == "TypeError"
    assert "the results could not be sent back" in str(err)
    assert "cannot pickle '_thread.lock' object" in str(err)
    assert err.engine_id in pool.client.ids
    assert any(np.array_equal(err.params, row) for row in x)
    assert "pickle" in err.__cause__.tb
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


# What a chunk prints is kept up to this many characters per stream (the
# README's 1 MB); the rest is dropped, and a line says how much.
PRINT_CAP = 1_000_000


def test_what_the_log_prob_prints_is_capped_per_chunk_and_stream(pool, capsys):
    """Two chunks of two walkers, each walker printing 600,001 characters
    on stdout and on stderr: each chunk's 1,200,002 per stream are cut to
    the first 1,000,000, followed by a line counting the 200,002 dropped;
    the chunks in input order."""
    x = np.arange(8, dtype=float).reshape(4, 2)  # walker i prints chr(97 + i)
    with helpers.chunk_policy(pool, helpers.FixedChunks(2)):
        assert pool.map(helpers.prints_a_lot, x) == [helpers.gaussian(r) for r in x]
    captured = capsys.readouterr()
    for text, case in ((captured.out, str.lower), (captured.err, str.upper)):
        want = ""
        for chunk in (x[:2], x[2:]):
            full = "".join(case(chr(97 + int(r[0]))) * 600_000 + "\n" for r in chunk)
            want += (
                full[:PRINT_CAP] + f"\n[emcee_ipp: {len(full) - PRINT_CAP} more "
                "characters of output dropped]\n"
            )
        same = text == want  # (not in the assert: pytest would diff 2 MB)
        assert same, f"{len(text)} characters, want {len(want)}: {text[-80:]!r}"


def _metadata_text(pool) -> int:
    """Characters of engine output the ipyparallel client holds."""
    return sum(
        len(md.get("stdout") or "") + len(md.get("stderr") or "")
        for md in list(pool.client.metadata.values())
        if isinstance(md, dict)
    )
