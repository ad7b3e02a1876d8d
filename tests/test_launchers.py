"""Clusters from other launchers: engines started by mpiexec (OpenMPI).

Skips, saying why, where mpiexec or mpi4py is missing (the Makefile installs
both on CI: Debian's openmpi-bin and libopenmpi-dev, and mpi4py).
"""

from __future__ import annotations

import os
import shutil

import emcee
import helpers
import numpy as np
import pytest

from emcee_ipp import IPyParallelPool, run_split


@pytest.fixture(scope="module")
def mpi_cluster():
    if shutil.which("mpiexec") is None:
        pytest.skip("mpiexec is not installed (Debian: openmpi-bin)")
    pytest.importorskip("mpi4py", reason="mpi4py is not installed")
    import ipyparallel as ipp

    # OpenMPI refuses root unless told; CI runs as root.
    os.environ.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
    os.environ.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    cluster = ipp.Cluster(
        engines="mpi", n=2, log_level=30, controller_args=["--HeartMonitor.period=300"]
    )
    # 2 ranks on a machine that may report fewer slots.
    cluster.config.MPIEngineSetLauncher.mpi_args = ["--oversubscribe"]
    yield cluster
    cluster.stop_cluster_sync()


@pytest.mark.timeout(180)
def test_pool_on_mpi_engines(mpi_cluster):
    # An unstarted Cluster: the pool starts it, and leaves it running on close.
    with IPyParallelPool(cluster=mpi_cluster) as pool:
        assert pool.size == 2
        ranks = sorted(helpers.remotely(pool.client[:], helpers.mpi_rank_and_size))
        assert ranks == [(0, 2), (1, 2)]  # one MPI world of two ranks

        helpers.assert_chain_matches_serial(pool, helpers.gaussian, 30)
        p0 = np.random.RandomState(1).normal(size=(16, 3))
        r = run_split(pool, emcee.EnsembleSampler(16, 3, helpers.gaussian), p0, 20, seed=1)
        assert r.get_chain().shape == (20, 32, 3)
    client = mpi_cluster.connect_client_sync()
    try:
        assert len(client.ids) == 2  # still running after the pool closed
    finally:
        client.close()


def _slurm_answers() -> bool:
    import subprocess

    if shutil.which("sinfo") is None:
        return False
    try:
        out = subprocess.run(
            ["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and "idle" in out.stdout


@pytest.mark.timeout(180)
def test_pool_on_slurm_engines(ipython_dir):
    """Engines submitted as a Slurm job by ipyparallel's Slurm launcher."""
    if not _slurm_answers():
        pytest.skip("no Slurm answers `sinfo`; `sudo .ci/slurm.sh start` runs a single-node one")
    import ipyparallel as ipp

    cluster = ipp.Cluster(
        engines="slurm", n=2, log_level=30, controller_args=["--HeartMonitor.period=300"]
    )
    try:
        with IPyParallelPool(cluster=cluster, start_timeout=120) as pool:
            assert pool.size == 2
            jobs = set(helpers.remotely(pool.client[:], helpers.slurm_job_id))
            assert len(jobs) == 1 and None not in jobs  # both engines inside one Slurm job
            helpers.assert_chain_matches_serial(pool, helpers.gaussian, 30)
    finally:
        cluster.stop_cluster_sync()
