"""Is splitting the chain across engines as fast as it should be?

Same total samples, side by side in one run: serial emcee for ``n * steps``
steps, ``run_split`` with ``n`` ensembles of ``steps`` steps on ``n`` engines,
and the seed write-up's recipe (push the sampler to a DirectView, execute
``run_mcmc`` on every engine, gather the samples). Ideal on n cores: 1/n.

    python benchmarks/bench_split.py [--engines 2] [--steps 1000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import emcee

from emcee_ipp import IPyParallelPool, run_split
from emcee_ipp import _quickstart as qs

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def serial(total_steps, p0):
    s = emcee.EnsembleSampler(len(p0), 3, qs.lnprob, args=qs.make_data())
    t0 = time.perf_counter()
    s.run_mcmc(p0, total_steps)
    return time.perf_counter() - t0


def split(pool, steps, p0):
    s = emcee.EnsembleSampler(len(p0), 3, qs.lnprob, args=qs.make_data())
    t0 = time.perf_counter()
    r = run_split(pool, s, p0, steps, n_ensembles=pool.size, seed=1)
    elapsed = time.perf_counter() - t0
    assert r.get_chain().shape == (steps, pool.size * len(p0), 3)
    return elapsed


def seed_recipe(pool, steps, p0, burn=100):
    """The write-up's push/execute/gather method (cloudpickle for dill)."""
    dview = pool.client[:]
    dview.block = True
    dview.use_cloudpickle()
    sampler = emcee.EnsembleSampler(len(p0), 3, qs.lnprob, args=qs.make_data())
    t0 = time.perf_counter()
    dview["sampler"] = sampler
    dview["pos"] = p0
    dview["npernode"] = steps
    dview["burnin"] = burn
    dview.execute("import numpy as np")
    dview.execute(
        "sampler.run_mcmc(pos, npernode)\nsamples = sampler.get_chain(discard=burnin, flat=True)"
    )
    samples = dview.gather("samples")
    elapsed = time.perf_counter() - t0
    assert samples.shape == (pool.size * (steps - burn) * len(p0), 3)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", type=int, default=2)
    parser.add_argument("--steps", type=int, default=1000, help="steps per ensemble")
    parser.add_argument("--walkers", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    p0 = qs.start_positions(args.walkers)
    times = {"serial": [], "run_split": [], "seed recipe (push/execute/gather)": []}
    with IPyParallelPool(args.engines) as pool:
        split(pool, 2, p0)  # engines import emcee once; start-up is bench_startup's job
        for _ in range(args.repeat):
            times["serial"].append(serial(args.steps * pool.size, p0))
            times["run_split"].append(split(pool, args.steps, p0))
            times["seed recipe (push/execute/gather)"].append(seed_recipe(pool, args.steps, p0))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(
        f"{args.engines} engines, {args.walkers} walkers, {args.steps} steps per ensemble "
        f"against {args.steps * args.engines} serial steps; median of {args.repeat}"
    )
    for k in times:
        print(f"  {k:<36}{med[k]:7.2f} s  {med[k] / med['serial']:.2f} of serial")
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "bench_split.json"), "w") as f:
        json.dump(dict(args=vars(args), times=times, median=med), f, indent=1)


if __name__ == "__main__":
    main()
