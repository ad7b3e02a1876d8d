"""Starting, connecting, initializing and closing pools."""

from __future__ import annotations

import os
import re

import helpers
import numpy as np
import pytest

from emcee_ipp import (
    ClusterNotFoundError,
    EngineSetupError,
    IPyParallelPool,
    PoolClosedError,
)


@pytest.mark.parametrize("n", [0, -1, 1.5, True, "2"])
def test_bad_n_is_refused_at_once(n):
    with pytest.raises(ValueError, match=f"n={n!r}"):
        IPyParallelPool(n)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"timeout": 0},
        {"timeout": -1.0},
        {"timeout": "5"},
        {"timeout": True},
        {"timeout": float("nan")},
        {"start_timeout": None},
        {"start_timeout": "60"},
    ],
)
def test_bad_timeouts_are_refused_at_once(kwargs):
    ((name, value),) = kwargs.items()
    with pytest.raises(
        ValueError, match=rf"{name}={re.escape(repr(value))}: give a positive number"
    ):
        IPyParallelPool(2, **kwargs)


@pytest.mark.parametrize(
    "attribute, value, error",
    [
        ("timeout", "5", ValueError),
        ("timeout", 0, ValueError),
        ("client_computes", "no", TypeError),
        ("client_computes", 1, TypeError),
    ],
)
def test_bad_settings_on_a_live_pool_are_refused(pools, attribute, value, error):
    pool = pools("direct")
    before = getattr(pool, attribute)
    with pytest.raises(error, match=rf"{attribute}={re.escape(repr(value))}"):
        setattr(pool, attribute, value)
    assert getattr(pool, attribute) == before


def test_two_connection_arguments_are_refused(external_cluster):
    with pytest.raises(ValueError, match="only one way"):
        IPyParallelPool(cluster=external_cluster, profile="x")


@pytest.mark.timeout(60)
def test_missing_profile_is_a_clear_error(ipython_dir):
    with pytest.raises(ClusterNotFoundError, match="no_such_profile.*ipcluster start"):
        IPyParallelPool(profile="no_such_profile", start_timeout=2)


@pytest.mark.timeout(60)
def test_missing_cluster_id_is_a_clear_error(external_cluster):
    with pytest.raises(ClusterNotFoundError, match="cluster_id='nope'.*--cluster-id=nope"):
        IPyParallelPool(profile="emcee_ipp_test", cluster_id="nope", start_timeout=2)


def test_schwimmbad_interface(pool):
    assert pool.is_master() is True
    assert pool.is_worker() is False
    assert pool.wait() is None
    assert pool.size == 2
    assert pool.transport in ("direct", "ipp")


def test_client_connection_leaves_cluster_running(external_cluster):
    client = external_cluster.connect_client_sync()
    try:
        with IPyParallelPool(client=client) as p:
            assert p.map(helpers.gaussian, np.ones((3, 2))) == [-1.0] * 3
        with pytest.raises(PoolClosedError):
            p.map(helpers.gaussian, np.ones((3, 2)))
        # The user's client and the cluster still work.
        assert len(client[:].apply_sync(os.getpid)) == len(client.ids) >= 1
    finally:
        client.close()


def test_profile_connection(external_cluster):
    with IPyParallelPool(profile="emcee_ipp_test", cluster_id="ext") as p:
        assert p.size >= 1
        x = np.random.default_rng(3).normal(size=(7, 3))
        assert p.map(helpers.gaussian, x) == list(map(helpers.gaussian, x))
    # Closing the pool did not stop the cluster.
    with IPyParallelPool(cluster=external_cluster) as p2:
        assert p2.map(helpers.gaussian, x) == list(map(helpers.gaussian, x))


def test_close_is_idempotent_and_map_after_close_fails(external_cluster):
    p = IPyParallelPool(cluster=external_cluster)
    p.close()
    p.close()
    p.terminate()
    p.join()
    with pytest.raises(PoolClosedError, match="pool is closed"):
        p.map(helpers.gaussian, np.ones((2, 2)))
    with pytest.raises(PoolClosedError):
        p.map(helpers.gaussian, [])
    assert "closed" in repr(p)


def test_context_manager_closes(external_cluster):
    with IPyParallelPool(cluster=external_cluster) as p:
        assert p.map(helpers.gaussian, np.zeros((1, 1))) == [0.0]
    with pytest.raises(PoolClosedError):
        p.map(helpers.gaussian, np.ones((2, 2)))


def test_initializer_runs_on_every_engine_including_late_ones(
    external_cluster, add_external_engine
):
    client = external_cluster.connect_client_sync()
    try:
        with IPyParallelPool(
            client=client, initializer=helpers.set_engine_value, initargs=("ready",)
        ) as p:
            first = set(client.ids)
            assert set(helpers.remotely(client[:], helpers.get_engine_value)) == {"ready"}
            add_external_engine()  # (removed after the test)
            client.wait_for_engines(len(first) + 1, timeout=60, interactive=False)
            new = set(client.ids) - first
            assert new
            # The next map prepares the new engine before using any engine.
            assert p.map(helpers.gaussian, np.zeros((4, 2))) == [0.0] * 4
            assert p.size == len(first) + 1
            for eid in new:
                assert helpers.remotely(client[eid], helpers.get_engine_value) == "ready"
            assert p.map(helpers.read_engine_value, np.zeros((8, 1))) == ["ready"] * 8
    finally:
        client.close()


@pytest.mark.timeout(90)
@pytest.mark.parametrize("transport", ["direct", "ipp"])
def test_a_sampler_does_not_make_new_engines_import_emcee(transport):
    """emcee's log-prob wrapper travels as emcee_ipp's own (``_logprob``):
    importing emcee (and scipy.stats) cost a new engine 0.7-0.9 s here. A
    pool of its own, since the shared clusters' engines run samplers whole
    for run_split, and import emcee for it."""
    import emcee

    with IPyParallelPool(1, transport=transport) as p:
        sampler = emcee.EnsembleSampler(
            8, 2, helpers.gaussian_shifted, args=(0.5,), kwargs={"scale": 2.0}, pool=p
        )
        sampler.run_mcmc(np.random.default_rng(0).normal(size=(8, 2)), 5)
        view = p.client[p.client.ids[0]]
        assert view.apply_sync(helpers.cached_function_types) == ["LogProb"]  # the maps ran there
        assert not view.apply_sync(helpers.has_module, "emcee")


def test_failing_initializer_is_a_clear_error(external_cluster):
    with pytest.raises(EngineSetupError, match="initializer failed on engine"):
        IPyParallelPool(cluster=external_cluster, initializer=helpers.failing_initializer)


def test_unpicklable_log_prob_names_the_object(pool):
    import threading

    from emcee_ipp import SerializationError

    lock = threading.Lock()

    def uses_lock(x):
        with lock:
            return 0.0

    with pytest.raises(SerializationError, match="could not pickle.*uses_lock"):
        pool.map(uses_lock, np.zeros((2, 2)))
    assert pool.map(helpers.gaussian, np.zeros((2, 2))) == [0.0, 0.0]
