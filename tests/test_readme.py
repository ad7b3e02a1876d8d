"""The README's Python examples run, and its headline table is the one the JSON gives.

Each ```python block of README.md is written to a script in a temporary
folder and run there by a new interpreter, as a user runs a pasted example:
no tests folder on its path, no PYTHONPATH. The pool in the example starts
and stops its own local cluster (one engine per core: 2 here).
"""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SCRIPT_TIMEOUT_S = 120  # a pool's start and 500 cheap steps take ~3-5 s on 2 cores

BLOCKS = re.findall(r"^```python\n(.*?)^```", README.read_text(), flags=re.S | re.M)


def test_the_readme_has_python_examples():
    assert BLOCKS, "README.md has no ```python block; this test would check nothing"


def _run(block: str, folder: pathlib.Path) -> str:
    """Run ``block`` as a script in ``folder``; return what it printed."""
    script = folder / "readme_example.py"
    script.write_text(block)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=SCRIPT_TIMEOUT_S,
    )
    assert done.returncode == 0, f"README example failed:\n{block}\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs_as_a_script(index, tmp_path):
    out = _run(BLOCKS[index], tmp_path)
    if "run_mcmc" in BLOCKS[index]:
        # The line fit prints its posterior mean. Its data were drawn with
        # slope -0.9 and intercept 4.3; 50 points with errors 0.1-0.6 give
        # posterior sds of ~0.02 and ~0.1, so 0.3 is over 3 sd for each.
        slope, intercept = (float(v) for v in re.findall(r"-?\d+\.\d*", out.splitlines()[-1]))
        assert slope == pytest.approx(-0.9, abs=0.3)
        assert intercept == pytest.approx(4.3, abs=0.3)


def test_the_headline_table_is_made_from_the_benchmark_json():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import report
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    table = report.headline_table()
    assert table in README.read_text(), (
        "README.md's headline table differs from benchmarks/results/bench_pools.json; "
        f"run `python benchmarks/report.py` and paste:\n{table}"
    )
