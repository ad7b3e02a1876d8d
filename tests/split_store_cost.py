"""Per-step cost of run_split's ensemble file against emcee's own backends.

Answers: what does saving every step atomically (``emcee_ipp._store``) cost,
against emcee's ``HDFBackend`` (not atomic) and its in-memory ``Backend``?
One process, the backends interleaved round by round; prints microseconds
per step (medians) and the ratio to emcee's HDFBackend::

    python tests/split_store_cost.py [--steps 1000] [--walkers 16] [--ndim 3] [--rounds 3]
"""

import argparse
import os
import statistics
import tempfile
import time

import emcee
import numpy as np

from emcee_ipp._store import EnsembleStore


def log_prob(x):
    return -0.5 * np.dot(x, x)


def per_step_us(make, steps, nwalkers, ndim):
    backend = make()
    backend.reset(nwalkers, ndim)
    sampler = emcee.EnsembleSampler(nwalkers, ndim, log_prob, backend=backend)
    t0 = time.perf_counter()
    sampler.run_mcmc(np.random.default_rng(0).normal(size=(nwalkers, ndim)), steps)
    elapsed = time.perf_counter() - t0
    if hasattr(backend, "close"):
        backend.close()
    return elapsed / steps * 1e6


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--walkers", type=int, default=16)
    parser.add_argument("--ndim", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    a = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="split_store_cost")
    n = iter(range(10**6))
    makers = {
        "emcee Backend (memory)": emcee.backends.Backend,
        "emcee HDFBackend": lambda: emcee.backends.HDFBackend(
            os.path.join(folder, f"h{next(n)}.h5")
        ),
        "EnsembleStore (atomic)": lambda: EnsembleStore(os.path.join(folder, f"s{next(n)}.h5")),
    }
    times = {name: [] for name in makers}
    for _ in range(a.rounds):
        for name, make in makers.items():
            times[name].append(per_step_us(make, a.steps, a.walkers, a.ndim))
    base = statistics.median(times["emcee HDFBackend"])
    print(f"{a.walkers} walkers x {a.ndim} parameters, {a.steps} steps, median of {a.rounds}")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"{name:26s} {med:8.0f} us/step  {med / base:5.2f}x HDFBackend")


if __name__ == "__main__":
    main()
