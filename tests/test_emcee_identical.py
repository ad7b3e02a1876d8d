"""The correctness anchor: chains through the pool are bit-identical to serial."""

from __future__ import annotations

import emcee
import helpers
import numpy as np
import pytest
from helpers import assert_chain_matches_serial, assert_identical, run_chain

from emcee_ipp import _quickstart as qs


def test_quickstart_identical(pool):
    data = qs.make_data()
    _, pooled = assert_chain_matches_serial(
        pool, qs.lnprob, 60, nwalkers=32, args=data, p0=qs.start_positions(32)
    )
    assert np.isfinite(pooled.get_log_prob()).all()


@pytest.mark.parametrize(
    "moves",
    [
        None,
        [(emcee.moves.DEMove(), 0.8), (emcee.moves.DESnookerMove(), 0.2)],
        [emcee.moves.WalkMove(), emcee.moves.KDEMove()],
        emcee.moves.GaussianMove(0.5),
    ],
    ids=["default", "de-mix", "walk-kde", "mh-gaussian"],
)
def test_moves_identical(pool, moves):
    assert_chain_matches_serial(pool, helpers.gaussian, moves=moves)


def test_blobs_identical(pool):
    _, pooled = assert_chain_matches_serial(
        pool, helpers.slow_gaussian_with_pid, args=(1e-4,), blobs=False
    )
    # The blob is the pid that evaluated the walker: only engines' (the work
    # really ran remotely).
    assert set(np.unique(pooled.get_blobs())) <= set(pool.engine_pids.values())


def test_float_blobs_identical(pool):
    assert_chain_matches_serial(pool, helpers.gaussian_with_sum_blob)


def test_parameter_names_identical(pool):
    assert_chain_matches_serial(pool, helpers.gaussian_named, parameter_names=["a", "b", "c"])


def test_args_and_kwargs_identical(pool):
    data = qs.make_data()
    assert_chain_matches_serial(
        pool,
        qs.lnprob,
        30,
        nwalkers=24,
        p0=qs.start_positions(24),
        kwargs={"x": data[0], "y": data[1], "yerr": data[2]},
    )


def test_replaced_args_reach_the_engines(pool):
    """A sampler whose args or kwargs are replaced between runs (a notebook
    cell fitting new data) samples the new posterior, as serial emcee does."""

    def run(target):
        sampler = run_chain(
            target, helpers.gaussian_shifted, 10, ndim=2, args=(np.zeros(2),), kwargs={"scale": 1.0}
        )
        sampler.log_prob_fn.args = (np.full(2, 3.0),)
        state = sampler.run_mcmc(None, 10)
        sampler.log_prob_fn.kwargs = {"scale": 0.5}
        sampler.run_mcmc(state, 10)
        return sampler

    assert_identical(run(None), run(pool))
