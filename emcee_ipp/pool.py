"""IPyParallelPool: the object emcee takes as ``pool=``.

Runs on the client. A map call travels::

    pool.map(func, positions)                       client
      -> _cache.FunctionCache.get(func)             pickle func once, token it
      -> _chunking.ChunkPolicy                      how many engines are worth a message
      -> _wire.chunk_bounds                         one contiguous chunk per engine
      -> transport.submit(engine, _engine.evaluate, token, payload|None, chunk)
           ... engine: _engine.evaluate             unpickle once, cache, evaluate
      <- transport.wait                             replies in engine order
      <- _wire.unpack_results                       the list built-in map gives
"""

from __future__ import annotations

import functools
import logging
import numbers
import os
import re
import signal
import sys
import time
import uuid
import weakref
from collections import deque
from collections.abc import Collection, Generator, Iterable, Iterator
from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable, Literal, overload

import numpy as np

from . import _capture, _cluster, _engine
from ._cache import MAX_OBJECTS, FunctionCache
from ._chunking import ChunkPolicy
from ._host import usable_cores
from ._logprob import Applied, Starred
from ._shipping import Shipper, check_mode
from ._wire import as_items, chunk_bounds, unpack_results
from .exceptions import (
    EmceeIppError,
    EngineCrashError,
    EngineSetupError,
    MapTimeoutError,
    PoolClosedError,
    RemoteLogProbError,
    RemoteTraceback,
)
from .transport import TRANSPORTS, DirectTransport, DirectUnavailable
from .transport.base import FAILED, Transport

if TYPE_CHECKING:
    import ipyparallel

log = logging.getLogger("emcee_ipp")
# An engine's reply tuples (_engine.evaluate); one element longer when it
# carries what the log-prob printed.
_REPLY_LENGTH = {"ok": 4, "error": 5, "badinput": 5, "miss": 1, "crash": 4}

__all__ = ["IPyParallelPool"]


class IPyParallelPool:
    """A pool of ipyparallel engines for ``emcee.EnsembleSampler(pool=...)``.

    The log-prob function and its args are pickled once and cached on every
    engine; each later ``map`` sends only walker positions, one float64 array
    per engine.

    Parameters
    ----------
    n : int, optional
        Number of engines of the local cluster the pool starts when no
        connection argument is given. Default: the number of CPU cores.
    client : ipyparallel.Client, optional
        Use the engines of this client's cluster. Left running on close.
    cluster : ipyparallel.Cluster, optional
        Use this cluster, starting it if it is not started. Left running on close.
    profile, cluster_id : str, optional
        Connect to the running cluster of this IPython profile / cluster id.
        Left running on close.
    initializer : callable, optional
        ``initializer(*initargs)`` runs once on every engine, including
        engines that register after the pool was created.
    initargs : tuple
        Arguments for ``initializer``.
    timeout : float, optional
        Seconds a single ``map`` may take before :class:`MapTimeoutError`.
    transport : {"auto", "direct", "ipp"}
        How map chunks travel. ``"direct"``: a signed connection straight
        to each engine (fastest). ``"ipp"``: ipyparallel's own messages, which
        work wherever ipyparallel does. ``"auto"`` (default): direct when the
        client can reach the engines, else ipp, logging why.
    blas_threads : int or None
        BLAS/OpenMP threads per engine of a pool-started cluster (default 1,
        so ``n`` engines do not oversubscribe the cores). None leaves the
        environment alone.
    start_timeout : float
        Seconds to wait for engines to register (default 60).
    client_computes : bool
        Whether this process evaluates a share of each map itself, in the
        place of one engine (beside the only one), while the engines
        evaluate the rest (default False). The client otherwise waits idle
        during a map; on a machine whose cores the engines fill, a cheap
        log-prob then runs faster than serial (README, "Cheap log-probs").
        The log-prob then also runs here: ``initializer`` runs here too, and
        ``timeout`` cannot stop a chunk running here. Leave it off for a
        client on a login node or with little memory to spare.
    ship_modules : "auto", False, or list of str or module
        Which of the user's own modules (loaded from files outside the
        standard library and site-packages, such as a model beside the
        script) travel by value, inside the pickles, rather than being
        imported by the engines. ``"auto"`` (default): those the engines
        cannot import, found by asking them once per module (each is
        logged); engines on other hosts then need no copy of the user's
        code. False: none; every module must be importable on the engines.
        A list: exactly these. Functions and classes of ``__main__`` (a
        script, a notebook) always travel by value. A module from
        site-packages never does: an engine without it raises
        :class:`EngineSetupError` naming it.

    Notes
    -----
    Engines of a cluster the pool starts itself get the client's
    ``sys.path`` (in its order) and working directory, as
    ``multiprocessing``'s spawn start method gives its children, and any
    later change to either before the next map.

    Examples
    --------
    >>> with IPyParallelPool(2) as pool:                     # doctest: +SKIP
    ...     sampler = emcee.EnsembleSampler(32, 3, log_prob, pool=pool)
    ...     sampler.run_mcmc(p0, 1000)
    """

    def __init__(
        self,
        n: int | None = None,
        *,
        client: ipyparallel.Client | None = None,
        cluster: ipyparallel.Cluster | None = None,
        profile: str | None = None,
        cluster_id: str | None = None,
        initializer: Callable[..., Any] | None = None,
        initargs: tuple = (),
        timeout: float | None = None,
        transport: str = "auto",
        blas_threads: int | None = 1,
        start_timeout: float = 60.0,
        client_computes: bool = False,
        ship_modules: Literal["auto", False] | Collection[str | ModuleType] = "auto",
    ) -> None:
        self._closed = True  # until fully started, so __del__/close are safe
        self._owned: _cluster.OwnedCluster | None = None  # the local cluster this pool started
        self._owns_client = False
        self._cluster: Any = None  # an ipyparallel.Cluster (untyped), if known
        self._client: Any = None  # an ipyparallel.Client (untyped); None once closed
        _check_args(n, client, cluster, profile, cluster_id, initializer)
        start_timeout = _seconds("start_timeout", start_timeout, none_ok=False)
        if transport not in TRANSPORTS:
            raise ValueError(f"transport={transport!r}: choose one of {', '.join(TRANSPORTS)}.")
        self.timeout = timeout
        self._shipper = Shipper(check_mode(ship_modules), self._missing_on_engines)
        self._cache = FunctionCache(dumps=self._shipper.dumps)
        # Functions and classes inside map items (dynesty's, in every item).
        self._objects = FunctionCache(MAX_OBJECTS, dumps=self._shipper.dumps)
        self._stream: _Stream | None = None  # an unfinished imap
        self._paths_sent: tuple | None = None  # (sys.path, cwd) the owned engines were last given
        self._policy = ChunkPolicy()
        # The other setting of client_computes learns its chunk count apart
        # (a count means other work for the engines there); swapped on toggling.
        self._other_policy = ChunkPolicy()
        # the last map's (items, chunks, start, compute s, slack s)
        self._unrecorded: tuple | None = None
        self._next_engine = 0  # round-robin start, for transports that rotate engines
        self._ready: set[int] = set()  # engines that passed _prepare
        self.engine_pids: dict[int, int] = {}
        self._gone_pids: dict[int, int | None] = {}  # engines dropped, and their pids
        self._init_key = uuid.uuid4().hex
        # pickled by the first _prepare (it may ask engines)
        self._init_payload: bytes | None = None
        self._initializer = None if initializer is None else (initializer, tuple(initargs))
        self._client_initializer = self._initializer  # for client_computes, run once
        self._client_computes = False

        if client is None and cluster is None and profile is None and cluster_id is None:
            n = usable_cores() if n is None else n
            self._owned = _cluster.OwnedCluster(n, blas_threads=blas_threads, timeout=start_timeout)
            self._cluster, self._client = self._owned.cluster, self._owned.client
            # Stops the cluster if the pool is garbage-collected or the
            # interpreter exits without close(); the reaper covers a killed process.
            self._finalizer = weakref.finalize(
                self, self._owned.stop_unclosed, f"IPyParallelPool(n={n})"
            )
        else:
            self._client = _cluster.connect(
                client=client,
                cluster=cluster,
                profile=profile,
                cluster_id=cluster_id,
                timeout=start_timeout,
            )
            self._cluster = cluster
            self._owns_client = client is None
            if n is not None:
                _cluster.wait_for_engines(self._client, n, start_timeout)
        self._roster = _Roster(self)  # what maps ask about the engines
        from .transport.ipp import IppTransport  # (ipyparallel, imported by now)

        self._control = IppTransport(self._client)  # set-up calls always go this way
        self._transport: Transport = self._control
        self._closed = False
        try:
            if transport != "ipp":
                self._open_direct(transport == "direct", start_timeout)
            self._engines()
            self.client_computes = client_computes  # after the engines' initializer
        except BaseException:
            self.close()
            raise

    def _open_direct(self, required: bool, timeout: float) -> None:
        direct = None
        try:
            direct = DirectTransport(self._client, self._control)
            direct.add_engines(list(self._client.ids), timeout)
            self._transport = direct
        except DirectUnavailable as exc:
            if direct is not None:
                direct.close()
            if required:
                raise
            log.warning("emcee_ipp: transport='auto' uses ipyparallel messages: %s", exc)

    # -- the map contract --------------------------------------------------

    def map(
        self,
        func: Callable[[Any], Any],
        iterable: Iterable,
        chunksize: int | None = None,
        callback: Callable[[list], Any] | None = None,
    ) -> list:
        """Return ``list(map(func, iterable))``, evaluated on the engines.

        Parameters
        ----------
        func : callable
            The log-prob (emcee passes its ``_FunctionWrapper``). Pickled once
            (cloudpickle: functions from ``__main__`` or a notebook too) and
            cached on each engine while it stays in the pool's cache.
        iterable : ndarray of shape (n, ndim), or iterable
            Walker positions; a float64 array travels as raw buffers, anything
            else (emcee's dicts for ``parameter_names``, dynesty's tuples) is
            cloudpickled, with the functions and classes in it sent once per
            engine.
        chunksize : int, optional
            Items per message. None (default): the pool chooses, one
            contiguous chunk per engine worth using (``_chunking``); the
            right choice for emcee. A number: chunks of that many items, each
            handed to the next engine that is free, as
            ``multiprocessing.Pool`` does (uneven costs balance out).
        callback : callable, optional
            Called with the list of results before it is returned
            (schwimmbad's ``map``).

        Returns
        -------
        list
            Results in input order, as the built-in ``map`` gives them.
        """
        self._check_open()
        self._drain_stream()
        t0 = time.perf_counter()
        self._record_last_map(t0)  # before choosing this map's chunks
        items = as_items(iterable)
        results: list = []
        if len(items):
            run = self._start(func, items, chunksize)
            try:
                replies = self._transport.run_map(*run.args)
            except (KeyboardInterrupt, MapTimeoutError):
                self._interrupt_abandoned()  # stop the work; its late replies are never read
                raise
            for done in replies:  # what each engine's chunk printed, in chunk order
                if done is not None:
                    _write_output(done[1])
            for done, (a, _) in zip(replies, run.bounds):
                if done is not None and done[1][0] in FAILED:  # other chunks may be unfinished
                    self._stop_given_up()
                    raise _failure(done[0], done[1], items, a)
            for _, reply in replies:
                results.extend(unpack_results(reply[1], reply[2]))
            if chunksize is None:
                self._note_cycle(run, replies, t0)
        if callback is not None:
            callback(results)
        return results

    def starmap(
        self, func: Callable[..., Any], iterable: Iterable, chunksize: int | None = None
    ) -> list:
        """``[func(*args) for args in iterable]``, evaluated on the engines
        (``multiprocessing.Pool.starmap``)."""
        return self.map(Starred(func), iterable, chunksize)

    def apply(self, func: Callable[..., Any], args: tuple = (), kwds: dict | None = None) -> Any:
        """``func(*args, **kwds)`` on one engine (``multiprocessing.Pool.apply``)."""
        return self.map(Applied(func), [(tuple(args), dict(kwds or {}))])[0]

    def imap(self, func: Callable[[Any], Any], iterable: Iterable, chunksize: int = 1) -> Iterator:
        """Like :meth:`map`, but an iterator: results in input order, each
        chunk's as soon as it and those before it are done
        (``multiprocessing.Pool.imap``). The work starts at the first
        ``next()``; the iterable is read whole then. A map called while the
        iterator is unfinished first collects its remaining results."""
        self._check_open()
        return self._iterate(func, iterable, chunksize, ordered=True)

    def imap_unordered(
        self, func: Callable[[Any], Any], iterable: Iterable, chunksize: int = 1
    ) -> Iterator:
        """Like :meth:`imap`, but each chunk's results as soon as that chunk
        is done, in any order (``multiprocessing.Pool.imap_unordered``)."""
        self._check_open()
        return self._iterate(func, iterable, chunksize, ordered=False)

    def _iterate(self, func, iterable, chunksize, ordered: bool) -> Iterator:
        self._drain_stream()
        items = as_items(iterable)
        if not len(items):
            return
        self._record_last_map(time.perf_counter())
        run = self._start(func, items, chunksize)
        stream = self._stream = _Stream(self, self._transport.iter_map(*run.args))
        try:
            nxt = 0  # the next chunk to release, when ordered
            while nxt < len(run.bounds):
                if ordered:
                    while nxt not in stream.done and stream.step():
                        pass
                    i = nxt if nxt in stream.done else stream.failed()  # a later chunk failed
                else:
                    while not stream.order and stream.step():
                        pass
                    i = stream.order.popleft()
                done = stream.done.pop(i)
                nxt += 1
                _write_output(done[1])
                if done[1][0] in FAILED:
                    raise _failure(done[0], done[1], items, run.bounds[i][0])
                yield from unpack_results(done[1][1], done[1][2])
        finally:
            if self._stream is stream:
                self._stream = None
            stream.close()

    def _drain_stream(self) -> None:
        """Collect the replies of an unfinished imap, so a new map has the
        transport to itself (the iterator still yields them later)."""
        if self._stream is not None:
            self._stream.drain()

    def _start(self, func, items, chunksize) -> _Run:
        """Choose a map's chunks and engines; send new paths first (owned cluster)."""
        if chunksize is not None and (
            isinstance(chunksize, bool)
            or not isinstance(chunksize, numbers.Integral)
            or chunksize < 1
        ):
            raise ValueError(f"chunksize={chunksize!r}: give a positive number of items, or None.")
        self._sync_paths()
        entry = self._cache.get(func)
        engines = self._engines()
        owing = self._transport.owing()
        if owing:  # busy with a chunk given up earlier: leave them be while others can work
            engines = [e for e in engines if e not in owing] or engines
        # With client_computes the client works in the place of an engine
        # (so n engines keep n processes computing), or beside the only one.
        workers = max(len(engines), 2) if self._client_computes else len(engines)
        if chunksize is None:
            bounds = chunk_bounds(len(items), self._policy.n_chunks(len(items), workers))
        else:
            bounds = chunk_bounds(len(items), -(-len(items) // int(chunksize)))
        # With client_computes the client takes the last chunk.
        local = functools.partial(_engine.run_chunk, func) if self._client_computes else None
        n_remote = len(bounds) - (local is not None)
        start = self._next_engine % len(engines) if self._transport.rotate_engines else 0
        targets = (engines[start:] + engines[:start])[:n_remote]
        self._next_engine = start + n_remote
        encode = None if isinstance(items, np.ndarray) else self._pack
        args = (entry, items, bounds, targets, self.timeout, self._roster, local, encode)
        return _Run(args, bounds, workers)

    def _pack(self, chunk) -> tuple:
        return self._shipper.pack_items(chunk, self._objects)

    def _note_cycle(self, run, replies, t0) -> None:
        """Keep what the chunk policy learns from this map (``_record_last_map``)."""
        busy: dict = {}  # engine id -> seconds it computed this map
        longest = 0.0  # the longest chunk's compute time
        for eid, reply in replies:
            busy[eid] = busy.get(eid, 0.0) + reply[3]
            longest = max(longest, reply[3])
        slack = max(busy.values()) - sum(busy.values()) / run.workers
        self._unrecorded = (len(run.args[1]), len(run.bounds), t0, longest, slack)

    def _stop_given_up(self) -> None:
        """After a failed chunk, stop the chunks the map gave up where only
        they can be stopped (the direct channel); ipyparallel's SIGINT could
        land in the next map's chunk."""
        self._transport.interrupt(list(self._transport.abandoned), given_up_only=True)

    @property
    def timeout(self) -> float | None:
        """Seconds a single ``map`` may take before :class:`MapTimeoutError`, or None."""
        return self._timeout

    @timeout.setter
    def timeout(self, value: float | None) -> None:
        self._timeout = _seconds("timeout", value)

    @property
    def client_computes(self) -> bool:
        """Whether this process evaluates a share of each map (see the
        class docstring). Turning it on runs the pool's initializer here,
        once. Each setting keeps its own chunk policy."""
        return self._client_computes

    @client_computes.setter
    def client_computes(self, value: bool) -> None:
        if not isinstance(value, (bool, np.bool_)):
            raise TypeError(f"client_computes={value!r}: give True or False.")
        value = bool(value)
        if value and self._client_initializer is not None:
            initializer, initargs = self._client_initializer
            initializer(*initargs)
            self._client_initializer = None  # once
        if value != self._client_computes:
            self._policy, self._other_policy = self._other_policy, self._policy
            self._unrecorded = None  # the last map's cycle belongs to the other setting
        self._client_computes = value

    def _record_last_map(self, now: float) -> None:
        """Tell the chunk policy how long the last map's cycle took: from its
        start to this one's, so the caller's work in between counts too.

        The map's own wall time would mislead: on 2 cores, 2 chunks of the
        quickstart finish a map sooner than 1 (0.57 against 0.61 ms), but
        both engines then poll while emcee computes its next half-step, which
        slows emcee; the run took 2.70 s against 2.25 s.
        """
        if self._unrecorded is not None:
            n_items, n_chunks, start, compute, slack = self._unrecorded
            self._policy.record(n_items, n_chunks, now - start, compute, slack)
            self._unrecorded = None

    def _live_engines(self) -> list[int]:
        """Registered engines, not known dead, prepared (initializer run):
        those a map may use. Engines that joined meanwhile (replacements)
        are prepared first."""
        ids = self._registered()
        if self._ready.issuperset(ids):  # as a rule: no engine joined since the last map
            return ids
        self._prepare_new(ids)
        return [e for e in ids if e in self._ready]

    def _end_unregistered(self, engine_id: int) -> None:
        """An engine of the pool's own cluster that ipyparallel dropped (it
        missed its heartbeats: stopped, or stuck without the GIL) but whose
        process lives is killed, so the keeper starts one in its place."""
        pid = self.engine_pids.pop(engine_id, None)
        self._gone_pids[engine_id] = pid  # (its death, for an error naming it later)
        if self._owned is not None and pid in self._owned.pids():
            log.warning(
                "emcee_ipp: local engine %s (pid %s) stopped answering; replacing it",
                engine_id,
                pid,
            )
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:  # it ended meanwhile
                pass

    def _prepare_new(self, ids: list[int]) -> None:
        """Prepare the engines of ``ids`` the pool has not seen; skip those
        that died meanwhile (the set-up error of a live one is raised)."""
        new = [e for e in ids if e not in self._ready]
        if not new:
            return
        if len(new) > 1:
            try:  # all at once: their set-up calls run side by side
                self._prepare(new)
                return
            except EngineSetupError as exc:
                if not _engine_died(exc.__cause__) and set(new) <= set(self._registered()):
                    raise
            # One died: again one by one, to skip it. (The initializer runs
            # once per engine process: _engine.setup keeps its key.)
            new = [e for e in new if e not in self._ready]
        for eid in new:  # one by one: one that died meanwhile is skipped
            try:
                self._prepare([eid])
            except EngineSetupError as exc:
                if not _engine_died(exc.__cause__) and eid in self._registered():
                    raise
                log.info("emcee_ipp: engine %s died before it could take work", eid)

    def _registered(self) -> list[int]:
        """Registered engines, less those of the pool's own cluster known to
        be dead (ipyparallel notices only after the heartbeat misses, ~2 s)."""
        ids = self._client.ids
        keeper = self._owned.keeper if self._owned is not None else None
        if keeper is not None and keeper.deaths:
            ids = [e for e in ids if self._pid(e) not in keeper.deaths]
        return list(ids)

    def _pid(self, engine_id: int) -> int | None:
        """The process id of an engine of the pool, or of one it dropped."""
        return self.engine_pids.get(engine_id, self._gone_pids.get(engine_id))

    def _engines_coming(self) -> bool:
        """Whether the pool's own cluster is starting engines in the place of dead ones."""
        keeper = self._owned.keeper if self._owned is not None else None
        return keeper is not None and not keeper.gave_up and keeper.coming()

    def _death(self, engine_id: int) -> tuple[int | None, str]:
        """A dead engine's exit code and last output lines, where the pool
        started it (its keeper saw it end); else ``(None, "")``."""
        keeper = self._owned.keeper if self._owned is not None else None
        pid = self._pid(engine_id)
        if keeper is None or pid is None:
            return None, ""
        end = time.monotonic() + 2.0  # the keeper looks every 0.1 s
        while keeper.dead(pid) is None and time.monotonic() < end:
            time.sleep(0.02)
        death = keeper.dead(pid)
        return (None, "") if death is None else (death.exitcode, death.output)

    # -- engines -------------------------------------------------------------

    @property
    def size(self) -> int:
        """The number of engines currently registered."""
        self._check_open()
        return len(self._registered())

    @property
    def transport(self) -> str:
        """The transport map traffic uses: ``"direct"`` or ``"ipp"``."""
        return self._transport.name

    @property
    def client(self) -> ipyparallel.Client | None:
        """The ``ipyparallel.Client`` the pool talks through (None once closed)."""
        return self._client

    @property
    def owns_cluster(self) -> bool:
        """True if the pool started its cluster (and stops it on close)."""
        return self._owned is not None

    @property
    def cluster(self) -> ipyparallel.Cluster | None:
        """The ``ipyparallel.Cluster`` the pool started or was given, if any."""
        return self._cluster

    def _engines(self) -> list[int]:
        """The engines a map may use (:meth:`_live_engines`), after forgetting
        those gone; waits for one when none is left."""
        ids = self._live_engines()
        for gone in self._ready.difference(ids):
            self._end_unregistered(gone)
            self._ready.discard(gone)
            self._cache.forget_engine(gone)
            self._objects.forget_engine(gone)
            self._transport.remove_engine(gone)
        if not ids:
            if self._engines_coming():  # the pool's own cluster replaces them
                end = time.monotonic() + self._setup_timeout()
                while not self._registered() and time.monotonic() < end:
                    time.sleep(0.05)
            else:
                _cluster.wait_for_engines(self._client, 1, 30.0)
            return self._engines()
        return ids

    def _prepare(self, engine_ids: list[int]) -> None:
        """Import emcee_ipp on each engine and, on engines this pool started,
        give them the client's paths and set batch scheduling; then run the
        initializer there once (``_engine.setup``)."""
        owned = self._owned is not None
        if owned and self._paths_sent is None:
            self._paths_sent = self._paths()
        paths = self._paths_sent  # the others' (_sync_paths keeps them current)
        pids = self._on_engines(
            engine_ids, "the set-up call", _engine.setup, None, None, owned, paths
        )
        self.engine_pids.update(zip(engine_ids, pids))
        if self._initializer is not None:
            if self._init_payload is None:  # after the paths: it may ask the engines
                self._init_payload = self._shipper.dumps(self._initializer, "the initializer")
            self._on_engines(
                engine_ids, "the initializer", _engine.setup, self._init_key, self._init_payload
            )
        for eid in engine_ids:
            self._transport.add_engines([eid], self._setup_timeout())
            self._ready.add(eid)

    def _on_engines(self, engine_ids: list[int], what: str, fn, *args) -> list:
        """``fn(*args)`` on each engine through ipyparallel; its results, or
        EngineSetupError naming the engine."""
        calls = []
        for eid in engine_ids:  # all sent first: they run at once
            try:
                calls.append(self._control.call(eid, fn, *args))
            except IndexError as exc:  # unregistered meanwhile ("No such engine")
                calls.append(exc)
        results = []
        for eid, call in zip(engine_ids, calls):
            try:
                if isinstance(call, Exception):
                    raise call
                results.append(call.get(timeout=self._setup_timeout()))
            except Exception as exc:
                raise EngineSetupError(
                    f"{what} failed on engine {eid}: {exc}. If the error is an "
                    "ImportError, install emcee_ipp (and your log-prob's "
                    "modules) in the engines' Python environment."
                ) from exc
        return results

    @staticmethod
    def _paths() -> tuple:
        return list(sys.path), os.getcwd()

    def _sync_paths(self) -> None:
        """Give the pool's own engines the client's sys.path and working
        directory again, if either changed (a notebook's sys.path.append)."""
        if self._owned is None or self._paths_sent is None:
            return
        path, cwd = self._paths_sent
        if sys.path != path or os.getcwd() != cwd:  # (compared without a copy: every map)
            paths = self._paths()
            self._on_engines(sorted(self._ready), "updating sys.path", _engine.set_paths, *paths)
            self._paths_sent = paths

    def _missing_on_engines(self, names: list[str]) -> set[str]:
        """Those of the modules ``names`` that some engine cannot import (for
        ``ship_modules="auto"``); asked once per module by the Shipper."""
        targets = sorted(self._ready) or list(self._client.ids)
        missing: set[str] = set()
        for found in self._on_engines(targets, "checking modules", _engine.missing_modules, names):
            missing.update(found)
        return missing

    def _setup_timeout(self) -> float:
        return 60.0 if self.timeout is None else max(self.timeout, 60.0)

    def interrupt(self, engine_ids: list[int] | None = None) -> None:
        """Interrupt the map work running on engines (default: all).

        On the direct channel the log-prob runs in each engine's server
        thread, and the engine's main thread raises KeyboardInterrupt there.
        Through ipyparallel it runs in the main thread, which gets SIGINT.
        """
        self._check_open()
        targets = list(self._client.ids) if engine_ids is None else list(engine_ids)
        if not self._transport.interrupt(targets):
            self._signal_main_threads(targets)

    def _interrupt_abandoned(self) -> None:
        """Interrupt the chunks the last map gave up, and nothing else: an
        engine that finished its chunk may already run the next map's."""
        targets = list(self._transport.abandoned)
        if targets and not self._transport.interrupt(targets, given_up_only=True):
            self._signal_main_threads(targets)

    def _signal_main_threads(self, targets: list[int]) -> None:
        """SIGINT to engines' main threads (ipyparallel tasks, map over ipp).

        Engines of the pool's own cluster get it straight from ``os.kill``;
        engines of other clusters through ipyparallel, which needs the
        engines' nanny (on by default in ipyparallel clusters).
        """
        if self._owned is not None:
            for eid in targets:
                try:
                    os.kill(self.engine_pids[eid], signal.SIGINT)
                except (KeyError, OSError):  # already gone
                    pass
        elif targets:
            try:
                self._client.send_signal(signal.SIGINT, targets=targets, block=False)
            except Exception as exc:  # the interrupt itself must not mask the caller's
                log.warning("could not interrupt engines %s: %s", targets, exc)

    def clear_cache(self) -> None:
        """Forget every cached function, on the client and on every engine."""
        self._check_open()
        self._drain_stream()
        self._cache.clear()
        self._objects.clear()
        for ar in [self._control.call(e, _engine.clear_cache) for e in self._client.ids]:
            ar.get(timeout=self._setup_timeout())

    # -- life cycle ------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise PoolClosedError("pool is closed: create a new IPyParallelPool to run more work.")

    def close(self) -> None:
        """Stop the pool; stop its cluster if the pool started it. Idempotent;
        a close() cut short (Ctrl-C while the cluster stops) is finished by
        the next one, or at exit."""
        stop_pending = self._owned is not None and self._finalizer.alive
        if self._closed and self._client is None and not stop_pending:
            return
        self._closed = True
        for transport in {getattr(self, "_transport", None), getattr(self, "_control", None)}:
            if transport is not None:
                transport.close()
        client, self._client = self._client, None
        if stop_pending:
            assert self._owned is not None  # (stop_pending says so)
            self._owned.stop()
            self._finalizer.detach()  # only once stopped
        elif client is not None and self._owns_client:
            client.close()

    def terminate(self) -> None:
        """Stop at once; same as :meth:`close`."""
        self.close()

    def join(self) -> None:
        """Return at once: every map call has finished when it returns."""

    def __enter__(self) -> IPyParallelPool:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # schwimmbad's pool interface, so MPI-style scripts run unchanged.
    def is_master(self) -> bool:
        return True

    def is_worker(self) -> bool:
        return False

    def wait(self) -> None:
        """Do nothing: there are no worker loops to wait for."""

    def __repr__(self) -> str:
        if self._closed:
            return "<IPyParallelPool closed>"
        return (
            f"<IPyParallelPool size={len(self._registered())} transport={self.transport!r} "
            f"owns_cluster={self._owned is not None}>"
        )


def _check_args(n, client, cluster, profile, cluster_id, initializer) -> None:
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n <= 0):
        raise ValueError(
            f"n={n!r}: the number of engines must be a positive integer, or "
            "None for one engine per CPU core."
        )
    given = [k for k, v in [("client", client), ("cluster", cluster)] if v is not None]
    if profile is not None or cluster_id is not None:
        given.append("profile/cluster_id")
    if len(given) > 1:
        raise ValueError(f"got {' and '.join(given)}: pass only one way to reach a cluster.")
    if initializer is not None and not callable(initializer):
        raise TypeError(f"initializer={initializer!r} is not callable.")


@overload
def _seconds(name: str, value, none_ok: Literal[False]) -> float: ...
@overload
def _seconds(name: str, value, none_ok: bool = True) -> float | None: ...


def _seconds(name: str, value, none_ok: bool = True) -> float | None:
    """``value`` as seconds (a positive real number), or None where allowed."""
    if value is None and none_ok:
        return None
    real = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not (real and value > 0):  # (not `value <= 0`: NaN is refused too)
        raise ValueError(
            f"{name}={value!r}: give a positive number of seconds{', or None' if none_ok else ''}."
        )
    return float(value)


class _Roster:
    """The pool's answers to a map's questions about its engines
    (``transport.base.Roster``)."""

    __slots__ = ("live", "coming", "death")

    def __init__(self, pool: IPyParallelPool):
        self.live = pool._live_engines  # noqa: SLF001
        self.coming = pool._engines_coming  # noqa: SLF001
        self.death = pool._death  # noqa: SLF001


class _Run:
    """One map's plan: ``iter_map``'s arguments, its chunks, and how many
    workers share them."""

    __slots__ = ("args", "bounds", "workers")

    def __init__(self, args: tuple, bounds: list, workers: int):
        self.args, self.bounds, self.workers = args, bounds, workers


class _Stream:
    """An imap's replies, read from the transport as its consumer asks (client)."""

    def __init__(self, pool: IPyParallelPool, replies: Generator):
        self._pool = pool
        self._replies = replies  # Transport.iter_map
        self.done: dict = {}  # chunk index -> (engine id, reply), not yet released
        self.order: deque = deque()  # chunk indices in the order they finished
        self.finished = False

    def step(self) -> bool:
        """Read one more finished chunk; False once none is left."""
        if self.finished:
            return False
        try:
            i, eid, reply = next(self._replies)
        except StopIteration:
            self.finished = True
            return False
        except (KeyboardInterrupt, MapTimeoutError):
            self._pool._interrupt_abandoned()  # noqa: SLF001
            raise
        self.done[i] = (eid, reply)
        self.order.append(i)
        if reply[0] in FAILED:  # the rest is given up: stop it now, not when released
            self._replies.close()
            self.finished = True
            self._pool._stop_given_up()  # noqa: SLF001
        return True

    def failed(self) -> int:
        """The chunk whose failure ended the run early."""
        return next(i for i, (_, reply) in self.done.items() if reply[0] in FAILED)

    def drain(self) -> None:
        while self.step():
            pass

    def close(self) -> None:
        """Give up what is still running (the consumer stopped early)."""
        if not self.finished:
            self.finished = True
            self._replies.close()
            if self._pool._transport.abandoned:  # noqa: SLF001
                self._pool._interrupt_abandoned()  # noqa: SLF001


def _write_output(reply: tuple) -> None:
    """Write what a chunk's log-prob printed on its engine, here."""
    if len(reply) > _REPLY_LENGTH[reply[0]]:
        _capture.write_out(reply[-1])


def _failure(eid, reply: tuple, items, first: int) -> EmceeIppError:
    """The error a failed chunk's reply stands for, with the remote traceback
    as its cause. ``first``: the index of the chunk's first item."""
    if reply[0] == "crash":  # ("crash", index, exit code, output): no traceback
        return EngineCrashError(eid, items[first + reply[1]], reply[2], reply[3])
    status, index, type_name, message, tb = reply[:5]
    cause = RemoteTraceback(type_name, message, tb)
    error: EmceeIppError
    if status == "badinput":
        error = EngineSetupError(
            f"engine {eid} could not load map item {first + index}: {type_name}: {message}. "
            "The log-prob never ran on it. " + _install_hint(type_name, message)
        )
    elif index == _engine.LOAD_FAILED:
        error = EngineSetupError(
            f"engine {eid} could not load the log-prob: {type_name}: {message}. "
            + _install_hint(type_name, message)
        )
    else:
        error = RemoteLogProbError(eid, items[first + index], type_name, message)
    error.__cause__ = cause
    return error


def _engine_died(exc) -> bool:
    """Whether ipyparallel's error says the engine died under the call."""
    if isinstance(exc, IndexError) and "No such engine" in str(exc):
        return True  # unregistered before the call was made
    return getattr(exc, "ename", type(exc).__name__) == "EngineError"


def _install_hint(type_name: str, message: str) -> str:
    module = re.match(r"No module named '([^']+)'", message or "")
    if type_name == "ModuleNotFoundError" and module:
        return (
            f"Install {module.group(1).split('.')[0]!r} where the engines run (it is "
            "not the user code ship_modules sends), or set the engines up with "
            "initializer=; the remote traceback is attached as __cause__."
        )
    return (
        "Install the modules it uses where the engines run (or pass initializer= "
        "to set them up); the remote traceback is attached as __cause__."
    )
