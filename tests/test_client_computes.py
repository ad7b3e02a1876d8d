"""``client_computes=True``: the client evaluates a share of each map itself.

Each test turns the option on in the shared pool of each transport, with a
new chunk policy: a map of ``n`` items first goes out as one chunk per
engine, the last of which the client keeps.
"""

from __future__ import annotations

import functools
import os

import helpers
import numpy as np
import pytest

from emcee_ipp import IPyParallelPool, MapTimeoutError, RemoteLogProbError
from emcee_ipp import _quickstart as qs
from emcee_ipp._chunking import ChunkPolicy

TRANSPORTS = ["direct", "ipp"]


@pytest.fixture(params=TRANSPORTS)
def computing(request, pools):
    """The shared pool of each transport, with client_computes=True and a new
    chunk policy for that setting (turned off after the test)."""
    pool = pools(request.param)
    pool.client_computes = True  # (the pool swaps in this setting's own policy)
    try:
        with helpers.chunk_policy(pool, ChunkPolicy()):  # a new one for each test
            yield pool
    finally:
        pool.client_computes = False


def test_quickstart_chain_identical_to_serial(computing):
    helpers.assert_chain_matches_serial(
        computing, qs.lnprob, 60, nwalkers=32, p0=qs.start_positions(32), args=qs.make_data()
    )


def test_client_and_engines_share_the_work_and_the_chain_stays_identical(computing):
    _, pooled = helpers.assert_chain_matches_serial(
        computing, helpers.slow_gaussian_with_pid, 20, nwalkers=32, args=(1e-4,), blobs=False
    )
    pids = set(np.unique(pooled.get_blobs()).tolist())
    assert os.getpid() in pids  # the client computed
    assert pids - {os.getpid()}  # and so did engines
    assert pids <= {os.getpid(), *computing.engine_pids.values()}


def test_first_map_the_client_keeps_the_last_chunk(computing):
    x = np.random.default_rng(3).normal(size=(8, 3))  # 2 chunks of 4: an engine's, the client's
    got = computing.map(helpers.gaussian_with_blobs, x)
    assert [g[:2] for g in got] == [w[:2] for w in map(helpers.gaussian_with_blobs, x)]
    pids = [g[2] for g in got]
    assert pids[4:] == [os.getpid()] * 4
    assert set(pids[:4]) <= set(computing.engine_pids.values()) and len(set(pids[:4])) == 1


def test_a_single_item_runs_in_the_client(computing):
    (got,) = computing.map(helpers.gaussian_with_blobs, np.ones((1, 3)))
    assert got[2] == os.getpid()


@pytest.mark.parametrize("func", [helpers.gaussian, helpers.gaussian_np, helpers.returns_int])
def test_results_match_builtin_map(computing, func):
    x = np.random.default_rng(4).normal(size=(51, 3))
    got, want = computing.map(func, x), list(map(func, x))
    assert [type(g) for g in got] == [type(w) for w in want]
    assert got == want


def test_error_in_the_clients_share_names_it(computing):
    x = np.ones((8, 3))
    x[6, 0] = -2.5  # in the last chunk: the client's
    with pytest.raises(RemoteLogProbError, match="in the client's share") as info:
        computing.map(helpers.raises_on_negative, x)
    assert info.value.engine_id is None
    assert np.array_equal(info.value.params, x[6])
    assert "raises_on_negative" in info.value.__cause__.tb


def test_error_on_an_engine_still_names_the_engine(computing):
    x = np.ones((8, 3))
    x[1, 0] = -2.5  # in the first chunk: an engine's
    with pytest.raises(RemoteLogProbError) as info:
        computing.map(helpers.raises_on_negative, x)
    assert info.value.engine_id in computing.client.ids


@pytest.mark.timeout(60)
def test_timeout_still_stops_an_engine_chunk(computing, tmp_path):
    """The engine's chunk is interrupted: the log-prob's frame there raised
    KeyboardInterrupt, and that engine computes again (left hanging, the
    pool would leave it out of every map for 60 s, and the next map would
    pass on the client and the other engine alone)."""
    x = np.ones((8, 3))
    x[0, 0] = -1.0  # an engine's chunk hangs; the client's returns at once
    hangs = helpers.Hangs(tmp_path / "hung")
    computing.timeout = 2.0
    try:
        with (
            helpers.chunk_policy(computing, helpers.FixedChunks(2)),
            pytest.raises(MapTimeoutError),
        ):
            computing.map(hangs, x)
    finally:
        computing.timeout = None
    assert computing.map(helpers.gaussian, np.ones((8, 3))) == [-1.5] * 8
    hung = int(helpers.wait_for_file(hangs.path))
    assert hung in computing.engine_pids.values()
    assert int(helpers.wait_for_file(hangs.path + ".interrupted", timeout=10)) == hung
    assert helpers.engine_computes(computing, hung, chunks=computing.size + 1)


def test_initializer_runs_in_the_client_too(pools):
    shared = pools("direct")
    old = helpers.get_engine_value()
    try:
        with IPyParallelPool(
            client=shared.client,
            client_computes=True,
            initializer=helpers.set_engine_value,
            initargs=(41,),
        ) as pool:
            assert helpers.get_engine_value() == 41
            assert pool.map(helpers.read_engine_value, np.zeros((8, 3))) == [41] * 8
    finally:
        helpers._ENGINE_VALUE = old  # noqa: SLF001


def test_client_takes_further_chunks_while_every_engine_is_busy(computing):
    """6 chunks of 2 on 2 engines: the engines take the first two and sleep
    0.4 s on them; the client keeps the last and, every engine being busy,
    takes the three left as well (its own items cost nothing)."""
    x = np.random.default_rng(5).normal(size=(12, 3))
    with helpers.chunk_policy(computing, helpers.FixedChunks(6)):
        got = computing.map(functools.partial(helpers.slow_except_in, pid=os.getpid()), x)
    assert [g[0] for g in got] == [-0.5 * float(np.dot(r, r)) for r in x]
    pids = [g[1] for g in got]
    assert pids[4:] == [os.getpid()] * 8
    assert set(pids[:4]) <= set(computing.engine_pids.values())


def test_turning_it_on_later_runs_the_initializer_here_once(pools):
    shared = pools("direct")
    old = helpers.get_engine_value()
    try:
        with IPyParallelPool(
            client=shared.client, initializer=helpers.set_engine_value, initargs=(43,)
        ) as pool:
            helpers.set_engine_value(None)
            pool.client_computes = True
            assert helpers.get_engine_value() == 43
            helpers.set_engine_value(None)
            pool.client_computes = False
            pool.client_computes = True
            assert helpers.get_engine_value() is None  # once only
    finally:
        helpers._ENGINE_VALUE = old  # noqa: SLF001


@pytest.mark.timeout(120)
def test_a_new_function_with_large_data_first_map(computing):
    """A function whose 40 MB must reach the engine first (the client waits
    for it to go out before computing its own chunk): the first map's
    results, and the next's, are whole and in order."""
    fn = helpers.CountingLogProb(scale=2.0, data=np.zeros(5 * 2**20))
    x = np.random.default_rng(7).normal(size=(8, 3))
    want = list(map(fn, x))
    assert computing.map(fn, x) == want
    assert computing.map(fn, x) == want


@pytest.mark.timeout(120)
def test_the_client_computes_only_once_a_large_request_is_out(computing):
    """The engine's request carries a new function's 40 MB, more than its
    socket takes at once. The client's own chunk (4 items of 1 s) must not
    start before those bytes are out, or the engine would get them only
    after the client's 4 s: the engine's chunk starts well within them."""
    fn = helpers.StampedLogProb(np.zeros(5 * 2**20), pid=os.getpid(), delay=1.0)
    x = np.random.default_rng(8).normal(size=(8, 3))
    with helpers.chunk_policy(computing, helpers.FixedChunks(2)):  # the engine's 4, the client's 4
        got = computing.map(fn, x)
    assert [g[0] for g in got] == [-0.5 * float(np.dot(r, r)) for r in x]
    assert [g[1] for g in got][4:] == [os.getpid()] * 4
    engine_start, client_start = got[0][2], got[4][2]
    # Broken, the engine would start after client_start + 4 s; the 40 MB
    # take ~0.3 s through ipyparallel's controller, ~0.05 s directly.
    assert engine_start < client_start + 3.0


@pytest.mark.timeout(120)
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_beside_a_single_engine_the_client_is_a_second_worker(transport):
    """One engine: the chunk policy counts the client as a second worker, so
    maps start split between the engine and the client (counted as one
    worker, the client would compute alone), and the chain is still the
    serial one."""
    with IPyParallelPool(1, transport=transport, client_computes=True) as pool:
        _, pooled = helpers.assert_chain_matches_serial(
            pool, helpers.slow_gaussian_with_pid, 10, nwalkers=32, args=(1e-4,), blobs=False
        )
        assert set(np.unique(pooled.get_blobs()).tolist()) == {
            os.getpid(),
            *pool.engine_pids.values(),
        }
