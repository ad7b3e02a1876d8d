"""Engines on other "hosts": Linux network namespaces on a private test link.

The controller runs in the root namespace on a bridge (10.213.0.1); each
"host" is a namespace with its own address (10.213.0.1x) reaching it over a
veth pair. Engines run inside the namespaces. Needs root and iproute2 (the
Makefile installs it); skips, saying why, where namespaces cannot be made.
"""

from __future__ import annotations

import time

import emcee
import helpers
import netns
import numpy as np
import pytest

from emcee_ipp import IPyParallelPool, NoEnginesError, run_split

HOSTS = 2


@pytest.fixture(scope="module")
def hosts():
    reason = netns.unavailable()
    if reason:
        pytest.skip(reason)
    with netns.hosts(HOSTS) as made:
        yield made


@pytest.fixture(scope="module")
def netns_cluster(hosts, ipython_dir):
    """A controller on the bridge address, one engine inside each namespace."""
    with netns.cluster_across(hosts) as made:
        yield made


@pytest.mark.parametrize("transport", ["direct", "ipp"])
def test_pool_across_hosts(netns_cluster, hosts, transport):
    _, client, _ = netns_cluster
    with IPyParallelPool(client=client, transport=transport) as pool:
        assert pool.transport == transport
        if transport == "direct":
            routes = pool._transport.routes.values()  # noqa: SLF001
            # Each engine is reached over TCP (its Unix socket lives in its
            # host's network namespace), on its own host's address, never loopback.
            assert all(u.startswith("tcp://") for u in routes), routes
            assert {u.split("//")[1].rsplit(":", 1)[0] for u in routes} == {a for _, a, _ in hosts}
        x = np.random.default_rng(0).normal(size=(40, 3))
        got = pool.map(helpers.slower_gaussian_with_pid, x)
        assert [g[0] for g in got] == [helpers.gaussian(r) for r in x]
        assert len({g[1] for g in got}) == len(hosts)
        sampler = emcee.EnsembleSampler(16, 3, helpers.gaussian)
        r = run_split(pool, sampler, np.random.default_rng(1).normal(size=(16, 3)), 30, seed=3)
        assert r.get_chain().shape == (30, 16 * len(hosts), 3)
        assert {e.engine_id for e in r.ensembles} == set(client.ids)


@pytest.mark.timeout(180)
def test_engine_killed_on_a_host_chain_identical(hosts, ipython_dir):
    """SIGKILL the engine inside one namespace mid-run: the other host
    finishes the chain, identical to serial."""
    with netns.cluster_across(hosts, profile="emcee_ipp_netns_kill") as (_, client, engines):
        with IPyParallelPool(client=client) as pool:
            victim = engines[hosts[0][0]]

            def kill_after_step_6(sampler):
                if sampler.iteration == 6:
                    victim.kill()

            helpers.assert_chain_matches_serial(
                pool, helpers.sleepy_gaussian, 40, args=(2e-3,), on_step=kill_after_step_6
            )
            assert pool.size == len(hosts) - 1


@pytest.mark.timeout(180)
def test_cut_host_is_dropped_then_all_cut_is_a_clear_error(netns_cluster, hosts):
    """Take one host's link down mid-run: its engine misses heartbeats (2 s),
    the pool finishes on the other host with the serial chain; with every
    link down, the map fails with NoEnginesError instead of hanging."""
    _, client, _ = netns_cluster
    with IPyParallelPool(client=client) as pool:
        (ns0, _, dev0), (ns1, _, dev1) = hosts[:2]

        def cut_host_0_after_step_6(sampler):
            if sampler.iteration == 6:
                netns.ip("link", "set", dev0, "down", ns=ns0)

        helpers.assert_chain_matches_serial(
            pool, helpers.sleepy_gaussian, 40, args=(2e-3,), on_step=cut_host_0_after_step_6
        )
        assert pool.size == len(hosts) - 1
        netns.ip("link", "set", dev1, "down", ns=ns1)
        t0 = time.monotonic()
        with pytest.raises(NoEnginesError):
            pool.map(helpers.python_hang, np.zeros((4, 3)))
        assert time.monotonic() - t0 < 30
