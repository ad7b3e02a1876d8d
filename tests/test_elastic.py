"""Engines joining and leaving while a run goes on."""
from __future__ import annotations

import threading

import emcee
import numpy as np
import pytest

import helpers
from emcee_ipp import IPyParallelPool


@pytest.mark.timeout(180)
def test_engine_joining_mid_run_takes_work_and_chain_is_unchanged(external_cluster):
    client = external_cluster.connect_client_sync()
    new_set = {}
    try:
        with IPyParallelPool(client=client) as pool:
            size_before = pool.size
            p0 = np.random.RandomState(2).normal(size=(16, 3))

            def run(target):
                sampler = emcee.EnsembleSampler(
                    16, 3, helpers.slow_gaussian_with_pid, args=(4e-3,), pool=target
                )
                sampler.random_state = np.random.RandomState(4).get_state()
                sampler.run_mcmc(p0, 60)
                return sampler

            def add_engine():
                new_set["id"] = external_cluster.start_engines_sync(n=1)

            timer = threading.Timer(0.5, add_engine)
            timer.start()
            pooled = run(pool)
            timer.join()
            serial = run(None)
            assert np.array_equal(pooled.get_chain(), serial.get_chain())
            assert pool.size == size_before + 1
            # The newcomer's pid shows up in the blobs of the later steps.
            new_pids = set(pool.engine_pids.values()) - set(
                list(pool.engine_pids.values())[:size_before]
            )
            assert new_pids & set(np.unique(pooled.get_blobs()[-10:]).tolist())
    finally:
        if "id" in new_set:
            external_cluster.stop_engines_sync(new_set["id"])
        client.close()
