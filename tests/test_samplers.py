"""Other samplers as real clients of the pool (issue 19): dynesty, zeus, nautilus, pocoMC.

Each runs through the pool on both transports and must give what a
reference gives bit for bit: all four draw their random numbers
independently of the pool. dynesty and nautilus draw a seed per map item in
the client, so their reference is multiprocessing.Pool(2) on the same seed
(the pool's size changes their queue and job counts); zeus draws everything
in the client, so its reference is a serial run; so does pocoMC.

What each sampler does with ``pool=`` (dynesty 3.1, zeus 2.5.4, nautilus 1.0.6,
pocoMC 1.2.6):

- dynesty: ``pool.map`` for the prior transform and log-likelihood of the
  first live points, for the internal sampler's ``sample`` on items that
  carry both functions and a SeedSequence, for the ellipsoid bootstraps and
  for the dynamic stopping function's realizations; ``queue_size=None`` is
  read from ``pool._processes`` or ``pool.size``.
- zeus: ``pool.map(its _FunctionWrapper, a generator of rows)``.
- nautilus: ``list(pool)`` must raise TypeError (else it takes the pool for
  a tuple of pools); ``pool._processes``, ``_max_workers``, ``size`` or
  ``nt`` for the size; ``pool.map`` for the likelihood (a list of rows), for
  training networks and for sampling bounds (``functools.partial`` objects
  made anew each time, the latter holding a bound method).
- pocoMC: ``pool.map(its FunctionWrapper, an array of rows)``; the
  wrapper's class lives in ``pocomc.tools``, so each engine imports pocomc
  and with it torch, as multiprocessing's spawn workers would.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import pathlib
import random
import subprocess
import sys

import numpy as np
import pytest
import sampler_models as models

HERE = pathlib.Path(__file__).parent
SCRIPT = HERE / "sampler_script.py"
TRANSPORTS = ["direct", "ipp"]


@pytest.fixture(scope="module")
def mp_pool():
    """multiprocessing.Pool(2), the reference for dynesty and nautilus.

    fork, Linux's default: the results depend only on seeds drawn in the
    client, so any start method gives the same numbers, and spawn or
    forkserver would also start multiprocessing's resource tracker, a
    process that lives until this interpreter exits, which the suite's
    leak check would report.
    """
    with multiprocessing.get_context("fork").Pool(2) as pool:
        yield pool  # __exit__ terminates the workers and joins them


@pytest.fixture(scope="module")
def references():
    """Reference runs, made once per module: name -> result."""
    return {}


def _reference(references, name, make):
    if name not in references:
        references[name] = make()
    return references[name]


# -- dynesty -----------------------------------------------------------------


@pytest.mark.parametrize("kind", list(models.DYNESTY_RUNS))
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_dynesty_identical_to_multiprocessing(pools, mp_pool, references, transport, kind):
    expected = _reference(
        references, f"dynesty {kind}", lambda: models.run_dynesty(kind, mp_pool).results
    )
    sampler = models.run_dynesty(kind, pools(transport))
    assert sampler.queue_size == models.DYNESTY_QUEUE[kind]
    assert models.same_dynesty_results(sampler.results, expected)
    # And the run is sane: ln Z within 5 of dynesty's own errors of the truth.
    res = sampler.results
    assert abs(res.logz[-1] - models.LOG_Z) < 5 * res.logzerr[-1]


def _without_tests_dir(path: str) -> str:
    return os.pathsep.join(p for p in path.split(os.pathsep) if p and pathlib.Path(p) != HERE)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_dynesty_from_a_script(tmp_path, transport):
    """A user's script run from another folder, its functions in ``__main__``
    and in a module beside it: the same runs (sampler_script.py). Its
    engines get no PYTHONPATH to this folder (the suite's own engines do,
    from conftest.py)."""
    env = dict(os.environ, PYTHONPATH=_without_tests_dir(os.environ.get("PYTHONPATH", "")))
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), transport],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(report) == {
        f"{where} {kind}" for where in ("main", "module") for kind in models.DYNESTY_RUNS
    }
    wrong = {
        run: r
        for run, r in report.items()
        if not (r.get("identical") and r["queue_size"] == models.DYNESTY_QUEUE[run.split()[1]])
    }
    assert not wrong, f"differ from multiprocessing.Pool(2), or failed: {wrong}"


# -- zeus ----------------------------------------------------------------------

ZEUS_WALKERS = 12


def _run_zeus(pool, nsteps=40, seed=3):
    """zeus draws every random number in the client, from numpy's global
    state and, in its default DifferentialMove, Python's ``random``: both
    seeded here, and restored after."""
    import zeus

    # zeus reads numpy's global state, so that is the state to seed
    saved = np.random.get_state(), random.getstate()  # noqa: NPY002
    np.random.seed(seed)  # noqa: NPY002
    random.seed(seed)
    try:
        sampler = zeus.EnsembleSampler(
            ZEUS_WALKERS, models.NDIM, models.scaled_gaussian, pool=pool, verbose=False
        )
        start = np.random.RandomState(5).normal(size=(ZEUS_WALKERS, models.NDIM))
        sampler.run_mcmc(start, nsteps, progress=False)
    finally:
        np.random.set_state(saved[0])  # noqa: NPY002
        random.setstate(saved[1])
    return sampler


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_zeus_identical_to_serial(pools, references, transport):
    """The same walkers through the pool and serially: bit-identical chains,
    a stronger check than agreeing within a Monte-Carlo error."""
    serial = _reference(references, "zeus serial", lambda: _run_zeus(None))
    pooled = _run_zeus(pools(transport))
    assert np.array_equal(pooled.get_chain(), serial.get_chain())
    assert np.array_equal(pooled.get_log_prob(), serial.get_log_prob())
    assert np.all(np.isfinite(pooled.get_log_prob()))


# -- nautilus ------------------------------------------------------------------


def _run_nautilus(pool, seed=4):
    import nautilus

    # Few live points and one small network: seconds, not minutes.
    sampler = nautilus.Sampler(
        models.box_prior,
        models.gaussian_loglike,
        n_dim=models.NDIM,
        pool=pool,
        seed=seed,
        n_live=100,
        n_networks=1,
    )
    sampler.run(verbose=False, f_live=0.5, n_eff=100)
    return sampler


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_nautilus(pools, mp_pool, references, transport):
    pool = pools(transport)
    with pytest.raises(TypeError):
        list(pool)  # else nautilus takes the pool for a tuple of pools
    reference = _reference(references, "nautilus mp", lambda: _run_nautilus(mp_pool))
    serial = _reference(references, "nautilus serial", lambda: _run_nautilus(None))
    pooled = _run_nautilus(pool)

    # Same seed, same pool size: the same run as multiprocessing's, bit for bit.
    for got, want in zip(pooled.posterior(), reference.posterior()):
        assert np.array_equal(got, want)
    assert pooled.log_z == reference.log_z

    # Serial sampling of the bounds draws other numbers: agreement within
    # the Monte-Carlo error. Z is an importance-sampling mean whose relative
    # standard error is about 1/sqrt(n_eff) (Kish's effective sample size),
    # so sd(ln Z) ~ 1/sqrt(n_eff) for each run; 5 sd of the difference.
    tolerance = 5 * np.sqrt(1 / pooled.n_eff + 1 / serial.n_eff)
    assert abs(pooled.log_z - serial.log_z) < tolerance
    assert abs(pooled.log_z - models.LOG_Z) < 5 / np.sqrt(pooled.n_eff)


# -- pocoMC --------------------------------------------------------------------


def _run_pocomc(pool):
    import pocomc
    from scipy.stats import uniform

    # Few particles, default preconditioning (a normalizing flow trained in
    # the client at each stage): about 10 s, nearly all of it torch.
    prior = pocomc.Prior([uniform(-models.HALF_WIDTH, 2 * models.HALF_WIDTH)] * models.NDIM)
    saved = np.random.get_state()  # noqa: NPY002 (random_state reseeds numpy's global generator)
    try:
        sampler = pocomc.Sampler(
            prior, models.gaussian_loglike, n_effective=128, n_active=64, pool=pool, random_state=5
        )
        sampler.run(n_total=256, n_evidence=256, progress=False)
    finally:
        np.random.set_state(saved)  # noqa: NPY002
    samples, weights, logl, _ = sampler.posterior()
    return samples, weights, logl, sampler.evidence()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_pocomc_identical_to_serial(pools, references, transport):
    """pocoMC draws every random number in the client (numpy's global
    generator and torch's, both seeded by ``random_state``): through the pool
    its particles, weights and evidence are serial's, bit for bit."""
    serial = _reference(references, "pocomc serial", lambda: _run_pocomc(None))
    samples, weights, logl, (logz, logz_err) = _run_pocomc(pools(transport))
    assert np.array_equal(samples, serial[0])
    assert np.array_equal(weights, serial[1])
    assert np.array_equal(logl, serial[2])
    assert (logz, logz_err) == serial[3]
    # And the run is a real one: 5 standard errors of its own estimate.
    assert abs(logz - models.LOG_Z) < 5 * logz_err
