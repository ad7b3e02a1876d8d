"""Are nautilus and pocoMC as fast through IPyParallelPool as through multiprocessing.Pool?

Runs serial, multiprocessing.Pool(n) (fork) and IPyParallelPool(n) (default
transport) side by side in one process run, each pool made once, on the
3-D Gaussian of bench_dynesty.py, cheap and spinning 1 ms per call. Every
round runs every peer once, in an order rotated from round to round; each
ratio is taken within a round, and the medians reported.

- nautilus draws a seed per map item in the client: both pools give the
  same run, bit for bit (serial samples its bounds with other numbers).
- pocoMC draws every random number in the client: all three peers give the
  same run. Its normalizing flow trains in the client between maps, so the
  pool shortens only the likelihood's share.

    python benchmarks/bench_samplers.py [--engines 2] [--repeat 5]
"""

from __future__ import annotations

import argparse
import functools
import json
import multiprocessing
import os
import platform
import statistics
import time

import numpy as np
from bench_dynesty import NDIM, box_prior, gaussian

from emcee_ipp import IPyParallelPool

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
PEERS = ["serial", "multiprocessing.Pool", "IPyParallelPool"]


def run_nautilus(pool, seconds):
    import nautilus

    sampler = nautilus.Sampler(
        box_prior,
        functools.partial(gaussian, seconds=seconds),
        n_dim=NDIM,
        pool=pool,
        seed=4,
        n_live=300,
        n_networks=2,
    )
    sampler.run(verbose=False, f_live=0.1, n_eff=1000)
    points, log_w, log_l = sampler.posterior()
    return float(sampler.log_z), [points, log_w, log_l]


def run_pocomc(pool, seconds):
    import pocomc
    from scipy.stats import uniform

    prior = pocomc.Prior([uniform(-4.0, 8.0)] * NDIM)
    sampler = pocomc.Sampler(
        prior,
        functools.partial(gaussian, seconds=seconds),
        n_effective=256,
        n_active=128,
        pool=pool,
        random_state=5,
    )
    sampler.run(n_total=512, n_evidence=512, progress=False)
    samples, weights, logl, _ = sampler.posterior()
    return float(sampler.evidence()[0]), [samples, weights, logl]


RUNS = {
    "nautilus, cheap": (run_nautilus, 0.0),
    "nautilus, 1 ms": (run_nautilus, 1e-3),
    "pocoMC, cheap": (run_pocomc, 0.0),
    "pocoMC, 1 ms": (run_pocomc, 1e-3),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    os.makedirs(OUT, exist_ok=True)
    results = []
    with (
        multiprocessing.get_context("fork").Pool(args.engines) as mp_pool,
        IPyParallelPool(args.engines) as ipp_pool,
    ):
        pools = {"serial": None, "multiprocessing.Pool": mp_pool, "IPyParallelPool": ipp_pool}
        for name, (run, seconds) in RUNS.items():
            run(ipp_pool, seconds)  # warm: the engines import the sampler's modules once
            rounds = []
            for r in range(args.repeat):
                times, outs = {}, {}
                for peer in PEERS[r % 3 :] + PEERS[: r % 3]:
                    t0 = time.perf_counter()
                    outs[peer] = run(pools[peer], seconds)
                    times[peer] = time.perf_counter() - t0
                same = all(
                    np.array_equal(a, b)
                    for a, b in zip(outs["IPyParallelPool"][1], outs["multiprocessing.Pool"][1])
                )
                rounds.append({"seconds": times, "identical_to_mp": same})
                print(
                    f"{name:16s} round {r}: "
                    + ", ".join(f"{p} {times[p]:.2f} s" for p in PEERS)
                    + f"; ours/mp {times['IPyParallelPool'] / times['multiprocessing.Pool']:.2f}"
                    + f", identical to mp {same}",
                    flush=True,
                )
            ratio = {
                p: statistics.median(x["seconds"][p] / x["seconds"]["serial"] for x in rounds)
                for p in PEERS
            }
            vs_mp = statistics.median(
                x["seconds"]["IPyParallelPool"] / x["seconds"]["multiprocessing.Pool"]
                for x in rounds
            )
            results.append(
                {"run": name, "over_serial": ratio, "ours_over_mp": vs_mp, "rounds": rounds}
            )
            print(f"{name:16s} median ours/mp {vs_mp:.2f}; over serial: {ratio}", flush=True)
    meta = {
        "engines": args.engines,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "when": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
    }
    path = os.path.join(OUT, "bench_samplers.json")
    with open(path, "w") as f:
        json.dump({"meta": meta, "results": results}, f, indent=1)
    print(f"written to {path}")


if __name__ == "__main__":
    main()
