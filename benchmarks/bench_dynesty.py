"""Is a dynesty run through IPyParallelPool as fast as through multiprocessing.Pool?

Issue 19's target: a dynesty NestedSampler run through IPyParallelPool(n)
takes at most 1.0x the time of multiprocessing.Pool(n) (fork) on the same
run. Runs serial, multiprocessing.Pool and IPyParallelPool (default
transport) side by side in one process run, each pool made once, on a cheap
3-D Gaussian and on one that spins 1 ms per call. Every round runs every
peer once, in an order rotated from round to round (this shared VM's speed
drifts within a minute; see bench_pools.py); each peer's ratios are taken
against the other peers' runs of the same round, and the medians reported.

The pools run with ``queue_size=n``, serial with dynesty's 1: a different
run (other proposals, other likelihood calls; ``ncall`` is in the JSON).
Both pools run the same one, so their results must be bit-identical.

    python benchmarks/bench_dynesty.py [--engines 2] [--repeat 5] [--functions module]

``--functions main`` passes the functions as this script's ``__main__``
ones, as a user's script would (dynesty puts both in every map item); by
default they are this file's functions imported as module ``bench_dynesty``,
which engines import by reference.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import statistics
import sys
import time
import warnings
from dataclasses import dataclass

import _workloads  # noqa: F401  (puts this folder on the engines' PYTHONPATH)
import numpy as np

from emcee_ipp import IPyParallelPool

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
NDIM = 3
PEERS = ["serial", "multiprocessing.Pool", "IPyParallelPool"]


def gaussian(x, seconds=0.0):
    """A unit Gaussian log-likelihood that first spins for ``seconds`` (CPU-bound)."""
    if seconds:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            pass
    return float(-0.5 * np.dot(x, x))


def box_prior(u):
    """The unit cube onto [-4, 4]^3."""
    return 4.0 * (2.0 * u - 1.0)


@dataclass
class Workload:
    name: str
    cost_s: float  # seconds per log-likelihood call
    nlive: int
    dlogz: float


WORKLOADS = [
    Workload("gaussian", 0.0, nlive=250, dlogz=0.1),
    Workload("cpu 1 ms", 1e-3, nlive=100, dlogz=0.5),
]


def run_once(w, pool, n, fns, maxiter=None):
    import dynesty

    loglike, ptform = fns
    sampler = dynesty.NestedSampler(
        loglike,
        ptform,
        NDIM,
        nlive=w.nlive,
        logl_args=(w.cost_s,),
        pool=pool,
        queue_size=None if pool is None else n,
        rstate=np.random.default_rng(11),
    )
    t0 = time.perf_counter()
    sampler.run_nested(dlogz=w.dlogz, maxiter=maxiter, print_progress=False)
    return time.perf_counter() - t0, sampler.results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", type=int, default=2)
    parser.add_argument(
        "--repeat",
        type=lambda v: max(1, int(v)),
        default=5,
        help="interleaved rounds (medians reported)",
    )
    parser.add_argument("--functions", choices=["module", "main"], default="module")
    args = parser.parse_args()
    os.makedirs(OUT, exist_ok=True)
    if args.functions == "module":
        import bench_dynesty as models  # this file, as a module the engines can import
    else:
        models = sys.modules["__main__"]
    fns = (models.gaussian, models.box_prior)

    rows = []
    # The fork pool first, so that it copies a process without the
    # ipyparallel client's threads.
    with (
        multiprocessing.get_context("fork").Pool(args.engines) as mp_pool,
        IPyParallelPool(args.engines) as ipp_pool,
    ):
        peers = {"serial": None, "multiprocessing.Pool": mp_pool, "IPyParallelPool": ipp_pool}
        with warnings.catch_warnings():  # a warm-up run stops short, on purpose
            warnings.simplefilter("ignore", UserWarning)
            for pool in peers.values():  # warm: dynesty imported in every worker and engine
                for w in WORKLOADS:
                    run_once(w, pool, args.engines, fns, maxiter=200)
        for w in WORKLOADS:
            rows.extend(run_workload(w, peers, args, fns))
        transport = ipp_pool.transport

    meta = dict(
        engines=args.engines,
        repeat=args.repeat,
        functions=args.functions,
        transport=transport,
        cpus=os.cpu_count(),
        python=platform.python_version(),
        dynesty=_version("dynesty"),
        when=time.strftime("%Y-%m-%d %H:%M"),
    )
    with open(os.path.join(OUT, "bench_dynesty.json"), "w") as f:
        json.dump(dict(meta=meta, results=rows), f, indent=1)
    print()
    for r in rows:
        if r["peer"] == "IPyParallelPool":
            verdict = "meets" if r["ratio_to_mp"] <= 1.0 else "misses"
            print(
                f"{r['workload']}: IPyParallelPool {r['ratio_to_mp']:.2f}x multiprocessing.Pool"
                f" ({verdict} the <= 1.0x target), {r['ratio']:.2f}x serial"
            )


def run_workload(w, peers, args, fns) -> list[dict]:
    seconds: dict[str, list] = {p: [] for p in PEERS}
    results = {}
    for i in range(args.repeat):
        for name in PEERS[i % len(PEERS) :] + PEERS[: i % len(PEERS)]:
            t, res = run_once(w, peers[name], args.engines, fns)
            seconds[name].append(t)
            results.setdefault(name, res)
    rows = []
    for name in PEERS:
        ratios = [a / b for a, b in zip(seconds[name], seconds["serial"])]
        to_mp = [a / b for a, b in zip(seconds[name], seconds["multiprocessing.Pool"])]
        res = results[name]
        row = dict(
            workload=w.name,
            peer=name,
            runs=args.repeat,
            cost_s=w.cost_s,
            nlive=w.nlive,
            seconds=statistics.median(seconds[name]),
            all_seconds=seconds[name],
            ratio=statistics.median(ratios),
            ratios=ratios,
            ratio_to_mp=statistics.median(to_mp),
            ratios_to_mp=to_mp,
            niter=int(res.niter),
            ncall=int(np.sum(res.ncall)),
            logz=float(res.logz[-1]),
            # Both pools make the same run; serial makes another.
            identical=None
            if name == "serial"
            else all(
                np.array_equal(getattr(res, k), getattr(results["multiprocessing.Pool"], k))
                for k in ("logl", "samples", "logz")
            ),
        )
        rows.append(row)
        print(
            f"{w.name:<10}{name:<22}{row['seconds']:7.2f} s {row['ratio']:6.2f}x serial"
            f" {row['ratio_to_mp']:6.2f}x mp (rounds {min(to_mp):.2f}-{max(to_mp):.2f})"
            f"  {row['niter']} iterations, {row['ncall']} calls, identical={row['identical']}",
            flush=True,
        )
    return rows


def _version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


if __name__ == "__main__":
    main()
