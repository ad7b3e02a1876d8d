"""Finding engines: start a local ipyparallel cluster, or connect to one.

Runs on the client. ipyparallel stays the control plane: it starts engines
with any launcher (local, MPI, Slurm, PBS, SSH), registers them and watches
their heartbeats. This module only chooses fast settings for the clusters the
pool starts itself and turns ipyparallel's failures into clear errors.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time
import uuid
import warnings

from . import _keeper, _reaper, _zygote
from .exceptions import ClusterNotFoundError, NoEnginesError

log = logging.getLogger("emcee_ipp")

THREAD_ENV_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_FRAMEWORKS",
    "NUMEXPR_NUM_THREADS",
)

# Start-up settings for the clusters the pool starts itself, measured on 2
# cores (benchmarks/bench_startup.py): stock ipyparallel takes ~6.7 s to the
# first result, these ~1.2 s; with the zygote and _ippmain, ~0.6 s
# (benchmarks/RESULTS.md, "Issue 22: zygote"). What matters, in order:
# - the controller finishes an engine's registration only after a heartbeat,
#   and ipyparallel's period is 3 s: 100 ms costs ~2% of one core when idle;
# - Cluster.delay sleeps 1 s between controller and engines, and the engine
#   set sleeps 0.1 s between engines: both 0, and the engines start alongside
#   the controller (send_engines_connection_env=False), waiting for its file;
# - no nanny per engine (0.2 s and a process each). The pool interrupts its
#   own engines with os.kill instead of the nanny's send_signal;
# - schedulers as threads (--usethreads): 2 controller processes, not 9;
# - --nodb: the hub need not record every task, the pool never asks for old
#   results (a one-engine round trip fell from 3.7 ms to 2.7 ms).
# Per-message settings, measured as CPU per map with the ipp transport:
# - the controller's and engines' loggers at WARNING: traitlets leaves them at
#   DEBUG (only the handler filters), so every message built debug records
#   (hub 0.69 -> 0.54 ms, engine 0.50 -> 0.40 ms);
# - QuickFlushOutStream on the engines (see emcee_ipp/_outstream.py): the
#   engine's IOPub thread 0.24 -> 0.09 ms, and 3.4 -> 2.9 ms wall per map.
# A killed engine is noticed after HEARTBEAT_MISSES missed beats (2 s); the
# heart answers from a zmq thread without the GIL, so a busy engine still beats.
HEARTBEAT_MS = 100
HEARTBEAT_MISSES = 20
CONTROLLER_ARGS = [
    f"--HeartMonitor.period={HEARTBEAT_MS}",
    f"--HeartMonitor.max_heartmonitor_misses={HEARTBEAT_MISSES}",
    "--nodb",
    "--usethreads",
    '--IPController.logging_config={"loggers": {"IPController": {"level": "WARNING"}}}',
]
ENGINE_ARGS = [
    "--IPEngine.enable_nanny=False",
    "--IPEngine.wait_for_url_file=60",
    "--IPEngine.out_stream_factory=emcee_ipp._outstream.QuickFlushOutStream",
    '--IPEngine.logging_config={"loggers": {"IPEngine": {"level": "WARNING"}}}',
]


# ipyparallel's controller and engine less two fixed waits (see _ippmain).
IPPMAIN = [sys.executable, "-m", "emcee_ipp._ippmain"]
# EMCEE_IPP_ZYGOTE=0 starts every process of a pool's own cluster as
# ipyparallel does (a fresh Python each), not forked from a zygote.
ZYGOTE_VAR = "EMCEE_IPP_ZYGOTE"


class OwnedCluster:
    """A local cluster the pool started, with the watchdog that guards it.

    Runs on the client. Every process of the cluster carries the reaper's
    token in its environment, so :meth:`stop` (and the reaper, if this
    process dies first) ends exactly those processes.

    The controller and engines are forked from a zygote
    (:mod:`emcee_ipp._zygote`) where the platform allows it (Linux), unless
    ``EMCEE_IPP_ZYGOTE=0`` or ``blas_threads=None``. The zygote starts first, so that its imports
    overlap this process's import of ipyparallel (which this module defers
    until then).
    """

    def __init__(self, n: int, *, blas_threads: int | None, timeout: float):
        self.token = uuid.uuid4().hex
        self.client = None
        self.keeper = None
        self.zygote: _zygote.Zygote | None = None
        self._loop: _LoopThread | None = None
        self.started = False
        self.log = _ClusterLog(log, {})
        self.reaper = _reaper.Reaper(self.token)  # armed before anything starts
        try:
            self.cluster = self._create(n, blas_threads, timeout)
            self._loop = _LoopThread()  # ipyparallel's launchers report ends on it
            # start_and_connect's steps, but quiet: in IPython its wait for
            # engines draws a progress bar in the cell (interactive=None).
            self._loop.run(self.cluster.start_cluster())
            self.client = self._loop.run(self.cluster.connect_client())
            await_engines(self.client, n, timeout)
            self.keeper = _keeper.Keeper(self.cluster, timeout, self._loop.run)
            self.started = True
        except TimeoutError as exc:
            self.stop()
            raise NoEnginesError(
                f"the local cluster's {n} engines did not all register within "
                f"timeout={timeout} s. The machine may be overloaded; try a "
                "smaller n or a larger start_timeout."
            ) from exc
        except BaseException:
            self.stop()
            raise

    def _create(self, n: int, blas_threads: int | None, timeout: float):
        """The zygote, started first (its imports overlap ipyparallel's here),
        then the ``ipyparallel.Cluster``, not started."""
        # faulthandler: an engine killed by a signal (a segfault in a C
        # extension) leaves its stack in its output, which errors quote.
        env = {_reaper.MARKER: self.token, "PYTHONFAULTHANDLER": "1"}
        if blas_threads is not None:
            env.update({var: str(blas_threads) for var in THREAD_ENV_VARS})
        # (blas_threads=None: numpy, which ipyparallel imports, may start a
        # BLAS thread pool in the zygote, and a process with threads must
        # not fork.)
        if (
            blas_threads is not None
            and os.environ.get(ZYGOTE_VAR, "1") != "0"
            and _zygote.available()
        ):
            try:
                self.zygote = _zygote.Zygote(env)
            except OSError as exc:
                log.warning("emcee_ipp: no zygote (%s); starting each engine afresh", exc)
        import ipyparallel as ipp
        from traitlets.config import Config

        from . import _launchers

        config = Config()
        config.LocalControllerLauncher.controller_cmd = [*IPPMAIN, "controller"]
        config.LocalEngineSetLauncher.engine_cmd = [*IPPMAIN, "engine"]
        config.LocalControllerLauncher.environment = {_reaper.MARKER: self.token}
        config.LocalEngineSetLauncher.environment = env
        config.LocalEngineSetLauncher.engine_args = list(ENGINE_ARGS)
        config.LocalEngineSetLauncher.delay = 0
        if self.zygote is not None:
            _launchers.ZYGOTES[self.token] = self.zygote
            config.ForkControllerLauncher.zygote = self.token
            config.ForkEngineLauncher.zygote = self.token
        return ipp.Cluster(
            n=n,
            delay=0,
            send_engines_connection_env=False,
            controller_args=list(CONTROLLER_ARGS),
            engine_timeout=timeout,
            log=self.log,
            config=config,
            controller_launcher_class=_launchers.ForkControllerLauncher,
            engine_launcher_class=_launchers.ForkEngineSetLauncher,
        )

    def pids(self) -> list[int]:
        """Every live process of this cluster (controller, schedulers, engines, nannies)."""
        return _reaper.marked_pids(self.token)

    def stop(self) -> None:
        """Stop the cluster and make sure none of its processes is left. Idempotent."""
        # Stopping a cluster that started is not news (see _ClusterLog); after
        # a failed start, what the engines logged may tell why. For good: the
        # launchers log from ipyparallel's thread, maybe after we return.
        if self.keeper is not None:
            self.keeper.stop()  # before the engines stop: none is replaced
        if self.started:
            self.log.stopping = True
        if self.client is not None:
            self.client.close()
            self.client = None
        if self._loop is not None:
            try:
                self._loop.run(self.cluster.stop_cluster())
            except Exception as exc:  # still reap below
                log.warning("stopping the local cluster failed (%s); killing its processes", exc)
            self._loop.stop()
            self._loop = None
        if self.zygote is not None:
            self.zygote.close()
            from . import _launchers

            _launchers.ZYGOTES.pop(self.token, None)
        _reaper.reap(self.token)
        self.reaper.disarm()

    def stop_unclosed(self, description: str) -> None:
        """Finalizer of an unclosed pool: warn as Python does for files, then stop."""
        warnings.warn(
            f"{description} was never closed; stopping its local cluster now. "
            "Call pool.close() or use `with IPyParallelPool() as pool:`.",
            ResourceWarning,
            stacklevel=2,
        )
        self.stop()


class _LoopThread:
    """An asyncio loop in a thread of its own, for the cluster's coroutines.

    Runs on the client. ipyparallel's ``*_sync`` methods run each call in a
    new loop and close it, outside a notebook: a launcher's ``notify_stop``,
    scheduled on that loop when its process ends, would then never run.
    Every call of an owned cluster runs here instead, so ipyparallel (and the
    keeper) learn of every end, with its exit code, in a script as in a
    notebook.
    """

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._main, name="emcee_ipp cluster loop", daemon=True
        )
        self._thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coro, timeout: float | None = None):
        """Run ``coro`` on the loop; its result (from any thread but the loop's)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5.0)
        if not self._thread.is_alive():
            self.loop.close()


class _ClusterLog(logging.LoggerAdapter):
    """The log an owned cluster and its launchers write to: ``emcee_ipp``'s,
    WARNING and above, and silent once a cluster that started is stopped.

    Runs on the client, in ipyparallel's thread. An engine that dies while
    the pool runs is still reported, with its output. Stopping the cluster is
    not news, yet ipyparallel 9.2 reports it as a failure: its engines exit 1
    on the SIGTERM that stops them (``IPEngine.start`` lets tornado's "Event
    loop stopped before Future completed" escape), so each launcher warns
    "Output for N: ..." with the engine's whole log and the cluster warns
    "engine set stopped ...: exit_code 1". ipyparallel's default log, in an
    IPython kernel, writes that into the cell; in a script it was lost only
    because the loop that would have logged it is gone by then.
    """

    stopping = False

    def isEnabledFor(self, level: int) -> bool:
        return not self.stopping and level >= logging.WARNING and super().isEnabledFor(level)

    def getEffectiveLevel(self) -> int:
        # Launchers copy engine output to stderr live at DEBUG; never here.
        return max(logging.WARNING, super().getEffectiveLevel())


def connect(*, client=None, cluster=None, profile=None, cluster_id=None, timeout: float):
    """Connect to a running cluster; return its ``ipyparallel.Client``."""
    if client is not None:
        pass
    elif cluster is not None:
        if cluster.controller is None:  # not started: start it, but never own it
            client = cluster.start_and_connect_sync(activate=False)
        else:
            client = cluster.connect_client_sync()
    else:
        client = _client_from_profile(profile, cluster_id, timeout)
    wait_for_engines(client, 1, timeout, where=_describe(profile, cluster_id))
    resync_engines(client)  # engines registering as it connected (see await_engines)
    return client


def wait_for_engines(client, n: int, timeout: float, where: str = "the cluster") -> None:
    """Wait until ``n`` engines are registered, or raise :class:`NoEnginesError`."""
    try:
        await_engines(client, n, timeout)
    except TimeoutError as exc:
        raise NoEnginesError(
            f"{len(client.ids)} engines registered with {where} within "
            f"timeout={timeout} s, {n} needed. Start engines (for example "
            "`ipcluster engines -n 2` or `ipengine`), or pass a larger "
            "start_timeout."
        ) from exc


# How often a wait for engines asks the hub itself which engines it has.
RESYNC_S = 0.5


def await_engines(client, n: int, timeout: float) -> None:
    """Wait until ``client`` knows ``n`` engines; raise ``TimeoutError``.

    ``Client.wait_for_engines`` alone can wait forever for an engine the hub
    has registered (ipyparallel 9.2): the client learns the hub's engines
    from its connection reply and then from notifications on a SUB socket it
    connects only after that reply, so an engine that registers in between
    is announced before the client listens. 32 engines starting on 2 cores
    lost one in 1 of 5 loaded starts (tests/test_faults.py). Every
    :data:`RESYNC_S` without enough engines, this asks the hub again.
    """
    deadline = time.monotonic() + timeout
    while len(client.ids) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"{len(client.ids)} of {n} engines registered")
        try:
            client.wait_for_engines(n, timeout=min(left, RESYNC_S), interactive=False)
        except TimeoutError:
            resync_engines(client, max(0.0, deadline - time.monotonic()))


def resync_engines(client, timeout: float = 10.0) -> None:
    """Add to ``client`` the engines its hub has registered that it missed
    (see :func:`await_engines`). One round trip to the hub; a hub that does
    not answer within ``timeout`` changes nothing.

    ipyparallel has no public call for this: it is the hub's reply to the
    client's own ``connection_request``, applied as ``Client._connect`` does.
    """
    try:
        ask = client._send(client._query_stream, "connection_request")  # noqa: SLF001
        reply = ask.result(timeout)
    except TimeoutError:
        return
    engines = reply["content"].get("engines", {})
    done = threading.Event()

    def update() -> None:  # on the client's IO thread, as its notifications are
        try:
            client._update_engines(engines)  # noqa: SLF001
        finally:
            done.set()

    client._io_loop.add_callback(update)  # noqa: SLF001
    done.wait(timeout)


def _client_from_profile(profile, cluster_id, timeout):
    import ipyparallel as ipp

    kwargs = {}
    if profile is not None:
        kwargs["profile"] = profile
    if cluster_id is not None:
        kwargs["cluster_id"] = cluster_id
    try:
        # The client waits this long for the connection file to appear.
        return ipp.Client(timeout=min(timeout, 5.0), **kwargs)
    except (OSError, TimeoutError) as exc:
        reason = " ".join(str(exc).split()).rstrip(".")
        raise ClusterNotFoundError(
            f"no running ipyparallel cluster for {_describe(profile, cluster_id)}: "
            f"{reason}. Start one first, e.g. `ipcluster start -n 2"
            + (f" --profile={profile}" if profile else "")
            + (f" --cluster-id={cluster_id}" if cluster_id else "")
            + "`, or leave out the connection arguments to let the pool "
            "start a local cluster."
        ) from exc


def _describe(profile, cluster_id) -> str:
    return f"profile={profile or 'default'!r}, cluster_id={cluster_id or ''!r}"
