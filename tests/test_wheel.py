"""The package as a user gets it: built, installed from the wheel, run.

``python -m build`` makes an sdist and, from it, a wheel (so the sdist must
hold everything the wheel needs). The wheel is installed, not editable, into
a new virtual environment that sees none of this checkout's packages
(no ``--system-site-packages``); pip takes the dependencies from the
package registry. Then ``emcee-ipp demo`` runs from a folder outside the
checkout, with no ``PYTHONPATH``: its engines are that environment's Python,
importing the installed copy.

This takes one to a few minutes (two build environments, one install), most
of it pip; the demo itself is kept short.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

import emcee_ipp

ROOT = Path(__file__).resolve().parents[1]
STEP_TIMEOUT_S = 400  # one pip or build call; the test's own bound is above their sum


def _run(cmd: list, cwd: Path, env: dict, timeout: float = STEP_TIMEOUT_S) -> str:
    done = subprocess.run(
        [str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"{cmd} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _clean_env() -> dict:
    """This process's environment less what would lead Python to the checkout."""
    drop = {"PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "PYTHONSTARTUP"}
    return {k: v for k, v in os.environ.items() if k not in drop}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict:
    """``{"sdist": path, "wheel": path}`` made by ``python -m build``."""
    out = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "build", "--outdir", out, ROOT], cwd=out, env=_clean_env())
    sdists, wheels = list(out.glob("*.tar.gz")), list(out.glob("*.whl"))
    assert len(sdists) == 1 and len(wheels) == 1, sorted(p.name for p in out.iterdir())
    return {"sdist": sdists[0], "wheel": wheels[0]}


def test_the_version_lives_in_one_place_and_names_both_files(built):
    # setup.cfg reads emcee_ipp.__version__; nothing else states it.
    version = emcee_ipp.__version__
    assert re.fullmatch(r"\d+\.\d+\.\d+", version)
    assert built["wheel"].name.startswith(f"emcee_ipp-{version}-")
    assert built["sdist"].name == f"emcee_ipp-{version}.tar.gz"
    stated = [p for p in ROOT.glob("*.cfg") if version in p.read_text()]
    stated += [p for p in ROOT.glob("*.toml") if version in p.read_text()]
    assert stated == [], f"the version is written in {stated} too"


def test_the_wheel_holds_the_package_and_its_type_marker(built):
    names = zipfile.ZipFile(built["wheel"]).namelist()
    assert "emcee_ipp/py.typed" in names
    assert "emcee_ipp/transport/direct.py" in names
    assert not any(n.startswith(("tests/", "benchmarks/", "docs/")) for n in names), names
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert (
        "emcee-ipp = emcee_ipp.__main__:main"
        in zipfile.ZipFile(built["wheel"]).read(entry).decode()
    )


@pytest.mark.timeout(1200)
def test_the_installed_wheel_runs_the_demo_from_outside_the_checkout(built, tmp_path):
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True, system_site_packages=False, clear=True)
    python = env_dir / "bin" / "python"
    env = _clean_env()
    _run(
        [python, "-m", "pip", "install", "--disable-pip-version-check", "-q", built["wheel"]],
        cwd=tmp_path,
        env=env,
    )

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = _run(
        [python, "-c", "import emcee_ipp; print(emcee_ipp.__file__); print(emcee_ipp.__version__)"],
        cwd=elsewhere,
        env=env,
    ).split()
    installed = Path(where[0]).resolve()
    assert env_dir.resolve() in installed.parents, f"imported {installed}, not the wheel's copy"
    assert ROOT not in installed.parents
    assert where[1] == emcee_ipp.__version__

    out = _run(
        [
            env_dir / "bin" / "emcee-ipp",
            "demo",
            "--engines",
            "2",
            "--steps",
            "200",
            "--walkers",
            "32",
        ],
        cwd=elsewhere,
        env=env,
        timeout=300,
    )
    assert re.search(r"^started 2 engines in [\d.]+ s$", out, flags=re.M), out
    # Both pooled runs give the serial chain, bit for bit; the split runs.
    assert re.search(r"^IPyParallelPool \(n=2\)\s+[\d.]+\s+[\d.]+\s+True\b", out, flags=re.M), out
    assert re.search(
        r"^\s+with client_computes=True\s+[\d.]+\s+[\d.]+\s+True\b", out, flags=re.M
    ), out
    assert re.search(r"^run_split \(2 x 100 steps\)\s+[\d.]+", out, flags=re.M), out
    assert not list(elsewhere.iterdir()), "the demo left files where it ran"
