"""Engines on other "hosts": Linux network namespaces on a private test link.

The controller runs in the root namespace on a bridge (10.213.0.1); each
"host" is a namespace with its own address (10.213.0.1x) reaching it over a
veth pair. Engines run inside the namespaces. Needs root and iproute2 (the
Makefile installs it); skips, saying why, where namespaces cannot be made.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import emcee
import numpy as np
import pytest

import helpers
from emcee_ipp import IPyParallelPool, NoEnginesError, run_split

SUBNET = "10.213.0"
HOSTS = 2
TAG = f"{os.getpid() % 100000:05d}"  # interface names: at most 15 characters


def _ip(*args, ns=None, check=True):
    cmd = (["ip", "netns", "exec", ns] if ns else []) + ["ip", *args]
    return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=30)


def _can_make_namespaces() -> str | None:
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed"
    if os.geteuid() != 0:
        return "network namespaces need root"
    probe = f"eipp{TAG}p"
    if _ip("netns", "add", probe, check=False).returncode != 0:
        return "this kernel or sandbox refuses `ip netns add`"
    _ip("netns", "del", probe, check=False)
    return None


@pytest.fixture(scope="module")
def hosts():
    """Namespace names and addresses; everything is removed afterwards."""
    reason = _can_make_namespaces()
    if reason:
        pytest.skip(reason)
    bridge = f"eb{TAG}"
    made = []
    try:
        _ip("link", "add", bridge, "type", "bridge")
        _ip("addr", "add", f"{SUBNET}.1/24", "dev", bridge)
        _ip("link", "set", bridge, "up")
        for i in range(HOSTS):
            ns, outer, inner = f"eipp{TAG}h{i}", f"ev{TAG}r{i}", f"ev{TAG}n{i}"
            _ip("netns", "add", ns)
            made.append((ns, outer))
            _ip("link", "add", outer, "type", "veth", "peer", "name", inner)
            _ip("link", "set", outer, "master", bridge)
            _ip("link", "set", outer, "up")
            _ip("link", "set", inner, "netns", ns)
            _ip("addr", "add", f"{SUBNET}.{11 + i}/24", "dev", inner, ns=ns)
            _ip("link", "set", inner, "up", ns=ns)
            _ip("link", "set", "lo", "up", ns=ns)
        yield [(ns, f"{SUBNET}.{11 + i}", f"ev{TAG}n{i}") for i, (ns, _) in enumerate(made)]
    finally:
        for ns, outer in made:
            _ip("netns", "del", ns, check=False)
            _ip("link", "del", outer, check=False)
        _ip("link", "del", bridge, check=False)


@pytest.fixture(scope="module")
def netns_cluster(hosts, ipython_dir):
    """A controller on the bridge address, one engine inside each namespace."""
    import ipyparallel as ipp

    cluster = ipp.Cluster(
        n=0, profile="emcee_ipp_netns", cluster_id=f"ns{TAG}",
        controller_ip=f"{SUBNET}.1",
        controller_args=["--HeartMonitor.period=100", "--HeartMonitor.max_heartmonitor_misses=20"],
        log_level=30,
    )
    cluster.start_controller_sync()
    url_file = os.path.join(
        cluster.profile_dir, "security", f"ipcontroller-{cluster.cluster_id}-engine.json"
    )
    engines = {}
    try:
        for ns, addr, _ in hosts:
            engines[ns] = subprocess.Popen(
                ["ip", "netns", "exec", ns, sys.executable, "-m", "ipyparallel.engine",
                 f"--file={url_file}", "--IPEngine.enable_nanny=False", "--log-level=40"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
        client = cluster.connect_client_sync()
        client.wait_for_engines(len(hosts), timeout=60, interactive=False)
        yield cluster, client, engines
        client.close()
    finally:
        for proc in engines.values():  # ours: started just above
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)
        cluster.stop_cluster_sync()


@pytest.mark.parametrize("transport", ["direct", "ipp"])
def test_pool_across_hosts(netns_cluster, hosts, transport):
    _, client, _ = netns_cluster
    with IPyParallelPool(client=client, transport=transport) as pool:
        assert pool.transport == transport
        if transport == "direct":
            urls = pool._transport._urls.values()  # noqa: SLF001
            # Each engine serves on its own host's address, never loopback.
            assert {u.split("//")[1].rsplit(":", 1)[0] for u in urls} == {a for _, a, _ in hosts}
        x = np.random.default_rng(0).normal(size=(40, 3))
        got = pool.map(helpers.slower_gaussian_with_pid, x)
        assert [g[0] for g in got] == [helpers.gaussian(r) for r in x]
        assert len({g[1] for g in got}) == len(hosts)
        sampler = emcee.EnsembleSampler(16, 3, helpers.gaussian)
        r = run_split(pool, sampler, np.random.default_rng(1).normal(size=(16, 3)), 30, seed=3)
        assert r.get_chain().shape == (30, 16 * len(hosts), 3)
        assert {e.engine_id for e in r.ensembles} == set(client.ids)


@pytest.mark.timeout(180)
def test_cut_host_is_dropped_then_all_cut_is_a_clear_error(netns_cluster, hosts):
    """Take one host's link down mid-run: its engine misses heartbeats (2 s),
    the pool finishes on the other host with the serial chain; with every
    link down, the map fails with NoEnginesError instead of hanging."""
    _, client, _ = netns_cluster
    with IPyParallelPool(client=client) as pool:
        p0 = np.random.RandomState(3).normal(size=(16, 3))

        def run(target, on_step=None):
            sampler = emcee.EnsembleSampler(16, 3, helpers.sleepy_gaussian, args=(2e-3,), pool=target)
            sampler.random_state = np.random.RandomState(5).get_state()
            for k, _ in enumerate(sampler.sample(p0, iterations=40)):
                if on_step:
                    on_step(k)
            return sampler.get_chain()

        (ns0, _, dev0), (ns1, _, dev1) = hosts[:2]
        pooled = run(pool, lambda k: k == 5 and _ip("link", "set", dev0, "down", ns=ns0))
        assert np.array_equal(pooled, run(None))
        assert pool.size == len(hosts) - 1
        _ip("link", "set", dev1, "down", ns=ns1)
        t0 = time.monotonic()
        with pytest.raises(NoEnginesError):
            pool.map(helpers.python_hang, np.zeros((4, 3)))
        assert time.monotonic() - t0 < 30
