"""Is one source tree of emcee_ipp slower than another?

Runs the same small measurement under two checkouts (``--a`` and ``--b``,
e.g. the last release's tree made with ``git worktree add``), each in a
fresh process, alternating A, B, A, B... so both see the same drift of this
shared machine. Each process measures, with a pool of 2 engines (default
transport):

- ``quickstart``: emcee's quickstart (32 walkers, the write-up's line fit)
  through the pool, as a ratio of a serial run of the same steps right
  before it, in the same process;
- ``map_ms``: one map of 50 trivial items, median of many calls (the per-map
  cost).

Reports each tree's medians over the rounds and the paired B/A ratios.

    python benchmarks/bench_ab.py --a /path/to/old/tree --b . [--rounds 6] [--steps 300]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")

CHILD = r"""
import json, statistics, sys, time
import emcee, numpy as np
from emcee_ipp import IPyParallelPool, _quickstart as qs

steps = int(sys.argv[1])
data = qs.make_data()
p0 = qs.start_positions(32)

def run(pool):
    sampler = emcee.EnsembleSampler(32, 3, qs.lnprob, args=data, pool=pool)
    sampler.random_state = np.random.RandomState(1).get_state()
    t0 = time.perf_counter()
    sampler.run_mcmc(p0, steps)
    return time.perf_counter() - t0, sampler.get_chain()

def trivial(x):
    return 0.0

with IPyParallelPool(2) as pool:
    run(pool)  # warm: the function on the engines, the chunk policy settled
    serial, chain_serial = run(None)
    pooled, chain_pooled = run(pool)
    x = np.random.default_rng(0).normal(size=(50, 3))
    for _ in range(300):
        pool.map(trivial, x)
    times = []
    for _ in range(2000):
        t0 = time.perf_counter()
        pool.map(trivial, x)
        times.append(time.perf_counter() - t0)
print(json.dumps({"quickstart": pooled / serial, "map_ms": statistics.median(times) * 1e3,
                  "identical": bool(np.array_equal(chain_serial, chain_pooled))}))
"""


def measure(tree: str, steps: int) -> dict:
    env = dict(os.environ, PYTHONPATH=os.path.abspath(tree))
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(steps)],
        env=env,
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode:
        raise RuntimeError(done.stderr[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--a", required=True, help="the reference tree")
    parser.add_argument("--b", default=".", help="the tree to compare (default: this one)")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--out", default="bench_ab.json")
    args = parser.parse_args()
    runs = {"a": [], "b": []}
    for r in range(args.rounds):
        for side in "ab" if r % 2 == 0 else "ba":  # alternate who goes first
            result = measure(getattr(args, side), args.steps)
            runs[side].append(result)
            print(
                f"round {r + 1} {side}: quickstart {result['quickstart']:.3f}x serial, "
                f"map {result['map_ms']:.3f} ms, identical {result['identical']}",
                flush=True,
            )
    summary = {}
    for key in ("quickstart", "map_ms"):
        a = [x[key] for x in runs["a"]]
        b = [x[key] for x in runs["b"]]
        summary[key] = {
            "a_median": statistics.median(a),
            "b_median": statistics.median(b),
            "b_over_a_paired_median": statistics.median(y / x for x, y in zip(a, b)),
        }
        print(
            f"{key}: A {summary[key]['a_median']:.3f}, B {summary[key]['b_median']:.3f}, "
            f"paired B/A {summary[key]['b_over_a_paired_median']:.3f} (medians of {args.rounds})"
        )
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, args.out), "w") as f:
        json.dump(
            {
                "a": os.path.abspath(args.a),
                "b": os.path.abspath(args.b),
                "when": time.time(),
                "rounds": runs,
                "summary": summary,
            },
            f,
            indent=1,
        )


if __name__ == "__main__":
    main()
