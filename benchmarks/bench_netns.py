"""What does it cost when engines are on other hosts?

Two "hosts" are Linux network namespaces on a veth/bridge link (needs root and
iproute2; see tests/netns.py); the controller and the client stay in the root
namespace. Side by side in one run: the quickstart serially and through
IPyParallelPool over each transport, and the per-map cost of 50 trivial
items, across namespaces.

    sudo python benchmarks/bench_netns.py [--steps 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import emcee
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
os.environ["PYTHONPATH"] = os.pathsep.join([os.path.join(HERE, "..", "tests"), HERE])

import netns  # noqa: E402

from emcee_ipp import IPyParallelPool  # noqa: E402
from emcee_ipp import _quickstart as qs  # noqa: E402

OUT = os.path.join(HERE, "results")


def trivial(x):
    return 0.0


def quickstart(pool, steps):
    sampler = emcee.EnsembleSampler(100, 3, qs.lnprob, args=qs.make_data(), pool=pool)
    sampler.random_state = np.random.RandomState(7).get_state()
    t0 = time.perf_counter()
    sampler.run_mcmc(qs.start_positions(100), steps)
    return time.perf_counter() - t0, sampler.get_chain()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    args = parser.parse_args()
    reason = netns.unavailable()
    if reason:
        sys.exit(f"bench_netns: cannot run here: {reason}")
    rows = {}
    serial_s, reference = quickstart(None, args.steps)
    rows["serial"] = dict(seconds=serial_s, ratio=1.0, identical=True)
    with netns.hosts(2) as hosts, netns.cluster_across(hosts) as (_, client, _):
        for transport in ("direct", "ipp"):
            with IPyParallelPool(client=client, transport=transport) as pool:
                quickstart(pool, 5)  # engines import emcee once
                seconds, chain = quickstart(pool, args.steps)
                x = np.zeros((50, 3))
                for _ in range(200):
                    pool.map(trivial, x)
                per_map = []
                for _ in range(1000 if transport == "direct" else 200):
                    t0 = time.perf_counter()
                    pool.map(trivial, x)
                    per_map.append(time.perf_counter() - t0)
                rows[transport] = dict(
                    seconds=seconds,
                    ratio=seconds / serial_s,
                    identical=bool(np.array_equal(chain, reference)),
                    per_map_ms=statistics.median(per_map) * 1e3,
                )
    print(f"quickstart, {args.steps} steps, 2 engines in 2 network namespaces:")
    for name, row in rows.items():
        extra = f", 50-item map {row['per_map_ms']:.2f} ms" if "per_map_ms" in row else ""
        print(
            f"  {name:<7}{row['seconds']:7.2f} s  {row['ratio']:5.2f}x serial  "
            f"identical={row['identical']}{extra}"
        )
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "bench_netns.json"), "w") as f:
        json.dump(dict(steps=args.steps, rows=rows), f, indent=1)


if __name__ == "__main__":
    main()
