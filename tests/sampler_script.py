"""dynesty through IPyParallelPool from a user's script; run as a subprocess
by tests/test_samplers.py, from another folder.

    python sampler_script.py {direct,ipp}

Runs each of ``sampler_models.DYNESTY_RUNS`` through multiprocessing.Pool(2)
(fork) and through IPyParallelPool(2, transport=...), twice: with the
log-likelihood and prior transform defined here, in ``__main__`` ("main"),
and imported from ``sampler_models`` beside this script ("module": nothing
but the pool itself puts this folder on the engines' path). dynesty puts
both functions inside every map item. Prints one JSON line: for each run,
whether the pool's results equal the multiprocessing pool's bit for bit, or
the error the run raised. Closes both pools before it exits (the suite's
leak check finds any process left behind).
"""

import json
import multiprocessing
import sys

import numpy as np
import sampler_models

from emcee_ipp import IPyParallelPool


def loglike(x):
    return float(-0.5 * np.dot(x, x))


def prior_transform(u):
    return 4.0 * (2.0 * u - 1.0)


FUNCTIONS = {
    "main": dict(loglike=loglike, ptform=prior_transform),
    "module": dict(loglike=sampler_models.gaussian_loglike, ptform=sampler_models.box_prior),
}


def main(transport: str) -> None:
    runs = [(where, kind) for where in FUNCTIONS for kind in sampler_models.DYNESTY_RUNS]
    # The reference first, so that fork copies a process without the
    # ipyparallel client's threads.
    with multiprocessing.get_context("fork").Pool(2) as mp_pool:
        reference = {
            (where, kind): sampler_models.run_dynesty(kind, mp_pool, **FUNCTIONS[where])
            for where, kind in runs
        }
    report = {}
    with IPyParallelPool(2, transport=transport) as pool:
        for where, kind in runs:
            try:
                sampler = sampler_models.run_dynesty(kind, pool, **FUNCTIONS[where])
            except Exception as exc:  # reported, and the other runs still run
                report[f"{where} {kind}"] = dict(error=f"{type(exc).__name__}: {exc}")
                continue
            report[f"{where} {kind}"] = dict(
                identical=sampler_models.same_dynesty_results(
                    sampler.results, reference[where, kind].results
                ),
                queue_size=sampler.queue_size,
                logz=float(sampler.results.logz[-1]),
            )
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
