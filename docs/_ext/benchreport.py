"""Sphinx extension: the Performance page's tables and figures, made at build time.

Runs ``benchmarks/report.py`` on ``benchmarks/results/*.json`` when the build
starts and writes ``docs/_generated/<name>.md`` (tables, for ``{include}``) and
``docs/_generated/<name>.png`` (figures). Nothing there is kept in git, so a
figure cannot drift from the runs.
"""

from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1]
OUT = DOCS / "_generated"
sys.path.insert(0, str(DOCS.parent / "benchmarks"))

import report  # noqa: E402  (benchmarks/report.py)

TABLES = {
    "pools": report.pools_table_by_peer,
    "headline": report.headline_table,
    "overhead": report.overhead_table,
    "startup": report.startup_table,
    "split": report.split_table,
    "dynesty": report.dynesty_table,
    "channel": report.channel_table,
}
FIGURES = {
    "headline": report.plot_headline,
    "pools": report.plot_pools,
    "overhead": report.plot_overhead,
}


def _machine() -> str:
    meta = report.pools_meta()
    return (
        f"**The machine**: a VM with {meta['cpus']} cores, Python {meta['python']}, "
        f"{meta['engines']} engines (bench_pools.json written {meta['when']} UTC)."
    )


def generate(app=None) -> None:
    """Write every table and figure into ``docs/_generated``."""
    OUT.mkdir(exist_ok=True)
    for name, make in TABLES.items():
        _write(OUT / f"{name}.md", make() + "\n")
    _write(OUT / "machine.md", _machine() + "\n")
    for name, make in FIGURES.items():
        make(OUT / f"{name}.png")


def _write(path: Path, text: str) -> None:
    # Unchanged text keeps its mtime, so Sphinx does not rebuild every page.
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def setup(app):
    app.connect("builder-inited", generate)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
