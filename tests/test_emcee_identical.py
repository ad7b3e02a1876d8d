"""The correctness anchor: chains through the pool are bit-identical to serial."""
from __future__ import annotations

import emcee
import numpy as np
import pytest

import helpers
from emcee_ipp import _quickstart as qs


def _run(pool, log_prob, ndim=3, nwalkers=16, nsteps=40, p0=None, **kwargs):
    sampler = emcee.EnsembleSampler(nwalkers, ndim, log_prob, pool=pool, **kwargs)
    sampler.random_state = np.random.RandomState(1234).get_state()
    if p0 is None:
        p0 = np.random.RandomState(5).normal(size=(nwalkers, ndim))
    sampler.run_mcmc(p0, nsteps)
    return sampler


def _assert_identical(a, b):
    assert np.array_equal(a.get_chain(), b.get_chain())
    assert np.array_equal(a.get_log_prob(), b.get_log_prob())
    blobs_a, blobs_b = a.get_blobs(), b.get_blobs()
    if blobs_a is None:
        assert blobs_b is None
    else:
        for name in blobs_a.dtype.names or [None]:
            ba = blobs_a[name] if name else blobs_a
            bb = blobs_b[name] if name else blobs_b
            assert np.array_equal(ba, bb)


def test_quickstart_identical(pool):
    data = qs.make_data()
    kw = dict(ndim=3, nwalkers=32, nsteps=60, args=data, p0=qs.start_positions(32))
    serial = _run(None, qs.lnprob, **kw)
    pooled = _run(pool, qs.lnprob, **kw)
    _assert_identical(serial, pooled)
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
    _assert_identical(
        _run(None, helpers.gaussian, moves=moves), _run(pool, helpers.gaussian, moves=moves)
    )


def test_blobs_identical(pool):
    serial = _run(None, helpers.slow_gaussian_with_pid, args=(1e-4,))
    pooled = _run(pool, helpers.slow_gaussian_with_pid, args=(1e-4,))
    assert np.array_equal(serial.get_chain(), pooled.get_chain())
    assert np.array_equal(serial.get_log_prob(), pooled.get_log_prob())
    # The blob is the pid that evaluated the walker: it must differ, and the
    # engines' pids must all appear (the work really ran remotely).
    assert set(np.unique(pooled.get_blobs())) <= set(pool.engine_pids.values())


def test_float_blobs_identical(pool):
    _assert_identical(
        _run(None, helpers.gaussian_with_sum_blob), _run(pool, helpers.gaussian_with_sum_blob)
    )


def test_parameter_names_identical(pool):
    kw = dict(parameter_names=["a", "b", "c"])
    _assert_identical(_run(None, helpers.gaussian_named, **kw), _run(pool, helpers.gaussian_named, **kw))


def test_args_and_kwargs_identical(pool):
    data = qs.make_data()
    kw = dict(nwalkers=24, nsteps=30, p0=qs.start_positions(24))
    kw["kwargs"] = {"x": data[0], "y": data[1], "yerr": data[2]}
    _assert_identical(_run(None, qs.lnprob, **kw), _run(pool, qs.lnprob, **kw))


def test_replaced_args_reach_the_engines(pool):
    """A sampler whose args or kwargs are replaced between runs (a notebook
    cell fitting new data) samples the new posterior, as serial emcee does."""

    def run(target):
        sampler = _run(target, helpers.gaussian_shifted, ndim=2, nsteps=10,
                       args=(np.zeros(2),), kwargs={"scale": 1.0})
        sampler.log_prob_fn.args = (np.full(2, 3.0),)
        state = sampler.run_mcmc(None, 10)
        sampler.log_prob_fn.kwargs = {"scale": 0.5}
        sampler.run_mcmc(state, 10)
        return sampler

    _assert_identical(run(None), run(pool))
