"""How long from asking for a pool to its first useful result?

Every measure runs in a fresh Python process (``--one NAME``), as a user's
script or notebook meets it: nothing imported yet but numpy. The measures
are interleaved, round after round (the order rotates), and each is
reported as the median over the rounds:

- ``multiprocessing.Pool``: import it, create ``Pool(n)``, first ``map``
  result: the floor;
- ``stock ipyparallel.Cluster``: import ipyparallel, start a cluster of
  ``n``, connect, first ``apply`` on every engine;
- ``import emcee_ipp to first map``: ``import emcee_ipp``,
  ``IPyParallelPool(n)``, first ``map`` result;
- ``IPyParallelPool, first emcee step``: the same to the first step of the
  quickstart's sampler (its log-prob and data sent, unpickled and run);
- ``first run_split over a warm one``: on a pool that has mapped once, the
  first ``run_split`` less the second, the same (the engines' first
  ``run_split`` imports emcee there).

Also the engines' memory (RSS) after the first emcee step.

    python benchmarks/bench_startup.py [--engines 2] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def _square(x: float) -> float:
    return x * x


def mp_pool(n: int) -> dict:
    t0 = time.perf_counter()
    import multiprocessing

    with multiprocessing.Pool(n) as pool:
        pool.map(_square, range(4))
        return {"seconds": time.perf_counter() - t0}


def stock(n: int) -> dict:
    t0 = time.perf_counter()
    import ipyparallel as ipp

    cluster = ipp.Cluster(n=n, log_level=40)
    client = cluster.start_and_connect_sync(activate=False)
    client[:].apply_sync(os.getpid)
    elapsed = time.perf_counter() - t0
    client.close()
    cluster.stop_cluster_sync()
    return {"seconds": elapsed}


def first_map(n: int) -> dict:
    t0 = time.perf_counter()
    from emcee_ipp import IPyParallelPool

    with IPyParallelPool(n) as pool:
        pool.map(float, np.zeros(4))
        return {"seconds": time.perf_counter() - t0}


def engine_rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def first_step(n: int) -> dict:
    """Seconds from ``import emcee_ipp`` to the quickstart's first step; engines' RSS (MB)."""
    import emcee

    t0 = time.perf_counter()
    from emcee_ipp import IPyParallelPool
    from emcee_ipp import _quickstart as qs

    p0 = qs.start_positions(100)
    with IPyParallelPool(n) as pool:
        sampler = emcee.EnsembleSampler(100, 3, qs.lnprob, args=qs.make_data(), pool=pool)
        sampler.run_mcmc(p0, 1)
        elapsed = time.perf_counter() - t0
        return {"seconds": elapsed, "engine_rss_mb": pool.client[:].apply_sync(engine_rss_mb)}


def split_extra(n: int) -> dict:
    """The first run_split on a pool that has mapped, less the second."""
    import emcee

    from emcee_ipp import IPyParallelPool, run_split
    from emcee_ipp import _quickstart as qs

    p0 = qs.start_positions(32)
    sampler = emcee.EnsembleSampler(32, 3, qs.lnprob, args=qs.make_data())
    with IPyParallelPool(n) as pool:
        pool.map(float, np.zeros(4))  # the engines are prepared: warm for maps
        took = []
        for _ in range(2):
            t0 = time.perf_counter()
            run_split(pool, sampler, p0, 20, n_ensembles=n, seed=1)
            took.append(time.perf_counter() - t0)
    return {"seconds": took[0] - took[1], "first": took[0], "second": took[1]}


MEASURES = {
    "multiprocessing.Pool": mp_pool,
    "stock ipyparallel.Cluster": stock,
    "import emcee_ipp to first map": first_map,
    "IPyParallelPool, first emcee step": first_step,
    "first run_split over a warm one": split_extra,
}


def _fresh(name: str, n: int) -> dict:
    run = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--one", name, "--engines", str(n)],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1"),
    )
    if run.returncode:
        raise RuntimeError(f"{name}: {run.stderr[-2000:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--one", choices=list(MEASURES), help=argparse.SUPPRESS)
    parser.add_argument("--only", nargs="+", choices=list(MEASURES), default=list(MEASURES))
    args = parser.parse_args()
    if args.one:
        print(json.dumps(MEASURES[args.one](args.engines)))
        return
    names = list(args.only)
    times: dict[str, list[float]] = {name: [] for name in names}
    runs: dict[str, list[dict]] = {name: [] for name in names}
    for r in range(args.repeat):
        for name in names[r % len(names) :] + names[: r % len(names)]:  # rotated
            got = _fresh(name, args.engines)
            times[name].append(got["seconds"])
            runs[name].append(got)
            print(f"round {r}: {name:<36} {got['seconds']:.2f} s", flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    for k, v in times.items():
        print(f"{k:<36} median {med[k]:.2f} s  (all: {', '.join(f'{t:.2f}' for t in v)})")
    rss = [
        mb
        for got in runs.get("IPyParallelPool, first emcee step", [])
        for mb in got["engine_rss_mb"]
    ]
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "bench_startup.json"), "w") as f:
        json.dump(
            dict(
                engines=args.engines,
                command="python benchmarks/bench_startup.py " + " ".join(sys.argv[1:]),
                date=time.strftime("%Y-%m-%dT%H:%M:%S"),
                times=times,
                median=med,
                runs=runs,
                engine_rss_mb=rss,
            ),
            f,
            indent=1,
        )


if __name__ == "__main__":
    main()
