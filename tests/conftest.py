"""Shared fixtures: one pool-owned local cluster and one external cluster.

Every wait is bounded (pytest-timeout in setup.cfg); on a hang, faulthandler
dumps the stacks, and the finalizers stop what the fixtures started.
"""

from __future__ import annotations

import faulthandler
import os
import pathlib
import sys
import uuid

import pytest

HERE = pathlib.Path(__file__).parent

# No extra import path in the engines' environment: they reach the
# module-level test helpers as a user's engines reach the user's modules (the
# pool gives its own engines the client's sys.path, and ships what others
# cannot import).
faulthandler.enable(file=sys.stderr)

import helpers  # noqa: E402

from emcee_ipp import IPyParallelPool  # noqa: E402

N_ENGINES = 2
# Every contract test runs once per transport (schwimmbad runs one test class
# over each pool the same way). "ipp-client-sockets" is the ipp transport on
# the path a client tunnelled over SSH takes (the client's own sockets).
TRANSPORTS = ["direct", "ipp", "ipp-client-sockets"]


@pytest.fixture(scope="session")
def ipython_dir(tmp_path_factory):
    """A private IPYTHONDIR, so profile tests never touch the user's profiles."""
    path = tmp_path_factory.mktemp("ipython")
    old = os.environ.get("IPYTHONDIR")
    os.environ["IPYTHONDIR"] = str(path)
    yield path
    if old is None:
        os.environ.pop("IPYTHONDIR", None)
    else:
        os.environ["IPYTHONDIR"] = old


@pytest.fixture(scope="session")
def pools():
    """Session pools, one per transport, each owning a local cluster; made on demand.

    The "direct" pool is made with transport="auto", and must resolve to
    direct: on one machine the client always reaches its engines.
    """
    made = {}

    def get(transport):
        if transport not in made:
            asked = "auto" if transport == "direct" else transport
            made[transport] = IPyParallelPool(N_ENGINES, transport=asked)
            assert made[transport].transport == transport
        return made[transport]

    yield get
    for p in made.values():
        p.close()


@pytest.fixture(params=TRANSPORTS)
def pool(request, pools):
    """The shared pool of each transport in turn."""
    if request.param != "ipp-client-sockets":
        yield pools(request.param)
        return
    shared = pools("ipp")
    transport = shared._transport  # noqa: SLF001
    own, transport._mux = transport._mux, False  # noqa: SLF001 (False: the client's sockets)
    try:
        yield shared
    finally:
        transport._mux = own  # noqa: SLF001


@pytest.fixture(scope="session")
def split_pool(pools):
    """The pool run_split tests use (run_split does not depend on the transport)."""
    return pools("direct")


@pytest.fixture(scope="session")
def external_cluster(ipython_dir, tmp_path_factory):
    """A cluster the tests start themselves, in a private profile, as a user's
    cluster may be elsewhere: its engines run in another folder, with
    neither the client's sys.path nor its working directory (``python -P``:
    not even the folder they started in), so the user's modules (here the
    test helpers) reach them only by value."""
    import ipyparallel as ipp
    from traitlets.config import Config

    config = Config()
    config.LocalEngineSetLauncher.engine_cmd = [sys.executable, "-P", "-m", "ipyparallel.engine"]
    elsewhere = tmp_path_factory.mktemp("engines_elsewhere")
    config.LocalEngineSetLauncher.engine_args = [f"--work-dir={elsewhere}"]
    cluster = ipp.Cluster(
        n=1,
        profile="emcee_ipp_test",
        cluster_id="ext",
        controller_args=["--HeartMonitor.period=300"],
        log_level=30,
        config=config,
    )
    client = cluster.start_and_connect_sync(activate=False)
    client.close()
    yield cluster
    cluster.stop_cluster_sync()


@pytest.fixture
def add_external_engine(external_cluster):
    """Call it to start one more engine on the external cluster. After the
    test, every engine it started is removed: its engine set stopped, its
    process killed by pid if still there, and the fixture waits until the
    cluster no longer lists it, so later tests see the cluster as it was."""
    import signal
    import time

    client = external_cluster.connect_client_sync()
    before = set(client.ids)
    sets = []

    def add():
        sets.append(external_cluster.start_engines_sync(n=1))

    yield add
    try:
        if not sets:
            return
        # Wait for every engine started to register, so none escapes by pid.
        client.wait_for_engines(len(before) + len(sets), timeout=60, interactive=False)
        new = sorted(set(client.ids) - before)
        pids = client[new].apply_sync(os.getpid) if new else []
        for engine_set in sets:
            external_cluster.stop_engines_sync(engine_set)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (set(client.ids) & set(new) or _live(pids)):
            time.sleep(0.05)
        for pid in _live(pids):  # the fixture's own engine: ours to end
            os.kill(pid, signal.SIGKILL)
        while time.monotonic() < deadline and set(client.ids) & set(new):
            time.sleep(0.05)
        assert not set(client.ids) & set(new), f"engines {new} still listed by the cluster"
    finally:
        client.close()


def _live(pids):
    return [p for p in pids if helpers.alive(p)]


@pytest.fixture
def fresh_pool_on_external(external_cluster):
    """A pool connected to the external cluster through a client of its own."""
    client = external_cluster.connect_client_sync()
    p = IPyParallelPool(client=client)
    yield p
    p.close()
    client.close()


# -- the suite leaves no process behind ----------------------------------------

# Every process the suite starts (clusters, engines, owner scripts, reapers)
# inherits this variable, so the check below finds exactly the suite's own.
SESSION_VAR = "EMCEE_IPP_TEST_SESSION"
os.environ[SESSION_VAR] = uuid.uuid4().hex


def _our_live_pids() -> list[int]:
    from emcee_ipp._reaper import marked_pids

    return [p for p in marked_pids(os.environ[SESSION_VAR], SESSION_VAR) if helpers.alive(p)]


def pytest_sessionfinish(session, exitstatus):
    """Fail the run if a process started by the suite survives it."""
    import signal
    import time

    deadline = time.monotonic() + 10  # stop_cluster's own SIGTERM grace is shorter
    while (left := _our_live_pids()) and time.monotonic() < deadline:
        time.sleep(0.2)
    if left:
        for pid in left:  # carries this session's token: ours to end
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        sys.stderr.write(f"\nERROR: the test suite left processes behind: {sorted(left)}\n")
        session.exitstatus = 1
