"""run_split's engines import emcee without scipy.stats (issue 22), and
nothing a sampler or a log-prob does notices: KDEMove still works, and a
log-prob that imports scipy.stats gets the real module."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import emcee
import helpers
import numpy as np

from emcee_ipp import IPyParallelPool, run_split

FRESH = textwrap.dedent("""
    import sys
    import emcee_ipp._ensemble  # what an engine imports at its first run_split
    assert "emcee" in sys.modules, "emcee not imported"
    assert "scipy.stats" not in sys.modules, "scipy.stats imported with emcee"
    import emcee
    import numpy as np
    sampler = emcee.EnsembleSampler(8, 2, lambda x: -0.5 * float(x @ x),
                                    moves=emcee.moves.KDEMove())
    sampler.run_mcmc(np.random.RandomState(0).normal(size=(8, 2)), 3)
    import scipy.stats
    assert hasattr(scipy.stats, "norm"), "the stand-in scipy.stats was left behind"
    print("ok")
""")


def test_a_fresh_engine_imports_emcee_without_scipy_stats_and_kde_still_works():
    run = subprocess.run([sys.executable, "-c", FRESH], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr


def _serial_ensemble(log_prob, moves, start, seed, i, n, nsteps):
    """Ensemble ``i`` of ``n`` as run_split seeds it, run serially."""
    stream = np.random.SeedSequence(seed).spawn(n)[i]
    sampler = emcee.EnsembleSampler(len(start), start.shape[1], log_prob, moves=moves)
    sampler.random_state = np.random.RandomState(np.random.MT19937(stream)).get_state()
    sampler.run_mcmc(start, nsteps)
    return sampler


def test_kde_move_and_a_scipy_log_prob_under_run_split_equal_serial():
    with IPyParallelPool(2) as pool:  # new engines: their first run_split imports emcee
        _kde_and_scipy_equal_serial(pool)


def _kde_and_scipy_equal_serial(pool):
    start = np.random.RandomState(3).normal(size=(16, 2))
    for log_prob, moves in (
        (helpers.gaussian, emcee.moves.KDEMove()),
        (helpers.scipy_gaussian, None),
    ):
        sampler = emcee.EnsembleSampler(16, 2, log_prob, moves=moves)
        r = run_split(pool, sampler, start, 15, n_ensembles=2, seed=11)
        for i, ensemble in enumerate(r.ensembles):
            serial = _serial_ensemble(log_prob, moves, start, 11, i, 2, 15)
            assert np.array_equal(ensemble.backend.get_chain(), serial.get_chain())
            assert np.array_equal(ensemble.backend.get_log_prob(), serial.get_log_prob())
