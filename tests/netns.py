"""Test "hosts" as Linux network namespaces, for tests and benchmarks.

A bridge in the root namespace carries the controller (SUBNET.1); each host
is a namespace with its own address (SUBNET.11, .12, ...) on a veth pair.
Needs root and iproute2. Everything made is removed on exit.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys

from emcee_ipp import _cluster

SUBNET = "10.213.0"
CONTROLLER_IP = f"{SUBNET}.1"
TAG = f"{os.getpid() % 100000:05d}"  # interface names: at most 15 characters


def ip(*args, ns=None, check=True):
    cmd = (["ip", "netns", "exec", ns] if ns else []) + ["ip", *args]
    return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=30)


def unavailable() -> str | None:
    """Why namespaces cannot be made here, or None."""
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed"
    if os.geteuid() != 0:
        return "network namespaces need root"
    probe = f"eipp{TAG}p"
    if ip("netns", "add", probe, check=False).returncode != 0:
        return "this kernel or sandbox refuses `ip netns add`"
    ip("netns", "del", probe, check=False)
    return None


@contextlib.contextmanager
def hosts(n: int):
    """Yield ``[(namespace, address, device), ...]`` for ``n`` hosts."""
    bridge = f"eb{TAG}"
    made = []
    try:
        ip("link", "add", bridge, "type", "bridge")
        ip("addr", "add", f"{CONTROLLER_IP}/24", "dev", bridge)
        ip("link", "set", bridge, "up")
        for i in range(n):
            ns, outer, inner = f"eipp{TAG}h{i}", f"ev{TAG}r{i}", f"ev{TAG}n{i}"
            ip("netns", "add", ns)
            made.append((ns, outer))
            ip("link", "add", outer, "type", "veth", "peer", "name", inner)
            ip("link", "set", outer, "master", bridge)
            ip("link", "set", outer, "up")
            ip("link", "set", inner, "netns", ns)
            ip("addr", "add", f"{SUBNET}.{11 + i}/24", "dev", inner, ns=ns)
            ip("link", "set", inner, "up", ns=ns)
            ip("link", "set", "lo", "up", ns=ns)
        yield [(ns, f"{SUBNET}.{11 + i}", f"ev{TAG}n{i}") for i, (ns, _) in enumerate(made)]
    finally:
        for ns, outer in made:
            ip("netns", "del", ns, check=False)
            ip("link", "del", outer, check=False)
        ip("link", "del", bridge, check=False)


@contextlib.contextmanager
def cluster_across(host_list, profile="emcee_ipp_netns"):
    """A controller on the bridge, one engine per host; yields (cluster, client, engines)."""
    import ipyparallel as ipp

    cluster = ipp.Cluster(
        n=0,
        profile=profile,
        cluster_id=f"ns{TAG}",
        controller_ip=CONTROLLER_IP,
        controller_args=["--HeartMonitor.period=100", "--HeartMonitor.max_heartmonitor_misses=20"],
        log_level=30,
    )
    cluster.start_controller_sync()
    url_file = os.path.join(
        cluster.profile_dir, "security", f"ipcontroller-{cluster.cluster_id}-engine.json"
    )
    engines = {}
    client = None
    try:
        for ns, _, _ in host_list:
            engines[ns] = subprocess.Popen(
                [
                    "ip",
                    "netns",
                    "exec",
                    ns,
                    sys.executable,
                    "-m",
                    "ipyparallel.engine",
                    f"--file={url_file}",
                    "--IPEngine.enable_nanny=False",
                    "--log-level=40",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        client = cluster.connect_client_sync()
        # (ipyparallel's own wait can miss an engine registering as the client connects)
        _cluster.await_engines(client, len(host_list), timeout=60)
        yield cluster, client, engines
    finally:
        if client is not None:
            client.close()
        for proc in engines.values():  # started just above: ours to end
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)
        cluster.stop_cluster_sync()
