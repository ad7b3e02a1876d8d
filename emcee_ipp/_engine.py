"""Code that runs on the engines (and :func:`run_chunk`, for the pool's
``client_computes``, on the client too).

The client sends these functions by reference (``emcee_ipp._engine.<name>``),
so each message carries only a token, the walker positions and, the first
time an engine sees a function, its cloudpickled bytes::

    client                                   engine (this module)
    ------                                   --------------------
    evaluate(token, payload|None, chunk) ->  _CACHE[token] or cloudpickle.loads(payload)
                                             results = [fn(x) for x in chunk]
         <- ("ok", kind, data, seconds)      pack_results(results), compute time
            (+ (stdout, stderr) if it printed: _capture)
         <- ("miss",)                        token unknown and no payload sent
         <- ("error", index, type, msg, tb)  fn raised on item ``index``
                                             (LOAD_FAILED: the bytes could not be
                                             loaded, e.g. a module missing here)

The cache is module state, so it lives as long as the engine process.
"""
from __future__ import annotations

import os
import time
import traceback
from collections import OrderedDict

import cloudpickle

from . import _capture
from ._cache import MAX_ENTRIES
from ._wire import pack_results

# Functions deserialized on this engine, by the token the client gave them.
# Bounded like the client's cache (MAX_ENTRIES), least recently used first.
_CACHE: "OrderedDict[str, object]" = OrderedDict()
_INITIALIZED: set = set()  # keys of pool initializers already run here
LOAD_FAILED = -1  # the "item index" of an error raised loading the function


def evaluate(token: str, payload: bytes | memoryview | None, chunk, max_entries: int = MAX_ENTRIES):
    """Evaluate the cached function ``token`` on every item of ``chunk``."""
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
    caught = _capture.start()
    try:
        reply = run_chunk(fn, chunk)
    finally:
        output = _capture.stop(caught)
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


def clear_cache() -> int:
    """Drop every cached function; return how many there were."""
    n = len(_CACHE)
    _CACHE.clear()
    return n


def cached_tokens() -> list[str]:
    """Tokens cached on this engine, oldest first (for tests and debugging)."""
    return list(_CACHE)


def setup(init_key: str | None = None, init_payload: bytes | None = None,
          batch: bool = False) -> int:
    """The pool's first call on each engine; return this engine's process id.

    Runs the pool's initializer once per engine process (``init_payload``,
    cloudpickled ``(initializer, initargs)``, under ``init_key``), and with
    ``batch`` marks the engine as batch work for the scheduler
    (:func:`_batch_scheduling`). The call also proves emcee_ipp imports here.
    """
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
