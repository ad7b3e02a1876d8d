"""How long from asking for a pool to the first map result?

Side by side in one run, repeated: stock ``ipyparallel.Cluster(n=2)`` (start,
connect, first apply on every engine) against ``IPyParallelPool(n=2)`` (start
and first ``map``). Reports medians and their ratio. Also the time from
``IPyParallelPool(n=2)`` to the first step of the quickstart's sampler (the
first map of an emcee log-prob: its function and data go out, and the
engines unpickle them), and the engines' memory (RSS) after it.

    python benchmarks/bench_startup.py [--engines 2] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import emcee
import ipyparallel as ipp
import numpy as np

from emcee_ipp import IPyParallelPool
from emcee_ipp import _quickstart as qs

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def stock(n: int) -> float:
    t0 = time.perf_counter()
    cluster = ipp.Cluster(n=n, log_level=40)
    client = cluster.start_and_connect_sync(activate=False)
    client[:].apply_sync(os.getpid)
    elapsed = time.perf_counter() - t0
    client.close()
    cluster.stop_cluster_sync()
    return elapsed


def ours(n: int) -> float:
    t0 = time.perf_counter()
    with IPyParallelPool(n) as pool:
        pool.map(float, np.zeros(4))
        return time.perf_counter() - t0


def engine_rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def first_step(n: int) -> tuple[float, list[float]]:
    """Seconds from asking for the pool to the quickstart's first step; engines' RSS (MB)."""
    p0 = qs.start_positions(100)
    t0 = time.perf_counter()
    with IPyParallelPool(n) as pool:
        sampler = emcee.EnsembleSampler(100, 3, qs.lnprob, args=qs.make_data(), pool=pool)
        sampler.run_mcmc(p0, 1)
        elapsed = time.perf_counter() - t0
        return elapsed, pool.client[:].apply_sync(engine_rss_mb)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    times = {
        "stock ipyparallel.Cluster": [],
        "IPyParallelPool": [],
        "IPyParallelPool, first emcee step": [],
    }
    rss = []
    for _ in range(args.repeat):
        times["stock ipyparallel.Cluster"].append(stock(args.engines))
        times["IPyParallelPool"].append(ours(args.engines))
        seconds, mb = first_step(args.engines)
        times["IPyParallelPool, first emcee step"].append(seconds)
        rss.extend(mb)
    med = {k: statistics.median(v) for k, v in times.items()}
    for k, v in times.items():
        print(f"{k:<34} median {med[k]:.2f} s  (all: {', '.join(f'{t:.2f}' for t in v)})")
    ratio = med["IPyParallelPool"] / med["stock ipyparallel.Cluster"]
    print(f"ratio IPyParallelPool / stock: {ratio:.2f}")
    print(
        f"engine RSS after the first emcee step: median {statistics.median(rss):.0f} MB "
        f"({min(rss):.0f}-{max(rss):.0f})"
    )
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "bench_startup.json"), "w") as f:
        json.dump(
            dict(engines=args.engines, times=times, median=med, engine_rss_mb=rss), f, indent=1
        )


if __name__ == "__main__":
    main()
