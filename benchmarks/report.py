"""Tables and figures from ``benchmarks/results/*.json``, never copied by hand.

The README's headline table and plot, and every table and plot of the docs'
Performance page, are made here from the JSON the benchmarks write, so they
cannot drift from the runs::

    python benchmarks/report.py             # print the headline table, write headline.png
    python benchmarks/report.py --check README.md   # exit 1 if README's table differs

The docs build calls the same functions (``docs/_ext/benchreport.py``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
HEADLINE_PNG = RESULTS / "headline.png"

# bench_pools.py's workload names, as a reader knows them.
WORKLOADS = {
    "quickstart": "quickstart, 12 µs log-prob",
    "quickstart + 50 MB args": "quickstart + 50 MB of args",
    "cpu 1 ms": "1 ms log-prob, 32 walkers",
    "cpu 10 ms": "10 ms log-prob, 32 walkers",
    "uneven: 2 ms or -inf": "uneven: 2 ms or -inf, 32 walkers",
}
# The README's columns: the pools users reach for, and ours with its defaults.
HEADLINE_PEERS = [
    "multiprocessing.Pool",
    "schwimmbad.MultiPool",
    "DirectView, stock cluster",
    "IPyParallelPool (direct)",
]
OURS = "IPyParallelPool (direct)"


def load(name: str) -> dict:
    """The JSON a benchmark wrote, ``name`` without ``.json``."""
    return json.loads((RESULTS / f"{name}.json").read_text())


def _median_ratio(row: dict) -> float:
    """A peer's median ratio to serial over its rounds (each round against its own serial run)."""
    return statistics.median(row["ratios"]) if row.get("ratios") else row["ratio"]


def pool_ratios() -> dict[str, dict[str, float]]:
    """``{workload: {peer: median ratio to serial}}`` from bench_pools.json, serial left out."""
    table: dict[str, dict[str, float]] = {}
    for row in load("bench_pools")["results"]:
        if row["peer"] != "serial":
            table.setdefault(row["workload"], {})[row["peer"]] = _median_ratio(row)
    return table


def _fmt(ratio: float) -> str:
    return f"{ratio:.0f}" if ratio >= 100 else f"{ratio:.2f}"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub/MyST pipe table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def pools_table(peers: list[str] | None = None) -> str:
    """Median wall time over serial, per workload (rows) and peer (columns); best in bold."""
    ratios = pool_ratios()
    peers = peers or list(next(iter(ratios.values())))
    rows = []
    for workload, label in WORKLOADS.items():
        cells = ratios[workload]
        best = min(cells[p] for p in peers)
        rows.append(
            [label]
            + [f"**{_fmt(cells[p])}**" if cells[p] == best else _fmt(cells[p]) for p in peers]
        )
    return markdown_table(["workload"] + peers, rows)


SHORT = {
    "quickstart": "quickstart",
    "quickstart + 50 MB args": "+ 50 MB args",
    "cpu 1 ms": "1 ms",
    "cpu 10 ms": "10 ms",
    "uneven: 2 ms or -inf": "uneven",
}


def pools_table_by_peer() -> str:
    """The full bench_pools table, one row per peer (narrow enough for a page)."""
    ratios = pool_ratios()
    peers = list(next(iter(ratios.values())))
    best = {w: min(ratios[w].values()) for w in WORKLOADS}
    rows = [
        [peer]
        + [
            f"**{_fmt(ratios[w][peer])}**" if ratios[w][peer] == best[w] else _fmt(ratios[w][peer])
            for w in WORKLOADS
        ]
        for peer in peers
    ]
    return markdown_table(["pool"] + [SHORT[w] for w in WORKLOADS], rows)


def headline_table() -> str:
    """The README's table: the headline peers against ours."""
    return pools_table(HEADLINE_PEERS)


def pools_meta() -> dict:
    """When and where bench_pools.json was measured."""
    return load("bench_pools")["meta"]


def _pyplot():
    """matplotlib's pyplot, drawing to files only (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path, dpi: int) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def plot_headline(path: Path = HEADLINE_PNG) -> Path:
    """Bars of the headline table on a log scale, one group per workload."""
    plt = _pyplot()
    import numpy as np

    ratios = pool_ratios()
    shown = ["quickstart", "cpu 1 ms", "cpu 10 ms"]
    fig, ax = plt.subplots(figsize=(7.0, 3.4))
    height = 0.8 / len(HEADLINE_PEERS)
    for k, peer in enumerate(HEADLINE_PEERS):
        y = np.arange(len(shown)) + (k - (len(HEADLINE_PEERS) - 1) / 2) * height
        values = [ratios[w][peer] for w in shown]
        bars = ax.barh(
            y,
            values,
            height=height * 0.92,
            label=peer,
            color="C3" if peer == OURS else f"C{k}",
            edgecolor="black" if peer == OURS else "none",
        )
        ax.bar_label(bars, labels=[_fmt(v) for v in values], padding=2, fontsize=7)
    ax.axvline(1.0, color="0.4", lw=0.8, ls="--", zorder=0)
    ax.text(1.03, -0.5, "serial", fontsize=8, va="top", color="0.3")
    ax.set_xscale("log")
    ticks = [0.5, 1, 2, 5, 10, 20]
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.minorticks_off()
    ax.set_yticks(range(len(shown)), [WORKLOADS[w] for w in shown])
    ax.invert_yaxis()
    ax.set_xlabel("wall time / serial wall time (median of rounds; lower is faster)")
    ax.set_xlim(0.3, 30)
    ax.legend(fontsize=7, loc="lower right", frameon=False)
    meta = pools_meta()
    ax.set_title(
        f"emcee through each pool, {meta['engines']} workers on {meta['cpus']} cores", fontsize=9
    )
    return _save(fig, path, dpi=120)


def plot_pools(path: Path) -> Path:
    """Every peer's ratio against the log-prob's cost (bench_pools.json)."""
    plt = _pyplot()

    rows = [r for r in load("bench_pools")["results"] if r.get("on_plot", True)]
    fig, ax = plt.subplots(figsize=(6.5, 4.0))
    for k, peer in enumerate(dict.fromkeys(r["peer"] for r in rows)):
        pts = sorted((r["cost_s"], _median_ratio(r)) for r in rows if r["peer"] == peer)
        ax.plot(
            *zip(*pts),
            marker="o",
            label=peer,
            color="black" if peer == "serial" else f"C{k}",
            lw=2.2 if peer == OURS else 1.2,
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("log-prob cost per call (s)")
    ax.set_ylabel("wall time / serial")
    ax.legend(fontsize=7, frameon=False)
    return _save(fig, path, dpi=110)


def overhead_table() -> str:
    """bench_overhead.py's engine scaling: speedup, efficiency and per-map overhead."""
    data = load("bench_overhead")
    rows = [
        [
            str(s["engines"]),
            f"{s['speedup']:.2f} / {s['ideal_speedup']:g}",
            f"{100 * s['efficiency']:.1f}%",
            f"{s['overhead_ms']:.2f}",
        ]
        for s in data["scaling"]
    ]
    table = markdown_table(
        ["engines (2 cores)", "speedup / ideal", "of the ideal", "overhead per map (ms)"], rows
    )
    per_map = data["per_map_s"]
    return (
        table + "\n\nA map of 50 trivial items over 2 engines: "
        f"{1e3 * per_map['direct']:.3f} ms on the direct channel, "
        f"{1e3 * per_map['ipp']:.2f} ms through ipyparallel's messages."
    )


def plot_overhead(path: Path) -> Path:
    """Efficiency against engine count (bench_overhead.json)."""
    plt = _pyplot()

    scaling = load("bench_overhead")["scaling"]
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    engines = [s["engines"] for s in scaling]
    for s in scaling:
        ax.plot(
            [s["engines"]] * len(s["efficiencies"]),
            [100 * e for e in s["efficiencies"]],
            "o",
            color="C0",
            alpha=0.35,
            ms=4,
        )
    ax.plot(
        engines,
        [100 * s["efficiency"] for s in scaling],
        "-o",
        color="C0",
        label="median of rounds",
    )
    ax.set_xscale("log", base=2)
    ax.set_xticks(engines, [str(e) for e in engines])
    ax.set_xlabel("engines (sleeping 10 ms per log-prob, on 2 cores)")
    ax.set_ylabel("speedup / ideal (%)")
    ax.set_ylim(50, 102)
    ax.legend(fontsize=8, frameon=False)
    return _save(fig, path, dpi=110)


def startup_table() -> str:
    """bench_startup.py: seconds to the first result, each measure in fresh processes."""
    data = load("bench_startup")
    rows = []
    for name, median in data["median"].items():
        times = data["times"][name]
        rows.append([name, f"{median:.2f}", f"{min(times):.2f}–{max(times):.2f}"])
    rss = data["engine_rss_mb"]
    return (
        markdown_table(["measure (a fresh process each)", "median s", "range s"], rows)
        + f"\n\nEngine memory (RSS) afterwards: {min(rss):.0f}–{max(rss):.0f} MB."
    )


def split_table() -> str:
    """bench_split.py: run_split and the seed recipe against serial."""
    data = load("bench_split")
    serial = data["median"]["serial"]
    rows = [[name, f"{m:.2f}", f"{m / serial:.2f}"] for name, m in data["median"].items()]
    a = data["args"]
    return (
        markdown_table(["run", "median s", "/ serial"], rows)
        + f"\n\n{a['engines']} engines, {a['walkers']} walkers, {a['engines']} ensembles x "
        f"{a['steps']} steps against {a['engines'] * a['steps']} serial steps, "
        f"median of {a['repeat']}."
    )


def dynesty_table() -> str:
    """bench_dynesty.py: dynesty through the pool and through multiprocessing."""
    data = load("bench_dynesty")
    by = {(r["workload"], r["peer"]): r for r in data["results"]}
    rows = []
    for workload in dict.fromkeys(r["workload"] for r in data["results"]):
        ours, mp = by[(workload, "IPyParallelPool")], by[(workload, "multiprocessing.Pool")]
        rows.append(
            [
                workload,
                f"**{ours['ratio_to_mp']:.2f}**",
                f"{ours['ratio']:.2f}",
                f"{mp['ratio']:.2f}",
                "yes" if ours["identical"] else "no",
            ]
        )
    return markdown_table(
        [
            "likelihood",
            "pool / multiprocessing",
            "pool / serial",
            "multiprocessing / serial",
            "results identical",
        ],
        rows,
    )


def channel_table() -> str:
    """bench_channel.py: the direct channel's Unix socket against TCP loopback."""
    data = load("bench_channel")
    rt, first = data["round_trip_us"], data["first_big_map_s"]
    rows = [
        ["600-byte round trip, Unix socket", f"{rt['unix']:.1f} µs"],
        ["600-byte round trip, TCP loopback", f"{rt['tcp']:.1f} µs"],
    ]
    rows += [
        [f"first map of a new 50 MB function, {n} engine(s)", f"{s:.2f} s"]
        for n, s in first.items()
    ]
    return markdown_table(["measure", "median"], rows)


def readme_table_matches(readme: Path) -> bool:
    """Whether ``readme`` holds the headline table exactly as made from the JSON."""
    return headline_table() in readme.read_text()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check",
        type=Path,
        metavar="README",
        help="exit 1 if this file lacks the headline table as made now",
    )
    args = parser.parse_args(argv)
    if args.check:
        if readme_table_matches(args.check):
            return 0
        print(
            f"{args.check} lacks the headline table made from {RESULTS}; paste:\n"
            f"{headline_table()}",
            file=sys.stderr,
        )
        return 1
    print(headline_table())
    print(f"plot written to {plot_headline()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
