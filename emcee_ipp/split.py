"""run_split: independent emcee ensembles on the engines, collected into one result.

Runs on the client. Each ensemble is one task; tasks wait in a queue and go
to engines as they become free::

    run_split
      -> _ensemble.sampler_recipe(sampler)      read the user's sampler, once
      -> SeedSequence(seed).spawn(n)            one random stream per ensemble
      -> _Scheduler.run                         queue -> idle engines
           engine: _ensemble.run_ensemble       its own sampler, its own file
           <- progress (IOPub data messages)    one tqdm bar for all ensembles
           <- arrays, or EngineError            a lost engine's ensemble is
                                                queued again: from its file, or
                                                from its start (same stream)
      <- result.SplitResult                     ensembles side by side
"""

from __future__ import annotations

import concurrent.futures
import glob
import logging
import os
from collections import deque
from typing import Any

import emcee
import numpy as np
from ipyparallel import error as ipp_error
from numpy.typing import ArrayLike

from . import _ensemble
from .exceptions import EmceeIppError, EngineCrashError, RemoteTraceback
from .pool import IPyParallelPool
from .result import EnsembleResult, SplitResult, backend_from_arrays
from .transport.ipp import engine_lost

__all__ = ["run_split"]

log = logging.getLogger("emcee_ipp")

FILE_PATTERN = "ensemble_{:04d}.h5"
# Every ensemble's start and random stream, written before any ensemble
# runs: a resume starts the ensembles that never saved a step from it.
MANIFEST = "run_split.npz"
# An ensemble whose engine dies is started again elsewhere; a log-prob that
# kills every engine it touches must not loop forever.
MAX_ATTEMPTS = 3
POLL_S = 0.25  # progress refresh, and how soon a newly registered engine gets work
STOP_WAIT_S = 10.0  # after one ensemble fails, how long to wait for the others to stop


def run_split(
    pool: IPyParallelPool,
    sampler: emcee.EnsembleSampler,
    initial_state: ArrayLike | emcee.State | None,
    nsteps: int,
    *,
    n_ensembles: int | None = None,
    seed: int | np.random.SeedSequence | None = None,
    backend_dir: str | os.PathLike | None = None,
    progress: bool = False,
) -> SplitResult:
    """Run independent copies of ``sampler`` on the engines and collect them.

    Parameters
    ----------
    pool : IPyParallelPool
        Its engines run the ensembles, one at a time each.
    sampler : emcee.EnsembleSampler
        A template: its log-prob, args, kwargs, moves, blobs settings and
        parameter names are reused; its pool is ignored. It is not changed.
    initial_state : array_like, emcee.State or None
        Shape ``(nwalkers, ndim)`` (or a State, as ``run_mcmc`` takes):
        every ensemble starts there. Shape
        ``(n_ensembles, nwalkers, ndim)``: one start each. None: continue
        the run saved in ``backend_dir``.
    nsteps : int
        Steps to add to each ensemble. A resumed run whose ensembles hold
        different numbers of steps (one cut short by Ctrl-C) adds them to
        the longest and brings the others level.
    n_ensembles : int, optional
        Default: ``pool.size`` (or the number of files when resuming). More
        ensembles than engines are queued.
    seed : int or numpy.random.SeedSequence, optional
        Ensemble ``i`` draws from ``SeedSequence(seed).spawn(n)[i]``, so the
        same seed gives the same result on any number of engines.
    backend_dir : path, optional
        One emcee HDFBackend file per ensemble, written every step by the
        engines (so on a filesystem they share with the client, at the same
        path); a crash loses at most the step in flight, and
        ``initial_state=None`` resumes.
    progress : bool
        One tqdm bar counting steps across all ensembles.

    Returns
    -------
    SplitResult
    """
    _check_inputs(pool, sampler, nsteps, n_ensembles)
    paths, done = None, None
    if backend_dir is not None:
        # the engines write there: not relative to their working directories
        backend_dir = os.path.abspath(os.fspath(backend_dir))
    saved = None
    if initial_state is None:
        paths, done, saved = _saved_run(backend_dir, n_ensembles, sampler)
        n = len(paths)
        starts = [None] * n if saved is None else saved[0]
    else:
        n = n_ensembles or pool.size
        starts = _starts(initial_state, n, sampler)
        done = [0] * n
        if backend_dir is not None:
            paths = _fresh_paths(backend_dir, n)
    seeds = _seed_sequence(seed).spawn(n)
    rng_states = [np.random.RandomState(np.random.MT19937(s)).get_state() for s in seeds]
    if saved is not None:  # ensembles with no saved step start as they first would have
        rng_states = saved[1]
    elif paths and initial_state is not None:
        assert backend_dir is not None  # (paths are in it)
        _write_manifest(backend_dir, starts, rng_states)
    target = max(done) + nsteps
    if min(done) < max(done):
        log.info(
            "run_split: the saved ensembles hold %d to %d steps; each now runs to %d",
            min(done),
            max(done),
            target,
        )
    tasks = [(starts[i], rng_states[i], target, paths[i] if paths else None) for i in range(n)]
    pool._sync_paths()  # noqa: SLF001 (a notebook's sys.path.append reaches the engines)
    recipe = _ensemble.sampler_recipe(
        sampler,
        lambda obj: pool._shipper.dumps(obj, "the sampler"),  # noqa: SLF001
    )
    scheduler = _Scheduler(pool, recipe, tasks, done, progress)
    arrays, engines = scheduler.run()
    ensembles = [
        EnsembleResult(
            i,
            engines[i],
            seeds[i],
            backend_from_arrays(arrays[i]),
            paths[i] if paths else None,
            restarts=scheduler.attempts[i] - 1,
            resumed_from=arrays[i]["resumed_from"],
        )
        for i in range(n)
    ]
    names = sampler.parameter_names if sampler.params_are_named else None
    return SplitResult(ensembles, parameter_names=names)


class _Scheduler:
    """Hands ensemble tasks to idle engines and collects them (client side)."""

    def __init__(self, pool, recipe, tasks, done, progress):
        self.pool = pool
        self.recipe = recipe
        self.tasks = tasks
        self.steps = list(done)  # steps each ensemble holds, as last reported
        self.attempts = [0] * len(tasks)
        self.lost: set[int] = set()  # engines that died during this run
        self.bar = None
        if progress:
            from tqdm.auto import tqdm

            total = sum(t[2] - d for t, d in zip(tasks, done))
            self.bar = tqdm(total=total, unit="step", desc=f"run_split x{len(tasks)}")

    def run(self):
        queue = deque(range(len(self.tasks)))
        running: dict[int, tuple[int, Any]] = {}  # engine id -> (ensemble, AsyncResult)
        arrays, engines = {}, {}
        try:
            while queue or running:
                for eid in self.pool._engines():  # noqa: SLF001 (prepares new engines)
                    if queue and eid not in running and eid not in self.lost:
                        i = queue.popleft()
                        self.attempts[i] += 1
                        ar = self.pool._control.call(  # noqa: SLF001
                            eid,
                            _ensemble.run_ensemble,
                            self.recipe,
                            *self.tasks[i],
                            self.bar is not None,
                        )
                        running[eid] = (i, ar)
                # Wake at once when a task ends, else now and then for progress.
                concurrent.futures.wait(
                    [ar for _, ar in running.values()],
                    timeout=POLL_S,
                    return_when=concurrent.futures.FIRST_COMPLETED,
                )
                for eid, (i, ar) in list(running.items()):
                    self._progress(i, ar)
                    if not ar.ready():
                        continue
                    del running[eid]
                    try:
                        arrays[i] = ar.get(0)
                        engines[i] = eid
                        self._set_steps(i, self.tasks[i][2])
                    except (ipp_error.EngineError, ipp_error.RemoteError) as exc:
                        if not engine_lost(exc):
                            raise _remote_failure(i, eid, exc) from RemoteTraceback(
                                exc.ename, exc.evalue, exc.traceback or ""
                            )
                        self.lost.add(eid)  # ipyparallel drops it from client.ids soon
                        self._requeue_lost(i, eid, exc, queue)
        except BaseException as exc:  # Ctrl-C, or an ensemble failed: no other runs on
            self._interrupt(running)
            if not isinstance(exc, KeyboardInterrupt):  # (Ctrl-C returns at once)
                # bounded, so that their files are closed before the caller
                # looks at them or resumes
                concurrent.futures.wait([ar for _, ar in running.values()], timeout=STOP_WAIT_S)
            raise
        finally:
            if self.bar is not None:
                self.bar.close()
        return arrays, engines

    def _requeue_lost(self, i, eid, exc, queue):
        if self.attempts[i] >= MAX_ATTEMPTS:
            exitcode, stderr = self.pool._death(eid)  # noqa: SLF001
            raise EngineCrashError(eid, None, exitcode, stderr, ensemble=i) from exc
        queue.appendleft(i)

    def _progress(self, i, ar):
        data = ar.data if isinstance(ar.data, dict) else {}
        if "steps" in data:
            self._set_steps(i, data["steps"])

    def _set_steps(self, i, steps):
        if self.bar is not None and steps > self.steps[i]:
            self.bar.update(steps - self.steps[i])
        self.steps[i] = max(self.steps[i], steps)

    def _interrupt(self, running):
        if running:  # ensembles run in the engines' main threads
            self.pool._signal_main_threads(list(running))  # noqa: SLF001


def _remote_failure(i, eid, exc) -> EmceeIppError:
    return EmceeIppError(
        f"ensemble {i} failed on engine {eid}: {exc.ename}: {exc.evalue}. "
        "The remote traceback is attached as __cause__."
    )


def _seed_sequence(seed) -> np.random.SeedSequence:
    """``SeedSequence(seed)``; a SeedSequence is copied, not spawned from, so
    the same one gives the same streams at every call."""
    if isinstance(seed, np.random.SeedSequence):
        return np.random.SeedSequence(
            seed.entropy,
            spawn_key=seed.spawn_key,
            pool_size=seed.pool_size,
            n_children_spawned=seed.n_children_spawned,
        )
    return np.random.SeedSequence(seed)


def _check_inputs(pool, sampler, nsteps, n_ensembles) -> None:
    if not isinstance(pool, IPyParallelPool):
        raise TypeError(f"pool={pool!r}: run_split needs an emcee_ipp.IPyParallelPool.")
    if not isinstance(sampler, emcee.EnsembleSampler):
        raise TypeError(f"sampler={sampler!r}: pass an emcee.EnsembleSampler to copy.")
    if not isinstance(nsteps, (int, np.integer)) or isinstance(nsteps, bool) or nsteps < 1:
        raise ValueError(f"nsteps={nsteps!r}: give a positive number of steps to add.")
    if n_ensembles is not None and (
        not isinstance(n_ensembles, (int, np.integer)) or n_ensembles < 1
    ):
        raise ValueError(f"n_ensembles={n_ensembles!r}: give a positive integer, or None.")


def _starts(initial_state, n, sampler) -> list[np.ndarray]:
    if isinstance(initial_state, emcee.State):  # as run_mcmc takes it
        initial_state = initial_state.coords
    shape = (sampler.nwalkers, sampler.ndim)
    state = np.asarray(initial_state, dtype=float)
    if state.shape == shape:
        return [state] * n
    if state.shape == (n,) + shape:
        return list(state)
    raise ValueError(
        f"initial_state has shape {state.shape}; expected {shape} (one start for "
        f"every ensemble) or {(n,) + shape} (one per ensemble, n_ensembles={n})."
    )


def _fresh_paths(backend_dir: str, n: int) -> list[str]:
    os.makedirs(backend_dir, mode=0o700, exist_ok=True)
    paths = [os.path.join(backend_dir, FILE_PATTERN.format(i)) for i in range(n)]
    existing = [p for p in paths + [os.path.join(backend_dir, MANIFEST)] if os.path.exists(p)]
    if existing:
        raise FileExistsError(
            f"backend_dir={backend_dir!r} already holds a run ({os.path.basename(existing[0])}"
            f"{' and more' if len(existing) > 1 else ''}). Pass initial_state=None to "
            "continue it, or choose an empty directory."
        )
    return paths


def _write_manifest(backend_dir: str, starts, rng_states) -> None:
    """Each ensemble's start and MT19937 state, owner-only, written atomically."""
    path = os.path.join(backend_dir, MANIFEST)
    tmp = path + ".tmp"
    with os.fdopen(os.open(tmp, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600), "wb") as f:
        np.savez(
            f,
            starts=np.asarray(starts, dtype=float),
            keys=np.array([state[1] for state in rng_states], dtype=np.uint32),
            pos=np.array([state[2] for state in rng_states], dtype=np.int64),
        )
    os.replace(tmp, path)


def _read_manifest(backend_dir: str):
    """``(starts, rng_states)`` of every ensemble of the run, or None (an
    older run's directory has no manifest)."""
    path = os.path.join(backend_dir, MANIFEST)
    if not os.path.exists(path):
        return None
    with np.load(path, allow_pickle=False) as saved:
        starts, keys, pos = saved["starts"], saved["keys"], saved["pos"]
    return list(starts), [("MT19937", keys[i], int(pos[i]), 0, 0.0) for i in range(len(pos))]


def _saved_run(backend_dir, n_ensembles, sampler):
    """``(paths, steps saved, (starts, rng_states) or None)`` of the run in ``backend_dir``."""
    if backend_dir is None:
        raise ValueError(
            "initial_state=None resumes a run saved in backend_dir, but backend_dir "
            "is None. Pass a start of shape (nwalkers, ndim), or the backend_dir "
            "of an earlier run."
        )
    saved = _read_manifest(backend_dir)
    if saved is not None:  # every ensemble, with a file or not yet
        paths = [os.path.join(backend_dir, FILE_PATTERN.format(i)) for i in range(len(saved[0]))]
    else:
        paths = sorted(glob.glob(os.path.join(backend_dir, "ensemble_*.h5")))
    if n_ensembles is not None:
        paths = paths[:n_ensembles]
        if saved is not None:
            saved = (saved[0][:n_ensembles], saved[1][:n_ensembles])
    if not paths or (n_ensembles is not None and len(paths) < n_ensembles):
        raise FileNotFoundError(
            f"backend_dir={backend_dir!r} holds {len(paths)} ensemble files"
            f"{'' if n_ensembles is None else f', {n_ensembles} needed'}: nothing to "
            "resume. Start a run with an initial_state first."
        )
    done = []
    for path in paths:
        if not os.path.exists(path):
            done.append(0)  # never started: from the manifest's start
            continue
        backend = emcee.backends.HDFBackend(path, name="mcmc", read_only=True)
        if backend.initialized and backend.shape != (sampler.nwalkers, sampler.ndim):
            raise ValueError(
                f"{path} holds walkers of shape {backend.shape}, the sampler has "
                f"{(sampler.nwalkers, sampler.ndim)}; use a matching sampler."
            )
        done.append(backend.iteration if backend.initialized else 0)
        if done[-1] == 0 and saved is None:
            raise ValueError(
                f"{path} holds no step, and {backend_dir!r} has no {MANIFEST} with its "
                "start (a run from an older emcee_ipp): start a new run with an initial_state."
            )
    if (
        saved is not None
        and len(saved[0])
        and saved[0][0].shape != (sampler.nwalkers, sampler.ndim)
    ):
        raise ValueError(
            f"{os.path.join(backend_dir, MANIFEST)} holds starts of shape {saved[0][0].shape}, "
            f"the sampler has {(sampler.nwalkers, sampler.ndim)}; use a matching sampler."
        )
    return paths, done, saved
