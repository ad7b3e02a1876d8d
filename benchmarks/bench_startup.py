"""How long from asking for a pool to the first map result?

Side by side in one run, repeated: stock ``ipyparallel.Cluster(n=2)`` (start,
connect, first apply on every engine) against ``IPyParallelPool(n=2)`` (start
and first ``map``). Reports medians and their ratio.

    python benchmarks/bench_startup.py [--engines 2] [--repeat 5]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import ipyparallel as ipp
import numpy as np

from emcee_ipp import IPyParallelPool

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    times = {"stock ipyparallel.Cluster": [], "IPyParallelPool": []}
    for _ in range(args.repeat):
        times["stock ipyparallel.Cluster"].append(stock(args.engines))
        times["IPyParallelPool"].append(ours(args.engines))
    med = {k: statistics.median(v) for k, v in times.items()}
    for k, v in times.items():
        print(f"{k:<28} median {med[k]:.2f} s  (all: {', '.join(f'{t:.2f}' for t in v)})")
    print(f"ratio IPyParallelPool / stock: {med['IPyParallelPool'] / med['stock ipyparallel.Cluster']:.2f}")
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "bench_startup.json"), "w") as f:
        json.dump(dict(engines=args.engines, times=times, median=med), f, indent=1)


if __name__ == "__main__":
    main()
