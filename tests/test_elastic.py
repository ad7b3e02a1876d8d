"""Engines joining and leaving while a run goes on."""

from __future__ import annotations

import helpers
import pytest

from emcee_ipp import IPyParallelPool


@pytest.mark.timeout(180)
def test_engine_joining_mid_run_takes_work_and_chain_is_unchanged(
    external_cluster, add_external_engine
):
    """An engine started after step 5 takes work from the map after it
    registers: the run goes on until the newcomer has computed in 5 steps
    (at most 3000 steps), and the chain equals the serial one of as many."""
    client = external_cluster.connect_client_sync()
    try:
        with IPyParallelPool(client=client) as pool:
            size_before = pool.size
            old_pids = set(pool.engine_pids.values())
            steps_with_newcomer = []

            def on_step(sampler):
                if sampler.iteration == 5:
                    add_external_engine()
                if set(sampler.get_blobs()[-1].tolist()) - old_pids:  # this step's pids
                    steps_with_newcomer.append(sampler.iteration)
                return len(steps_with_newcomer) >= 5

            helpers.assert_chain_matches_serial(
                pool,
                helpers.slow_gaussian_with_pid,
                3000,
                args=(4e-3,),
                blobs=False,
                on_step=on_step,
            )
            assert len(steps_with_newcomer) == 5, "the new engine never computed"
            assert pool.size == size_before + 1
    finally:
        client.close()
