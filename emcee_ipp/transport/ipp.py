"""Map traffic over ipyparallel's own messages.

Runs on the client::

    submit ----> Client.send_apply_request(_engine.evaluate, ...) to one engine
                   client -> controller (mux scheduler) -> engine kernel
    wait_first <- its reply future (a concurrent.futures.Future)
                   engine -> controller -> client

One message per chunk, never blocking on submission. ipyparallel's blocking
``map`` is not used: it swallows KeyboardInterrupt. Each future answers
exactly one message, so a late reply can never be read as another's.

Map chunks skip the view layer (``DirectView.apply_async``) and its
``AsyncResult``: the request is the same message a view sends, but the client
does less per call (no AsyncResult, no parsing of the reply's dates), which
matters when a message costs ~3 ms of CPU spread over 3 processes
(benchmarks/bench_overhead.py). Set-up calls (:meth:`IppTransport.call`) use
the view.
"""
from __future__ import annotations

import concurrent.futures
import functools

from ipyparallel import error as ipp_error
from ipyparallel.serialize import PrePickled

from .. import _engine
from .._cache import MAX_ENTRIES
from .base import EngineLost, Transport


# ipyparallel ships a plain function by value (its code object, pickled again
# on every call and rebuilt on the engine); a partial pickles it by reference,
# "emcee_ipp._engine.evaluate", and PrePickled does that once for all calls.
_EVALUATE = PrePickled(functools.partial(_engine.evaluate))


class IppTransport(Transport):
    """Each chunk is one apply request to one engine, sent without a view."""

    name = "ipp"
    # An engine that just replied is still busy with the message (publishing
    # its idle status): the next one-chunk map goes to the next engine.
    rotate_engines = True

    def __init__(self, client):
        self._client = client
        self._views: dict = {}
        self._idents: dict = {}  # engine id -> its routing identity on the mux socket

    def _view(self, engine_id):
        view = self._views.get(engine_id)
        if view is None:
            view = self._views[engine_id] = self._client.direct_view(engine_id)
        return view

    def call(self, engine_id, fn, *args):
        """Run any function on one engine (set-up calls); return its AsyncResult."""
        return self._view(engine_id).apply_async(fn, *args)

    def submit(self, engine_id, token, payload, chunk):
        ident = self._idents.get(engine_id)
        if ident is None:
            ident = self._idents[engine_id] = self._client._build_targets(engine_id)[0][0]  # noqa: SLF001
        return self._client.send_apply_request(
            self._view(engine_id)._socket,  # noqa: SLF001 (the view's own mux socket)
            _EVALUATE,
            [token, payload, chunk, MAX_ENTRIES],
            ident=ident,
        )

    def wait_first(self, handles, timeout):
        done, _ = concurrent.futures.wait(
            handles, timeout=timeout, return_when=concurrent.futures.FIRST_COMPLETED
        )
        replies = [(future, _reply(future.result())) for future in done]
        for future, _ in replies:
            self._forget_history(future.msg_id)
        return replies

    def forget(self, handles):
        for future in handles:
            self._forget_history(future.msg_id)

    def _forget_history(self, msg_id) -> None:
        """The client keeps every msg_id it sent in ``history``, for good; drop
        ours once answered or abandoned (its other caches empty themselves
        when the reply and the engine's idle status are in). Ours are among
        the last ones sent: at most one per engine is in flight."""
        history = self._client.history
        if history and history[-1] == msg_id:
            history.pop()
        else:
            recent = max(64, 2 * len(self._idents))
            if msg_id in history[-recent:]:
                history.remove(msg_id)

    def remove_engine(self, engine_id: int) -> None:
        self._views.pop(engine_id, None)
        self._idents.pop(engine_id, None)

    def close(self):
        self._views.clear()
        self._idents.clear()


def engine_lost(exc: BaseException) -> bool:
    """ipyparallel reports a dead engine as EngineError, or as a RemoteError named so."""
    return isinstance(exc, ipp_error.EngineError) or getattr(exc, "ename", "") == "EngineError"


def _reply(result):
    """The future's result is evaluate's reply, or the exception the engine's
    reply carried (ipyparallel sets it as the result, not raises it)."""
    if isinstance(result, BaseException):
        if engine_lost(result):
            return EngineLost(str(result))
        raise result
    return result
