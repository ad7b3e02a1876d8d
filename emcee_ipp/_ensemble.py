"""One independent emcee ensemble, run on an engine for ``run_split``.

Runs on the engine. The client sends a pickled recipe of the user's sampler,
the ensemble's index, start and random state; the engine builds its own
``EnsembleSampler``, steps it to the target iteration (saving every step,
atomically, to its own HDF5 file when one is given: ``_store.py``), publishes
progress as it goes, and returns the arrays::

    client (split.py)                           engine (this module)
    -----------------                           --------------------
    run_ensemble(recipe, start, rng_state, ->   EnsembleSampler(**recipe, backend=file)
                 target, path)                  resume from the file, or start fresh
         <- data_message {"steps": k}           every PROGRESS_S while sampling
         <- dict of arrays                      chain, log_prob, blobs, accepted, ...
"""

from __future__ import annotations

import os
import time

import cloudpickle
import numpy as np

from ._light_emcee import emcee

# Progress messages cost an IOPub message each; a few per second per engine
# keeps the bar live without loading the controller.
PROGRESS_S = 0.25


def sampler_recipe(sampler, dumps=cloudpickle.dumps) -> bytes:
    """Client side: what an engine needs to rebuild ``sampler``, pickled with
    ``dumps`` (the pool's ``Shipper.dumps``).

    Reads the sampler; never changes it.
    """
    wrapper = sampler.log_prob_fn
    recipe = dict(
        nwalkers=sampler.nwalkers,
        ndim=sampler.ndim,
        log_prob_fn=wrapper.f,
        args=wrapper.args,
        kwargs=wrapper.kwargs,
        # emcee keeps the moves and their weights private, with no accessor
        moves=list(zip(sampler._moves, sampler._weights)),  # noqa: SLF001
        blobs_dtype=sampler.blobs_dtype,
        vectorize=sampler.vectorize,
        parameter_names=sampler.parameter_names if sampler.params_are_named else None,
    )
    return dumps(recipe)


def open_backend(path: str):
    """The HDF5 file of one ensemble, owner-only, every step saved atomically
    (``_store.EnsembleStore``); close it, or use it in a ``with`` block."""
    try:
        from ._store import EnsembleStore
    except ImportError as exc:
        raise ImportError(
            "run_split(backend_dir=...) needs h5py on the engines: pip install 'emcee_ipp[hdf5]'"
        ) from exc
    return EnsembleStore(path)


def run_ensemble(
    recipe_bytes: bytes, start, rng_state, target: int, path: str | None, progress: bool = False
) -> dict:
    """Step one ensemble until its backend holds ``target`` iterations."""
    recipe = cloudpickle.loads(recipe_bytes)
    with open_backend(path) if path else emcee.backends.Backend() as backend:
        resuming = path is not None and backend.initialized and backend.iteration > 0
        if not resuming:
            backend.reset(recipe["nwalkers"], recipe["ndim"])
        sampler = emcee.EnsembleSampler(
            recipe["nwalkers"],
            recipe["ndim"],
            recipe["log_prob_fn"],
            args=recipe["args"],
            kwargs=recipe["kwargs"],
            moves=recipe["moves"],
            blobs_dtype=recipe["blobs_dtype"],
            vectorize=recipe["vectorize"],
            parameter_names=recipe["parameter_names"],
            backend=backend,
        )
        if resuming:
            state = backend.get_last_sample()  # carries the stored random state
        else:
            state = emcee.State(np.array(start, dtype=float), random_state=rng_state)
        resumed_from = backend.iteration
        if target > resumed_from:
            _sample(sampler, state, target - resumed_from, resumed_from, progress)
        return dict(_arrays(backend), resumed_from=resumed_from)


def _sample(sampler, state, n: int, done_before: int, progress: bool) -> None:
    publish = _publisher() if progress else (lambda data: None)
    last = time.monotonic()
    for k, _ in enumerate(sampler.sample(state, iterations=n), start=1):
        now = time.monotonic()
        if now - last >= PROGRESS_S or k == n:
            publish({"steps": done_before + k})
            last = now


def _publisher():
    try:
        from ipyparallel.datapub import publish_data

        publish_data({"steps": 0})  # fails outside an engine
        return publish_data
    except Exception:
        return lambda data: None


def _arrays(backend) -> dict:
    blobs = backend.get_blobs()
    return dict(
        chain=backend.get_chain(),
        log_prob=backend.get_log_prob(),
        blobs=blobs,
        accepted=np.asarray(backend.accepted),
        random_state=backend.random_state,
        iteration=backend.iteration,
        pid=os.getpid(),
    )
