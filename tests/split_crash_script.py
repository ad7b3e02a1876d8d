"""Kill an ensemble's save at chosen points; run by tests/test_split_store.py.

One run is what run_split asks of an engine twice: sample an ensemble into
its file for STEPS_A steps, then resume it to STEPS_B (emcee_ipp._store's
``crash_hook`` numbers every point of the save path along the way). Modes::

    python split_crash_script.py record                    every point, as JSON lines
    python split_crash_script.py exit OUT [--tear] N...    one run per N, in OUT/N,
        that calls os._exit(EXIT_CODE) at point N (--tear: after cutting the
        file being written there, if any, to half its length)
    python split_crash_script.py kill OUT N...             one run per N, SIGKILLed
        from outside as soon as it reports point N (so the kill lands a moment
        later, wherever the run then is, in C code or not)

Each run is a fork of this single-threaded process (the imports are paid
once). Prints one JSON line, {N: how the run ended}.
"""

from __future__ import annotations

import json
import os
import signal
import sys

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # no threads across fork

import emcee  # noqa: E402
import helpers  # noqa: E402
import numpy as np  # noqa: E402

from emcee_ipp import _ensemble, _store  # noqa: E402

NWALKERS, NDIM = 8, 2
STEPS_A, STEPS_B = 3, 7
EXIT_CODE = 70
FILE = "ensemble_0000.h5"


def recipe() -> bytes:
    sampler = emcee.EnsembleSampler(NWALKERS, NDIM, helpers.gaussian_with_sum_blob)
    return _ensemble.sampler_recipe(sampler)


def start():
    return np.random.RandomState(0).normal(size=(NWALKERS, NDIM))


def rng_state():
    seed = np.random.SeedSequence(2024).spawn(1)[0]
    return np.random.RandomState(np.random.MT19937(seed)).get_state()


def run(path: str, target: int) -> dict:
    """run_split's work on an engine: to ``target`` steps, from the file if any."""
    return _ensemble.run_ensemble(recipe(), start(), rng_state(), target, path)


def both_stages(path: str) -> None:
    run(path, STEPS_A)
    run(path, STEPS_B)


def _record() -> None:
    import tempfile

    points = []
    _store.crash_hook = lambda point, writing: points.append(
        [point, None if writing is None else os.path.basename(writing)]
    )
    both_stages(os.path.join(tempfile.mkdtemp(prefix="split_crash"), FILE))
    for p in points:
        print(json.dumps(p))


def _count_to(n: int, then) -> None:
    reached = iter(range(1, 10**9))
    _store.crash_hook = lambda point, writing: next(reached) == n and then(writing)


def _exit_at(n: int, tear: bool) -> None:
    def end(writing):
        if tear and writing is not None and os.path.exists(writing):
            os.truncate(writing, os.path.getsize(writing) // 2)
        os._exit(EXIT_CODE)

    _count_to(n, end)


def _fork(out: str, n: int, arm) -> int:
    folder = os.path.join(out, str(n))
    os.makedirs(folder)
    pid = os.fork()
    if pid == 0:
        try:
            arm()
            both_stages(os.path.join(folder, FILE))
            code = 0
        except BaseException:
            import traceback

            traceback.print_exc()
            code = 1
        os._exit(code)
    return pid


def _ended(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"signal {os.WTERMSIG(status)}"
    return f"exit {os.WEXITSTATUS(status)}"


def main(argv) -> None:
    mode = argv[0]
    if mode == "record":
        return _record()
    out = argv[1]
    tear = "--tear" in argv
    points = [int(a) for a in argv[2:] if a != "--tear"]
    ended = {}
    for n in points:
        if mode == "exit":
            pid = _fork(out, n, lambda n=n: _exit_at(n, tear))
        else:  # kill: the run reports each point on a pipe; we kill on the n-th
            r, w = os.pipe()

            def report(n=n, w=w):
                _count_to(n, lambda writing: os.write(w, b"!"))

            pid = _fork(out, n, report)
            os.close(w)
            if os.read(r, 1):  # it reached point n (b"" if it ended first)
                os.kill(pid, signal.SIGKILL)
            os.close(r)
        ended[n] = _ended(os.waitpid(pid, 0)[1])
    print(json.dumps(ended))


if __name__ == "__main__":
    main(sys.argv[1:])
