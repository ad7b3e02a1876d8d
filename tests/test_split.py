"""run_split on a real cluster: shapes, seeds, statistics, resume, faults."""

from __future__ import annotations

import copy
import os
import re
import shutil
import signal
import time

import emcee
import helpers
import numpy as np
import pytest

from emcee_ipp import (
    EmceeIppError,
    EngineCrashError,
    IPyParallelPool,
    SplitResult,
    _ensemble,
    run_split,
)
from emcee_ipp import _quickstart as qs
from emcee_ipp import split as split_module

NWALKERS, NDIM = 16, 3


def _sampler(fn=helpers.gaussian, nwalkers=NWALKERS, ndim=NDIM, **kw):
    return emcee.EnsembleSampler(nwalkers, ndim, fn, **kw)


def _p0(seed=0, nwalkers=NWALKERS, ndim=NDIM):
    return np.random.RandomState(seed).normal(size=(nwalkers, ndim))


def test_shapes(split_pool):
    r = run_split(
        split_pool, _sampler(helpers.gaussian_with_sum_blob), _p0(), 50, n_ensembles=3, seed=1
    )
    assert isinstance(r, SplitResult)
    assert r.iteration == 50 and r.n_ensembles == 3
    assert r.get_chain().shape == (50, 3 * NWALKERS, NDIM)
    assert r.get_chain(flat=True, discard=10, thin=2).shape == (20 * 3 * NWALKERS, NDIM)
    assert r.get_log_prob().shape == (50, 3 * NWALKERS)
    assert r.get_blobs().shape == (50, 3 * NWALKERS)
    assert r.acceptance_fraction.shape == (3 * NWALKERS,)
    assert np.all((r.acceptance_fraction > 0) & (r.acceptance_fraction < 1))
    assert r.get_autocorr_time(quiet=True).shape == (NDIM,)
    # Ensembles side by side along the walker axis, in index order.
    for e in r.ensembles:
        block = r.get_chain()[:, e.index * NWALKERS : (e.index + 1) * NWALKERS]
        assert np.array_equal(block, e.backend.get_chain())
        assert e.engine_id in split_pool.client.ids
        assert isinstance(e.seed, np.random.SeedSequence)
    # The first step of every ensemble starts from the shared initial state.
    assert r.get_chain().shape[1] == 48


def test_per_ensemble_initial_states(split_pool):
    starts = np.stack([_p0(s) + 10 * s for s in range(2)])
    r = run_split(split_pool, _sampler(), starts, 5, n_ensembles=2, seed=3)
    for i, start in enumerate(starts):  # ensemble i ran as if every one began at its start
        alone = run_split(split_pool, _sampler(), start, 5, n_ensembles=2, seed=3).ensembles[i]
        assert np.array_equal(r.ensembles[i].backend.get_chain(), alone.backend.get_chain())
    assert not np.array_equal(
        r.ensembles[0].backend.get_chain(), r.ensembles[1].backend.get_chain()
    )


def test_same_seed_same_result_whatever_the_engines(split_pool, external_cluster):
    # 3 ensembles on 2 engines (queued) against 3 on the external cluster's engines.
    a = run_split(split_pool, _sampler(), _p0(), 40, n_ensembles=3, seed=2024)
    with IPyParallelPool(cluster=external_cluster) as other:
        b = run_split(other, _sampler(), _p0(), 40, n_ensembles=3, seed=2024)
    assert np.array_equal(a.get_chain(), b.get_chain())
    assert np.array_equal(a.get_log_prob(), b.get_log_prob())


def test_a_seed_sequence_is_a_seed_and_is_left_as_it_was(split_pool):
    seq = np.random.SeedSequence(2024)
    a = run_split(split_pool, _sampler(), _p0(), 10, n_ensembles=2, seed=seq)
    b = run_split(split_pool, _sampler(), _p0(), 10, n_ensembles=2, seed=seq)
    c = run_split(split_pool, _sampler(), _p0(), 10, n_ensembles=2, seed=2024)
    assert seq.n_children_spawned == 0
    assert np.array_equal(a.get_chain(), b.get_chain())
    assert np.array_equal(a.get_chain(), c.get_chain())


def test_an_emcee_state_is_a_start_as_for_run_mcmc(split_pool):
    s = _sampler()
    a = run_split(split_pool, s, emcee.State(_p0()), 20, n_ensembles=2, seed=4)
    b = run_split(split_pool, s, _p0(), 20, n_ensembles=2, seed=4)
    assert np.array_equal(a.get_chain(), b.get_chain())


def test_different_seeds_differ_and_streams_never_shared(split_pool):
    a = run_split(split_pool, _sampler(), _p0(), 20, n_ensembles=3, seed=1)
    b = run_split(split_pool, _sampler(), _p0(), 20, n_ensembles=3, seed=2)
    assert not np.array_equal(a.get_chain(), b.get_chain())
    # Same start, distinct streams: no two ensembles take the same path.
    chains = [e.backend.get_chain()[1:] for e in a.ensembles]
    for i in range(3):
        for j in range(i + 1, 3):
            assert not np.array_equal(chains[i], chains[j])
    keys = {e.seed.spawn_key for e in a.ensembles}
    assert len(keys) == 3


def test_posterior_agrees_with_long_serial_run(split_pool):
    """Means agree within Monte-Carlo error.

    The Monte-Carlo standard error of a mean from an ensemble run is
    sd * sqrt(tau / (nsteps * nwalkers)), with tau emcee's integrated
    autocorrelation time. The difference of two independent runs' means has
    standard error sqrt(se_a**2 + se_b**2); we allow 4 of those, a 4-sigma
    bound (two-sided false alarm rate 6e-5 for a correct implementation).
    """
    data = qs.make_data()
    nwalkers, burn = 50, 200
    p0 = qs.start_positions(nwalkers)
    serial = emcee.EnsembleSampler(nwalkers, 3, qs.lnprob, args=data)
    serial.random_state = np.random.RandomState(11).get_state()
    serial.run_mcmc(p0, 2400)
    split = run_split(
        split_pool,
        emcee.EnsembleSampler(nwalkers, 3, qs.lnprob, args=data),
        p0,
        1300,
        n_ensembles=2,
        seed=12,
    )

    def mean_and_se(chain):  # chain: (nsteps, nwalkers, ndim)
        tau = emcee.autocorr.integrated_time(chain, quiet=True)
        flat = chain.reshape(-1, chain.shape[-1])
        return flat.mean(0), flat.std(0) * np.sqrt(tau / flat.shape[0])

    ma, sa = mean_and_se(serial.get_chain(discard=burn))
    per = [mean_and_se(e.backend.get_chain(discard=burn)) for e in split.ensembles]
    mb = np.mean([m for m, _ in per], axis=0)
    sb = np.sqrt(np.sum([s**2 for _, s in per], axis=0)) / len(per)
    z = np.abs(ma - mb) / np.sqrt(sa**2 + sb**2)
    assert np.all(z < 4), (ma, mb, sa, sb, z)


def test_rhat_near_one_when_converged(split_pool):
    """R-hat - 1 is about 1/(2 N_eff) for converged chains: here N_eff per
    ensemble is ~ 16*400/tau(~10) = 640, so R-hat ~ 1.001; 1.02 allows the
    sampling spread of a 4-ensemble estimate many times over."""
    r = run_split(split_pool, _sampler(), _p0(), 500, n_ensembles=4, seed=7)
    rhat = r.rhat(discard=100)
    assert rhat.shape == (NDIM,)
    assert np.all(rhat < 1.02), rhat


def test_rhat_flags_ensembles_stuck_in_different_modes(split_pool):
    """Modes 8 sigma apart: between-ensemble variance ~16 against 1 within,
    so R-hat is ~ sqrt(1 + 16/2) = 3 when half the ensembles sit in each."""
    ndim = 2
    sampler = emcee.EnsembleSampler(NWALKERS, ndim, helpers.bimodal)
    starts = np.stack([_p0(s, ndim=ndim) * 0.1 + (4.0 if s % 2 else -4.0) for s in range(4)])
    r = run_split(split_pool, sampler, starts, 200, n_ensembles=4, seed=8)
    assert np.all(r.rhat(discard=50) > 1.5), r.rhat(discard=50)


def test_resume_is_bit_identical_to_a_straight_run(split_pool, tmp_path):
    s = _sampler(helpers.gaussian_with_sum_blob)
    first = run_split(split_pool, s, _p0(), 300, n_ensembles=2, seed=99, backend_dir=tmp_path)
    assert first.iteration == 300
    resumed = run_split(split_pool, s, None, 200, backend_dir=tmp_path)
    straight = run_split(split_pool, s, _p0(), 500, n_ensembles=2, seed=99)
    assert resumed.iteration == 500
    assert np.array_equal(resumed.get_chain(), straight.get_chain())
    assert np.array_equal(resumed.get_log_prob(), straight.get_log_prob())
    assert np.array_equal(resumed.get_blobs(), straight.get_blobs())


@pytest.mark.timeout(120)
def test_files_are_owner_only_whatever_the_umask(tmp_path):
    """Engines started under umask 0 would make 0666 files; ours are 0600."""
    old = os.umask(0)  # the pool's engines inherit it
    try:
        with IPyParallelPool(1) as pool:
            r = run_split(pool, _sampler(), _p0(), 3, n_ensembles=2, seed=1, backend_dir=tmp_path)
            (tmp_path / "probe").touch()
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "probe").st_mode & 0o777 == 0o666  # the umask was in force
    for path in [e.path for e in r.ensembles] + [tmp_path / "run_split.npz"]:
        assert os.stat(path).st_mode & 0o777 == 0o600, path
        for hidden in tmp_path.glob(".ensemble_*.h5"):  # the copies the links name
            assert os.stat(hidden).st_mode & 0o777 == 0o600, hidden


@pytest.mark.timeout(120)
def test_a_failing_ensemble_stops_the_others_and_is_named(split_pool, tmp_path):
    starts = np.stack([_p0(0) - 1000.0, _p0(1)])  # ensemble 0 raises at its first step
    with pytest.raises(
        EmceeIppError, match=r"ensemble 0 failed on engine \d+: ValueError: far out"
    ):
        run_split(
            split_pool,
            _sampler(helpers.raises_far_else_slow),
            starts,
            5000,
            seed=3,
            backend_dir=tmp_path,
        )
    # Ensemble 1 (5000 steps of 16 walkers x 2 ms: minutes) was stopped, its
    # file closed and its steps kept, not left running on its engine.
    other = str(tmp_path / "ensemble_0001.h5")
    before = emcee.backends.HDFBackend(other, name="mcmc", read_only=True).iteration
    time.sleep(1.0)
    after = emcee.backends.HDFBackend(other, name="mcmc", read_only=True).iteration
    assert before == after < 5000


@pytest.mark.parametrize("third", ["no file", "empty file", "reset file"])
def test_a_run_cut_short_resumes_level_and_equals_a_straight_run(split_pool, tmp_path, third):
    """After Ctrl-C the ensembles hold different numbers of steps, and a
    queued one may have no file, or one with no step yet. The resume brings
    every ensemble to the longest plus nsteps, starting the missing one as
    it first would have: bit-identical to a straight run."""
    s = _sampler(helpers.gaussian_with_sum_blob)
    ran = {}
    for steps in (30, 20):
        ran[steps] = tmp_path / f"ran{steps}"
        run_split(split_pool, s, _p0(), steps, n_ensembles=3, seed=7, backend_dir=ran[steps])
    cut = tmp_path / "cut"
    cut.mkdir()
    shutil.copy(ran[30] / "run_split.npz", cut)
    shutil.copy(ran[30] / "ensemble_0000.h5", cut)  # 30 steps
    shutil.copy(ran[20] / "ensemble_0001.h5", cut)  # 20 steps: the same stream, cut earlier
    if third != "no file":
        with _ensemble.open_backend(str(cut / "ensemble_0002.h5")) as backend:
            if third == "reset file":
                backend.reset(NWALKERS, NDIM)
    resumed = run_split(split_pool, s, None, 10, backend_dir=cut)
    straight = run_split(split_pool, s, _p0(), 40, n_ensembles=3, seed=7)
    assert [e.backend.iteration for e in resumed.ensembles] == [40, 40, 40]
    assert [e.resumed_from for e in resumed.ensembles] == [30, 20, 0]
    assert np.array_equal(resumed.get_chain(), straight.get_chain())
    assert np.array_equal(resumed.get_log_prob(), straight.get_log_prob())
    assert np.array_equal(resumed.get_blobs(), straight.get_blobs())


def test_user_sampler_unchanged(split_pool):
    s = _sampler(moves=[(emcee.moves.DEMove(), 0.5), (emcee.moves.StretchMove(), 0.5)])
    s.pool = split_pool
    s.run_mcmc(_p0(), 5)
    before = copy.deepcopy({k: v for k, v in s.__dict__.items() if k != "pool"})
    run_split(split_pool, s, _p0(), 10, seed=1)
    assert s.pool is split_pool
    after = {k: v for k, v in s.__dict__.items() if k != "pool"}
    assert before.keys() == after.keys()
    assert s.iteration == 5
    assert np.array_equal(before["backend"].get_chain(), s.get_chain())
    state_a, state_b = before["_random"].get_state(), s._random.get_state()
    assert all(np.array_equal(x, y) for x, y in zip(state_a, state_b))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (
            dict(initial_state=np.zeros((3, 3)), nsteps=5),
            r"shape \(3, 3\); expected \(16, 3\) .* or \(2, 16, 3\)",
        ),
        (dict(initial_state=np.zeros((16, 3)), nsteps=0), "nsteps=0"),
        (dict(initial_state=None, nsteps=5), "backend_dir is None"),
    ],
)
def test_bad_input_is_a_clear_error(split_pool, kwargs, match):
    with pytest.raises(ValueError, match=match):
        run_split(split_pool, _sampler(), **kwargs)


def test_existing_run_is_never_overwritten(split_pool, tmp_path):
    run_split(split_pool, _sampler(), _p0(), 5, n_ensembles=2, seed=1, backend_dir=tmp_path)
    with pytest.raises(FileExistsError, match="initial_state=None"):
        run_split(split_pool, _sampler(), _p0(), 5, n_ensembles=2, seed=1, backend_dir=tmp_path)


def test_to_arviz_one_chain_per_ensemble(split_pool):
    pytest.importorskip("arviz")
    s = _sampler(parameter_names=["a", "b", "c"], fn=helpers.gaussian_named)
    r = run_split(split_pool, s, np.abs(_p0()), 30, n_ensembles=3, seed=4)
    idata = r.to_arviz(discard=10)
    assert set(idata.posterior.data_vars) == {"a", "b", "c"}
    assert idata.posterior.sizes["chain"] == 3
    assert idata.posterior.sizes["draw"] == 20 * NWALKERS


@pytest.mark.timeout(180)
@pytest.mark.parametrize("with_files", [True, False], ids=["backend_dir", "no-files"])
def test_engine_killed_mid_run_restarts_elsewhere(tmp_path, with_files, monkeypatch):
    """SIGKILL one engine mid-run: its ensemble restarts on the other engine,
    from its last saved step (or from its start, on the same random stream,
    without files), and the result equals an undisturbed run."""
    sampler = _sampler(helpers.sleepy_gaussian)
    backend_dir = tmp_path if with_files else None
    with IPyParallelPool(2) as victim_pool:
        # Ensemble 0 goes to the first engine; kill it once that ensemble
        # reports 10 steps done (an event: its progress message), not after a
        # fixed time, which a slow start (emcee's and h5py's imports) outran.
        victim = victim_pool.engine_pids[victim_pool.client.ids[0]]
        set_steps = split_module._Scheduler._set_steps
        killed = []

        def set_steps_and_kill(scheduler, i, steps):
            set_steps(scheduler, i, steps)
            if i == 0 and steps >= 10 and not killed:
                killed.append(steps)
                os.kill(victim, signal.SIGKILL)

        monkeypatch.setattr(split_module._Scheduler, "_set_steps", set_steps_and_kill)
        r = run_split(
            victim_pool,
            sampler,
            _p0(),
            300,
            n_ensembles=2,
            seed=5,
            backend_dir=backend_dir,
            progress=True,
        )
        assert killed and victim not in victim_pool.engine_pids.values()  # it really died
        assert victim_pool.size == 2  # and the pool's own cluster replaced it
        undisturbed = run_split(victim_pool, sampler, _p0(), 300, n_ensembles=2, seed=5)
    assert np.array_equal(r.get_chain(), undisturbed.get_chain())
    restarted = [e for e in r.ensembles if e.restarts]
    assert len(restarted) == 1
    if with_files:
        assert 0 < restarted[0].resumed_from < 300  # continued from its file
        for e in r.ensembles:  # every file is readable and complete
            assert emcee.backends.HDFBackend(e.path, read_only=True).iteration == 300
    else:
        assert restarted[0].resumed_from == 0


@pytest.mark.timeout(240)
def test_an_ensemble_that_kills_its_engine_is_named_and_the_others_resume(tmp_path):
    """Ensemble 1 starts where its log-prob ends the engine process: after
    MAX_ATTEMPTS deaths it is named (EngineCrashError, with the exit code);
    ensemble 0 stops cleanly, and its file resumes to a straight run's chain."""
    starts = np.stack([_p0(1), _p0(2) + 100.0])
    with IPyParallelPool(2) as pool:
        with pytest.raises(EngineCrashError) as info:
            run_split(
                pool, _sampler(helpers.exits_far_out), starts, 100_000, seed=4, backend_dir=tmp_path
            )
        err = info.value
        assert err.ensemble == 1 and err.exitcode == 3 and err.params is None
        assert "ensemble 1 killed its engine (exit code 3)" in str(err)
        assert pool.size == 2  # the pool's own cluster replaced its engines
        saved = emcee.backends.HDFBackend(str(tmp_path / "ensemble_0000.h5"), read_only=True)
        k = saved.iteration
        assert 0 < k < 100_000
        # Ensemble 1, never saved, starts again from its start: under a
        # log-prob that does not crash there, every ensemble finishes.
        resumed = run_split(pool, _sampler(helpers.sleepy_gaussian), None, 20, backend_dir=tmp_path)
        straight = run_split(pool, _sampler(helpers.sleepy_gaussian), starts, k + 20, seed=4)
    assert resumed.ensembles[0].resumed_from == k
    ours, theirs = resumed.ensembles[0].backend, straight.ensembles[0].backend
    assert np.array_equal(ours.get_chain(), theirs.get_chain())
    assert np.array_equal(ours.get_log_prob(), theirs.get_log_prob())


def test_progress_bar_updates_while_running(split_pool, capsys):
    # ~1.5 s of sampling; tqdm redraws at most every 0.1 s, so a live bar
    # shows many intermediate counts, a bar updated at the end shows none.
    sampler = _sampler(helpers.sleepy_gaussian)
    run_split(split_pool, sampler, _p0(), 120, n_ensembles=2, seed=1, progress=True)
    err = capsys.readouterr().err
    counts = {int(m) for m in re.findall(r"\| *(\d+)/240", err)}
    assert 240 in counts
    assert len([c for c in counts if 0 < c < 240]) >= 3, err[-500:]
