"""Workloads and peer pools shared by the benchmarks.

Module level, so engines and multiprocessing workers import the log-probs by
reference (the benchmarks put this folder on the engines' PYTHONPATH).
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
os.environ["PYTHONPATH"] = os.pathsep.join([HERE] + sys.path)

from emcee_ipp import _cluster  # noqa: E402
from emcee_ipp import _quickstart as qs  # noqa: E402


def busy(theta, seconds):
    """A CPU-bound log-prob that spins for ``seconds``."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass
    return float(-0.5 * np.dot(theta, theta))


def sleepy(theta, seconds):
    """A log-prob that sleeps (waits on I/O) for ``seconds``."""
    time.sleep(seconds)
    return float(-0.5 * np.dot(theta, theta))


def boxed(theta, seconds):
    """A log-prob whose cost varies by walker: outside a prior box it returns
    -inf at once, inside it spins for ``seconds`` (CPU-bound)."""
    if np.any(np.abs(theta) > 1.0):
        return -np.inf
    return busy(theta, seconds)


def lnprob_big(theta, x, y, yerr, big):
    """The quickstart log-prob with a large unused array in its args."""
    return qs.lnprob(theta, x, y, yerr)


@dataclass
class Workload:
    name: str
    fn: object
    args: tuple
    nwalkers: int
    nsteps: int
    cost_s: float  # seconds per log-prob call (for plots)
    p0: np.ndarray = field(default=None)
    # Steps for the slow peers when a full run would take minutes; their
    # ratio is then per step, and their chain is compared with the serial
    # chain's first steps (same random state, so the same prefix).
    peer_steps: int | None = None
    # A workload run right before this one in every round, by each peer that
    # runs the full step count, so that the two runs' wall times compare
    # the same minute of this shared VM (its speed drifts by 10-20%).
    paired_with: str | None = None
    # Whether the plot of time against log-prob cost shows it (a cost that
    # varies by walker, or large args, has no place on that axis).
    on_plot: bool = True

    def start(self):
        if self.p0 is not None:
            return self.p0
        return np.random.RandomState(0).normal(size=(self.nwalkers, 3))


def workloads(scale: float = 1.0) -> dict[str, Workload]:
    data = qs.make_data()
    big = np.random.RandomState(1).rand(50 * 2**20 // 8)  # 50 MiB of float64
    steps = lambda n: max(2, int(n * scale))  # noqa: E731
    return {
        w.name: w
        for w in [
            Workload(
                "quickstart", qs.lnprob, data, 100, steps(1000), 12e-6, qs.start_positions(100)
            ),
            Workload(
                "quickstart + 50 MB args",
                lnprob_big,
                data + (big,),
                100,
                steps(1000),
                12e-6,
                qs.start_positions(100),
                peer_steps=steps(10),
                paired_with="quickstart",
                on_plot=False,
            ),
            Workload("cpu 1 ms", busy, (1e-3,), 32, steps(60), 1e-3),
            Workload("cpu 10 ms", busy, (1e-2,), 32, steps(8), 1e-2),
            # Walkers start inside the box; about a third of the stretch
            # moves' proposals land outside it and cost nothing, unevenly
            # spread over each map's walkers.
            Workload(
                "uneven: 2 ms or -inf",
                boxed,
                (2e-3,),
                32,
                steps(60),
                2e-3,
                np.random.RandomState(0).uniform(-1, 1, size=(32, 3)),
                on_plot=False,
            ),
        ]
    }


@contextmanager
def peer(name: str, n: int, ipp_pool=None):
    """Yield the ``pool=`` object for the peer ``name`` with ``n`` workers."""
    if name == "serial":
        yield None
    elif name == "multiprocessing.Pool":
        with multiprocessing.get_context("fork").Pool(n) as p:
            yield p
    elif name == "schwimmbad.MultiPool":
        import schwimmbad

        with schwimmbad.MultiPool(n) as p:
            yield p
    elif name == "DirectView, stock cluster":
        # What users run today (the seed's EDIT): ipyparallel's defaults.
        import ipyparallel as ipp

        cluster = ipp.Cluster(n=n, log_level=40)
        client = None
        try:
            client = cluster.start_and_connect_sync()
            # (ipyparallel's own wait can miss an engine registering as the client connects)
            _cluster.await_engines(client, n, timeout=120)
            view = client[:]
            view.block = True
            view.execute("import emcee, _workloads")  # as warm as the pool's engines
            yield view
        finally:
            # Close the client first: left open, its sockets reconnect to the
            # next stock cluster's controller if it reuses a port, and get
            # messages signed with that cluster's key ("Invalid Signature").
            if client is not None:
                client.close()
            cluster.stop_cluster_sync()
    elif name == "DirectView, pool's engines":
        # The same, on the engines IPyParallelPool started and tuned.
        view = ipp_pool.client[:]
        view.block = True
        yield view
    elif name == "IPyParallelPool (direct)":
        yield ipp_pool
    elif name == "IPyParallelPool (direct, client computes)":
        # The same pool, the client evaluating a share of each map itself
        # (the pool keeps a chunk policy per setting, learning on from one
        # run to the next).
        ipp_pool.client_computes = True
        try:
            yield ipp_pool
        finally:
            ipp_pool.client_computes = False
    elif name == "IPyParallelPool (ipp)":
        # The same engines, through ipyparallel's own messages.
        from emcee_ipp import IPyParallelPool

        with IPyParallelPool(client=ipp_pool.client, transport="ipp") as p:
            yield p
    else:
        raise ValueError(f"unknown peer {name!r}")


# The peers that always run a workload's full step count.
FULL_LENGTH = (
    "serial",
    "IPyParallelPool (direct)",
    "IPyParallelPool (ipp)",
    "IPyParallelPool (direct, client computes)",
)

PEERS = [
    "serial",
    "multiprocessing.Pool",
    "schwimmbad.MultiPool",
    "DirectView, stock cluster",
    "DirectView, pool's engines",
    "IPyParallelPool (ipp)",
    "IPyParallelPool (direct)",
    "IPyParallelPool (direct, client computes)",
]
