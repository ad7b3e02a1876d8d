"""What does one map call cost, and does coordination scale with engines?

1. Per-map overhead: a map of 50 trivial items over 2 engines, through the
   direct channel and through ipyparallel's messages (median of many calls).
2. Scaling: emcee with 32 walkers and a log-prob that *sleeps* 10 ms (so
   engines do not compete for the 2 cores), on 2 to 32 engines. Reports the
   speedup over serial against the ideal (each engine's share of a map of
   16 walkers is ceil(16 / engines) calls, so the ideal wall time is that
   fraction of serial's), and the per-map overhead beyond that ideal. A
   serial call takes 10.1-10.4 ms here (the sleep and emcee's work),
   depending on the minute; so each pool run is compared with a serial run
   of a few steps right before it, which keeps that out of the overhead
   (medians over the rounds). The JSON also keeps the efficiency against a
   nominal 10 ms sleep with no emcee work (``efficiency_nominal``). Writes a
   plot of overhead against engine count.

    python benchmarks/bench_overhead.py [--engines 2 4 8 16 32] [--steps 20] [--repeat 3]
        [--serial-steps 5]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time

import emcee
import numpy as np
from _workloads import sleepy

from emcee_ipp import IPyParallelPool

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
SLEEP_S = 10e-3
NWALKERS = 32


def trivial(x):
    return 0.0


def per_map_overhead(calls=2000):
    x = np.random.default_rng(0).normal(size=(50, 3))
    out = {}
    with IPyParallelPool(2, transport="direct") as direct:
        with IPyParallelPool(client=direct.client, transport="ipp") as ipp:
            for name, pool in (("direct", direct), ("ipp", ipp)):
                for _ in range(300):  # let the chunk policy settle
                    pool.map(trivial, x)
                times = []
                for _ in range(calls if name == "direct" else calls // 5):
                    t0 = time.perf_counter()
                    pool.map(trivial, x)
                    times.append(time.perf_counter() - t0)
                out[name] = statistics.median(times)
                print(
                    f"  map of 50 trivial items, 2 engines, {name:<6}: "
                    f"{out[name] * 1e3:.3f} ms (median of {len(times)})",
                    flush=True,
                )
    return out


def scaling(engine_counts, steps, repeat, serial_steps):
    p0 = np.random.default_rng(1).normal(size=(NWALKERS, 3))
    serial = emcee.EnsembleSampler(NWALKERS, 3, sleepy, args=(SLEEP_S,))
    serial.run_mcmc(p0, 1)

    def serial_seconds():
        """Serial's time for ``steps`` steps, from a run of ``serial_steps``."""
        t0 = time.perf_counter()
        serial.run_mcmc(None, serial_steps)
        return (time.perf_counter() - t0) * steps / serial_steps

    nominal_s = steps * 2 * (NWALKERS // 2) * SLEEP_S  # what serial emcee sleeps
    rows = []
    for n in engine_counts:
        t_start = time.perf_counter()
        with IPyParallelPool(n) as pool:
            start_s = time.perf_counter() - t_start
            sampler = emcee.EnsembleSampler(NWALKERS, 3, sleepy, args=(SLEEP_S,), pool=pool)
            sampler.run_mcmc(p0, 5)  # warm-up: function cached, chunk policy settling
            walls, serials = [], []
            for _ in range(repeat):  # median: single runs here drift by ~5%
                serials.append(serial_seconds())
                t0 = time.perf_counter()
                sampler.run_mcmc(None, steps)
                walls.append(time.perf_counter() - t0)
        share = math.ceil((NWALKERS // 2) / n) / (NWALKERS // 2)  # of each map, per engine
        wall, serial_s = statistics.median(walls), statistics.median(serials)
        efficiency = statistics.median(s * share / w for s, w in zip(serials, walls))
        row = dict(
            engines=n,
            wall=wall,
            serial=serial_s,
            ideal=serial_s * share,
            speedup=statistics.median(s / w for s, w in zip(serials, walls)),
            ideal_speedup=1 / share,
            efficiency=efficiency,
            efficiencies=[s * share / w for s, w in zip(serials, walls)],
            efficiency_nominal=nominal_s * share / wall,
            overhead_ms=statistics.median(
                (w - s * share) / (2 * steps) * 1e3 for s, w in zip(serials, walls)
            ),
            start_s=start_s,
            walls=walls,
            serials=serials,
        )
        rows.append(row)
        print(
            f"  {n:3d} engines: {wall:6.2f} s (serial {serial_s:.2f} s), speedup "
            f"{row['speedup']:5.2f} of ideal {row['ideal_speedup']:5.2f} "
            f"({100 * efficiency:.0f}%; rounds "
            + ", ".join(f"{100 * e:.0f}" for e in row["efficiencies"])
            + f"), overhead {row['overhead_ms']:.2f} ms per map, start {start_s:.1f} s",
            flush=True,
        )
    return rows


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    ax.plot([r["engines"] for r in rows], [r["overhead_ms"] for r in rows], "o-")
    ax.set(
        xscale="log",
        xlabel="engines (on 2 cores)",
        ylabel="overhead per map (ms)",
        title="Coordination cost, 10 ms sleeping log-prob, 32 walkers",
    )
    ax.set_xticks([r["engines"] for r in rows], [str(r["engines"]) for r in rows])
    ax.xaxis.set_minor_formatter(NullFormatter())  # no 3x10^0 labels
    ax.set_ylim(bottom=0)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"plot written to {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", type=int, nargs="+", default=[2, 4, 8, 16, 32])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3, help="runs per engine count (median)")
    parser.add_argument(
        "--serial-steps", type=int, default=5, help="steps of the serial run before each pool run"
    )
    args = parser.parse_args()
    os.makedirs(OUT, exist_ok=True)
    print("per-map overhead:")
    overhead = per_map_overhead()
    print("scaling with a 10 ms sleeping log-prob:")
    rows = scaling(args.engines, args.steps, args.repeat, args.serial_steps)
    with open(os.path.join(OUT, "bench_overhead.json"), "w") as f:
        json.dump(dict(per_map_s=overhead, scaling=rows), f, indent=1)
    plot(rows, os.path.join(OUT, "bench_overhead.png"))


if __name__ == "__main__":
    main()
