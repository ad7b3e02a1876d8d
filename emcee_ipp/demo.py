"""Run the seed's quickstart serially, through IPyParallelPool (also with
``client_computes=True``), and split.

Runs on the client. Prints wall time, the ratio to serial, whether the pooled
chain is bit-identical to the serial one, the split run's R-hat, and the
posterior per parameter next to the true values.
"""

from __future__ import annotations

import argparse
import time

import emcee
import numpy as np

from . import _quickstart as qs
from .pool import IPyParallelPool
from .split import run_split


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--engines", type=int, default=None, help="engines (default: CPU cores)")
    parser.add_argument("--steps", type=int, default=1000, help="steps per run (default 1000)")
    parser.add_argument("--walkers", type=int, default=100, help="walkers (default 100)")
    parser.add_argument("--burn", type=int, default=None, help="steps discarded (default steps/10)")
    parser.add_argument("--seed", type=int, default=42, help="random state of the samplers")
    parser.add_argument("--plot", metavar="FILE.png", help="write a corner plot of the runs")
    parser.add_argument("--progress", action="store_true", help="show emcee's progress bars")


def _sampler(nwalkers, pool):
    return emcee.EnsembleSampler(nwalkers, 3, qs.lnprob, args=qs.make_data(), pool=pool)


def _timed_run(sampler, p0, args):
    sampler.random_state = np.random.RandomState(args.seed).get_state()
    t0 = time.perf_counter()
    sampler.run_mcmc(p0, args.steps, progress=args.progress)
    return time.perf_counter() - t0


def run(args: argparse.Namespace) -> int:
    burn = args.steps // 10 if args.burn is None else args.burn
    p0 = qs.start_positions(args.walkers)
    rows: list[tuple] = []  # (name, seconds, identical to serial, flat samples, rhat)

    serial = _sampler(args.walkers, None)
    t_serial = _timed_run(serial, p0, args)
    reference = serial.get_chain()
    rows.append(("serial", t_serial, True, serial.get_chain(discard=burn, flat=True), None))

    t0 = time.perf_counter()
    with IPyParallelPool(args.engines) as pool:
        print(f"started {pool.size} engines in {time.perf_counter() - t0:.2f} s")
        pooled = _sampler(args.walkers, pool)
        t_pool = _timed_run(pooled, p0, args)
        same = np.array_equal(pooled.get_chain(), reference)
        rows.append(
            (
                f"IPyParallelPool (n={pool.size})",
                t_pool,
                same,
                pooled.get_chain(discard=burn, flat=True),
                None,
            )
        )

        # The same pool, the client evaluating a share of each map too.
        pool.client_computes = True
        shared = _sampler(args.walkers, pool)
        t_shared = _timed_run(shared, p0, args)
        pool.client_computes = False
        rows.append(
            (
                "  with client_computes=True",
                t_shared,
                np.array_equal(shared.get_chain(), reference),
                shared.get_chain(discard=burn, flat=True),
                None,
            )
        )

        # Same total samples: n ensembles of steps/n steps each, in parallel.
        n = pool.size
        t0 = time.perf_counter()
        split = run_split(
            pool,
            _sampler(args.walkers, None),
            p0,
            max(args.steps // n, burn + 1),
            n_ensembles=n,
            seed=args.seed,
            progress=args.progress,
        )
        t_split = time.perf_counter() - t0
        rhat = split.rhat(discard=burn)
        rows.append(
            (
                f"run_split ({n} x {split.iteration} steps)",
                t_split,
                None,
                split.get_chain(discard=burn, flat=True),
                rhat,
            )
        )

    _print_table(rows, t_serial, args)
    if args.plot:
        _corner(rows, args.plot)
        print(f"corner plot written to {args.plot}")
    ok = all(r[2] is not False for r in rows) and np.all(rhat < 1.1)
    return 0 if ok else 1


def _print_table(rows, t_serial, args) -> None:
    print(f"\nquickstart: {args.walkers} walkers, {args.steps} steps of samples, 3 parameters")
    print(f"{'run':<34}{'wall s':>8}{'x serial':>10}  {'identical':<11}R-hat (m, b, ln f)")
    for name, t, same, _, rhat in rows:
        ident = "n/a" if same is None else str(same)
        rh = "-" if rhat is None else ", ".join(f"{r:.4f}" for r in rhat)
        print(f"{name:<34}{t:>8.2f}{t / t_serial:>10.2f}  {ident:<11}{rh}")
    print("\nposterior median [16%, 84%] per run; true value last")
    for i, label in enumerate(qs.LABELS):
        cells = []
        for _, _, _, flat, _ in rows:
            lo, med, hi = np.percentile(flat[:, i], [16, 50, 84])
            cells.append(f"{med:+.3f} [{lo:+.3f}, {hi:+.3f}]")
        print(f"  {label:<5} " + "  ".join(cells) + f"  ({qs.TRUTH[i]:+.3f})")


def _corner(rows, path) -> None:
    try:
        import warnings

        with warnings.catch_warnings():  # corner imports arviz, which announces a refactor
            warnings.simplefilter("ignore", FutureWarning)
            import corner
        import matplotlib

        matplotlib.use("Agg")
    except ImportError as exc:
        raise ImportError(
            "--plot needs corner and matplotlib: pip install 'emcee_ipp[demo]'"
        ) from exc
    # The pooled chains are identical to the serial one: dashed and dotted, drawn over it.
    styles = [
        ("k", "-", 2.5),
        ("tab:blue", "--", 1.2),
        ("tab:green", ":", 1.2),
        ("tab:orange", "-", 1.2),
    ]
    fig = None
    for (_, _, _, flat, _), (color, ls, lw) in zip(rows, styles):
        fig = corner.corner(
            flat,
            fig=fig,
            color=color,
            labels=list(qs.LABELS),
            truths=list(qs.TRUTH),
            truth_color="grey",
            plot_datapoints=False,
            plot_density=False,
            hist_kwargs={"density": True, "linestyle": ls, "linewidth": lw},
            contour_kwargs={"linestyles": ls, "linewidths": lw},
        )
    assert fig is not None  # (rows holds the serial run at least)
    fig.legend(
        handles=[
            matplotlib.lines.Line2D([], [], color=c, ls=ls, lw=lw, label=r[0])
            for r, (c, ls, lw) in zip(rows, styles)
        ],
        loc="upper right",
    )
    fig.savefig(path, dpi=100)
