"""Which pool makes an emcee run fastest, and by how much?

Runs the peers side by side, in one process run, on the same workloads and
random state: serial, multiprocessing.Pool, schwimmbad.MultiPool, an
ipyparallel DirectView passed as ``pool=`` (the seed write-up's EDIT) on a
stock cluster and on the pool's own engines, and IPyParallelPool over
ipyparallel's messages and over its direct channel. Reports seconds, the
ratio to serial (per step, where a slow peer runs fewer steps of the same
chain), and whether each chain is bit-identical to the serial one; writes
JSON and a plot of time/serial against log-prob cost.

    python benchmarks/bench_pools.py [--engines 2] [--scale 1.0] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import emcee
import numpy as np
from _workloads import FULL_LENGTH, PEERS, peer, workloads

from emcee_ipp import IPyParallelPool

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def run_once(w, pool, nsteps):
    sampler = emcee.EnsembleSampler(w.nwalkers, 3, w.fn, args=w.args, pool=pool)
    sampler.random_state = np.random.RandomState(7).get_state()
    t0 = time.perf_counter()
    sampler.run_mcmc(w.start(), nsteps)
    return time.perf_counter() - t0, sampler.get_chain()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", type=int, default=2)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every step count")
    parser.add_argument("--only", nargs="*", help="workload names to run")
    parser.add_argument(
        "--repeat",
        type=lambda v: max(1, int(v)),
        default=3,
        help="interleaved rounds of every full-length peer (median reported)",
    )
    args = parser.parse_args()
    os.makedirs(OUT, exist_ok=True)

    results = []
    with IPyParallelPool(args.engines, transport="direct") as ipp_pool:
        # As warm as the stock cluster's engines (see _workloads.peer): the
        # DirectView peers on these engines send emcee's own log-prob wrapper,
        # whose unpickling imports emcee (0.7-0.9 s; IPyParallelPool sends
        # its own, see emcee_ipp/_logprob.py), and every peer needs _workloads.
        ipp_pool.client[:].execute("import emcee, _workloads", block=True)
        every = workloads(args.scale)
        for w in every.values():
            if args.only and w.name not in args.only:
                continue
            paired = every[w.paired_with] if w.paired_with else None
            results.extend(run_workload(w, args, ipp_pool, paired))

    meta = dict(
        engines=args.engines,
        scale=args.scale,
        cpus=os.cpu_count(),
        python=platform.python_version(),
        when=time.strftime("%Y-%m-%d %H:%M"),
    )
    with open(os.path.join(OUT, "bench_pools.json"), "w") as f:
        json.dump(dict(meta=meta, results=results), f, indent=1)
    print()
    print(markdown_table(results))
    plot(results, os.path.join(OUT, "bench_pools.png"))


def run_workload(w, args, ipp_pool, paired=None) -> list[dict]:
    """Every peer that runs the workload's full step count runs ``--repeat``
    interleaved rounds, and in every round right after a serial run of its
    own: its ratio is taken against that serial run, seconds before it. This
    shared VM's speed drifts by 10-20% within a minute (serial runs of the
    quickstart a minute apart took 1.31 to 2.15 s on 2026-11-28), so a peer
    compared with a serial run a minute earlier, as the last peer of a round
    was, compared the minutes. Peers too slow for the full run
    (``w.peer_steps``) run once, against the median serial time. Rows report
    the median ratio and all of them; the serial row, every serial run.

    With a ``paired`` workload, each of those peers runs it right before
    ``w`` in every round (after the serial run of ``w``), and the row also
    reports ``w``'s time per step over the paired run's (``vs_paired``): the
    50 MB run against the small one, a minute apart at most."""
    in_rounds = [p for p in PEERS if w.peer_steps is None or p in FULL_LENGTH]
    runs: dict[str, list] = {}
    vs_paired: dict[str, list] = {}
    reference = None
    serial_per_step = []

    def serial_run():
        nonlocal reference
        seconds, chain = run_once(w, None, w.nsteps)
        reference = chain if reference is None else reference
        serial_per_step.append(seconds / w.nsteps)
        runs.setdefault("serial", []).append((seconds, w.nsteps, 1.0, chain))

    for _ in range(args.repeat):
        for name in in_rounds:
            if name != "serial":
                serial_run()  # the reference right beside this peer's run
            if paired is not None:
                with peer(name, args.engines, ipp_pool) as pool:
                    before, _ = run_once(paired, pool, paired.nsteps)
            if name == "serial":
                serial_run()
                seconds = runs["serial"][-1][0]
            else:
                with peer(name, args.engines, ipp_pool) as pool:
                    seconds, chain = run_once(w, pool, w.nsteps)
                runs.setdefault(name, []).append(
                    (seconds, w.nsteps, seconds / w.nsteps / serial_per_step[-1], chain)
                )
            if paired is not None:
                vs_paired.setdefault(name, []).append(  # per step
                    (seconds / w.nsteps) / (before / paired.nsteps)
                )
    median_serial = statistics.median(serial_per_step)
    for name in PEERS:
        if name not in in_rounds:
            with peer(name, args.engines, ipp_pool) as pool:
                seconds, chain = run_once(w, pool, w.peer_steps)
            runs[name] = [(seconds, w.peer_steps, seconds / w.peer_steps / median_serial, chain)]
    rows = []
    for name in PEERS:
        ratios = [r[2] for r in runs[name]]
        nsteps = runs[name][0][1]
        row = dict(
            workload=w.name,
            peer=name,
            nsteps=nsteps,
            runs=len(ratios),
            seconds=statistics.median(r[0] for r in runs[name]),
            ratio=statistics.median(ratios),
            ratios=ratios,
            identical=all(np.array_equal(r[3], reference[:nsteps]) for r in runs[name]),
            cost_s=w.cost_s,
            nwalkers=w.nwalkers,
            on_plot=w.on_plot,
        )
        if name in vs_paired:
            row.update(
                paired_with=paired.name,
                vs_paired=statistics.median(vs_paired[name]),
                vs_paired_runs=vs_paired[name],
            )
        rows.append(row)
        spread = "" if len(ratios) == 1 else f" (runs {min(ratios):.2f}-{max(ratios):.2f})"
        print(
            f"{w.name:<26}{name:<42}{nsteps:5d} steps {row['seconds']:8.2f} s"
            f" {row['ratio']:6.2f}x serial{spread:<19} identical={row['identical']}",
            flush=True,
        )
        if name in vs_paired:
            v = vs_paired[name]
            print(
                f"{'':<26}{'':<42}{'':>5}  its wall time / the {paired.name} run before it:"
                f" {row['vs_paired']:.2f} (runs {min(v):.2f}-{max(v):.2f})",
                flush=True,
            )
    return rows


def markdown_table(results) -> str:
    names = list(dict.fromkeys(r["workload"] for r in results))
    lines = ["| workload | " + " | ".join(PEERS[1:]) + " |", "|---|" + "---|" * (len(PEERS) - 1)]
    for wname in names:
        rows = {r["peer"]: r for r in results if r["workload"] == wname}
        cells = [
            f"{rows[p]['ratio']:.2f}" + ("" if rows[p]["identical"] else " (differs)")
            for p in PEERS[1:]
            if p in rows
        ]
        serial = rows["serial"]
        lines.append(
            f"| {wname} (serial {serial['seconds']:.2f} s, {serial['nsteps']} steps) | "
            + " | ".join(cells)
            + " |"
        )
    for r in results:
        if "vs_paired" in r:
            runs = ", ".join(f"{v:.2f}" for v in r["vs_paired_runs"])
            lines.append(
                f"\n{r['peer']}: the {r['workload']} run takes {r['vs_paired']:.2f}x "
                f"the {r['paired_with']} run just before it (rounds: {runs})"
            )
    return "\n".join(lines)


def plot(results, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    plain = [r for r in results if r.get("on_plot", True)]
    for name in PEERS[1:]:
        pts = sorted((r["cost_s"], r["ratio"]) for r in plain if r["peer"] == name)
        if pts:
            ax.plot(
                *zip(*pts),
                marker="o",
                label=name,
                lw=2.5 if name.startswith("IPyParallelPool") else 1.2,
            )
    ax.axhline(1.0, color="k", lw=0.8, ls="--", label="serial")
    ax.axhline(0.5, color="grey", lw=0.8, ls=":", label="ideal on 2 cores")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="log-prob cost per call (s)",
        ylabel="wall time / serial (lower is faster)",
        title="emcee through each pool, 2 cores",
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"plot written to {path}")


if __name__ == "__main__":
    main()
