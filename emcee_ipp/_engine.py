"""Code that runs on the engines (and :func:`run_chunk`, for the pool's
``client_computes``, on the client too).

The client sends these functions by reference (``emcee_ipp._engine.<name>``),
so each message carries only a token, the walker positions and, the first
time an engine sees a function, its cloudpickled bytes::

    client                                   engine (this module)
    ------                                   --------------------
    evaluate(token, payload|None, chunk, ->  _OBJECTS[t] = loads(b) for (t, b) in objects
             max_entries, objects)           _CACHE[token] or cloudpickle.loads(payload)
                                             chunk: float64 rows, or load_items(Packed)
                                             results = [fn(x) for x in chunk]
         <- ("ok", kind, data, seconds)      pack_results(results), compute time
            (+ (stdout, stderr) if it printed: _capture)
         <- ("miss",)                        token unknown and no payload sent (or an
                                             item names an object this engine lacks)
         <- ("error", index, type, msg, tb)  fn raised on item ``index``
                                             (LOAD_FAILED: the bytes could not be
                                             loaded, e.g. a module missing here)
         <- ("badinput", index, type, msg, tb)  item ``index`` could not be loaded

The cache is module state, so it lives as long as the engine process.
"""

from __future__ import annotations

import importlib
import importlib.util
import io
import os
import pickle
import sys
import time
import traceback
from collections import OrderedDict
from contextlib import nullcontext

import cloudpickle

from . import _capture
from ._cache import MAX_ENTRIES, MAX_OBJECTS
from ._wire import OBJECTS, PICKLED, Packed, pack_results, pickle_results

# Functions deserialized on this engine, by the token the client gave them.
# Bounded like the client's cache (MAX_ENTRIES), least recently used first.
_CACHE: OrderedDict[str, object] = OrderedDict()
# Functions and classes found in map items (``_shipping``), by token; more
# than one pool's worth (MAX_OBJECTS), least recently used first.
_OBJECTS: OrderedDict[str, object] = OrderedDict()
MAX_ENGINE_OBJECTS = 4 * MAX_OBJECTS
_INITIALIZED: set = set()  # keys of pool initializers already run here
LOAD_FAILED = -1  # the "item index" of an error raised loading the function
_NOTHING = nullcontext()  # evaluate()'s ``running`` when the transport passes none


def evaluate(
    token: str,
    payload: bytes | memoryview | None,
    chunk,
    max_entries: int = MAX_ENTRIES,
    objects=(),
    *,
    running=None,
):
    """Evaluate the cached function ``token`` on every item of ``chunk``.

    ``running``, a context manager, is entered once the function, objects
    and items are loaded, around the run only: the transport's interrupts
    land inside it, never in an import the loading does.
    """
    for key, data in objects:  # what the chunk's items name, new to this engine
        try:
            _OBJECTS[key] = cloudpickle.loads(data)
        except Exception as exc:
            return (
                "badinput",
                0,
                type(exc).__name__,
                f"a function or class in the items could not be loaded: {exc}",
                traceback.format_exc(),
            )
    while len(_OBJECTS) > MAX_ENGINE_OBJECTS:
        _OBJECTS.popitem(last=False)
    fn = _CACHE.get(token)
    if fn is None:
        if payload is None:
            return ("miss",)
        try:
            fn = cloudpickle.loads(payload)
        except Exception as exc:  # not the log-prob's fault: the client says so
            return ("error", LOAD_FAILED, type(exc).__name__, str(exc), traceback.format_exc())
        _CACHE[token] = fn
        while len(_CACHE) > max_entries:
            _CACHE.popitem(last=False)
    else:
        _CACHE.move_to_end(token)
    if type(chunk) is Packed:
        chunk = load_items(chunk)
        if type(chunk) is tuple:  # ("miss",) or ("badinput", ...)
            return chunk
    caught = _capture.start()
    try:
        with running or _NOTHING:
            reply = run_chunk(fn, chunk)
    finally:
        output = _capture.stop(caught)
    if reply[0] == "ok" and reply[1] == OBJECTS:
        try:
            reply = ("ok", PICKLED, pickle_results(reply[2]), reply[3])
        except Exception as exc:  # e.g. a blob holding a lock: the client must hear of it
            reply = (
                "error",
                0,
                type(exc).__name__,
                f"the results could not be sent back: {exc}",
                traceback.format_exc(),
            )
    return reply if output is None else (*reply, output)


def run_chunk(fn, chunk) -> tuple:
    """``fn`` on every item of ``chunk``: ``("ok", kind, data, seconds)``, or
    ``("error", index, type, message, traceback)`` for the first item that raised.

    Runs on the engines (:func:`evaluate`), and on the client for its own
    chunk when the pool has ``client_computes=True``.
    """
    start = time.perf_counter()
    results: list = []
    append = results.append
    try:  # one try for the chunk: a cheap log-prob's loop is this module's hot spot
        for x in chunk:
            append(fn(x))
    except Exception as exc:  # reported to the client, which re-raises
        return ("error", len(results), type(exc).__name__, str(exc), traceback.format_exc())
    return ("ok", *pack_results(results), time.perf_counter() - start)


class _Missing(Exception):
    """An item names an object this engine no longer holds."""


class _ItemUnpickler(pickle.Unpickler):
    def persistent_load(self, pid):
        obj = _OBJECTS.get(pid)
        if obj is None:
            raise _Missing(pid)
        _OBJECTS.move_to_end(pid)
        return obj


def load_items(packed: Packed):
    """The items of a :class:`~emcee_ipp._wire.Packed` chunk, as a list;
    ``("miss",)`` if they name an object this engine lacks, or
    ``("badinput", index, type, message, traceback)`` for the first item that
    cannot be loaded here (a module the engine lacks, say)."""
    if packed.whole:  # plain data: nothing here can fail to load it
        return pickle.loads(packed.data)
    unpickler = _ItemUnpickler(io.BytesIO(packed.data))
    items = []
    for index in range(packed.count):
        try:
            items.append(unpickler.load())
        except _Missing:
            return ("miss",)
        except Exception as exc:
            return ("badinput", index, type(exc).__name__, str(exc), traceback.format_exc())
    return items


def clear_cache() -> int:
    """Drop every cached function and object; return how many functions there were."""
    n = len(_CACHE)
    _CACHE.clear()
    _OBJECTS.clear()
    return n


def missing_modules(names: list[str]) -> list[str]:
    """Those of ``names`` that this engine cannot import (found without
    importing them, but for their parent packages)."""
    missing = []
    for name in names:
        if name in sys.modules:
            continue
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # a parent package is missing
            found = False
        if not found:
            missing.append(name)
    return missing


def set_paths(path: list[str], cwd: str) -> None:
    """Give this engine the client's ``sys.path`` (in its order, before the
    engine's own entries) and working directory, as multiprocessing's spawn
    start method prepares its children. Only on engines the pool started
    on its own machine."""
    sys.path[:] = list(path) + [p for p in sys.path if p not in path]
    try:
        os.chdir(cwd)
    except OSError:  # removed meanwhile: the engine keeps its own
        pass
    importlib.invalidate_caches()  # files written since the engine looked


def cached_tokens() -> list[str]:
    """Tokens cached on this engine, oldest first (for tests and debugging)."""
    return list(_CACHE)


def setup(
    init_key: str | None = None,
    init_payload: bytes | None = None,
    batch: bool = False,
    paths: tuple | None = None,
) -> int:
    """The pool's first call on each engine; return this engine's process id.

    With ``paths``, ``(sys.path, cwd)`` of the client, first sets them here
    (:func:`set_paths`). Runs the pool's initializer once per engine process
    (``init_payload``, cloudpickled ``(initializer, initargs)``, under
    ``init_key``), and with ``batch`` marks the engine as batch work for the
    scheduler (:func:`_batch_scheduling`). The call also proves emcee_ipp
    imports here.
    """
    if paths is not None:
        set_paths(*paths)
    if init_payload is not None and init_key not in _INITIALIZED:
        initializer, initargs = cloudpickle.loads(init_payload)
        initializer(*initargs)
        _INITIALIZED.add(init_key)
    if batch:
        _batch_scheduling()
    return os.getpid()


def _batch_scheduling() -> None:
    """Put every thread of this process under Linux's SCHED_BATCH policy
    (threads started later inherit it): same CPU share, but a woken engine no
    longer preempts the thread running on its core. That thread is often the
    client, still sending a map's chunks to the other engines, or another
    engine about to sleep. Only for engines on the client's machine that the
    pool started (``IPyParallelPool`` asks; a user's cluster keeps its
    policy). Interleaved A/B on 2 cores, medians of 5-10 rounds
    (2026-11-28): quickstart (direct) 0.863 -> 0.847 and 0.863 -> 0.844 ms
    per map; 8 engines sleeping 10 ms 23.31 -> 23.20; 10 ms (ipp) 84.83 ->
    84.70; 1 ms (direct) within +-0.3% (README, "Running on a cluster").
    """
    if not hasattr(os, "SCHED_BATCH"):  # not Linux
        return
    try:
        threads = [int(tid) for tid in os.listdir("/proc/self/task")]
    except OSError:
        threads = [0]
    for tid in threads:
        try:
            os.sched_setscheduler(tid, os.SCHED_BATCH, os.sched_param(0))
        except OSError:  # the thread ended meanwhile, or a sandbox forbids it
            pass
