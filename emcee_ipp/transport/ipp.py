"""Map traffic over ipyparallel's own messages.

Runs on the client::

    submit ----> DirectView(engine).apply_async(_engine.evaluate, ...)
                   client -> controller (mux scheduler) -> engine kernel
    wait_first <- AsyncResult, a concurrent.futures.Future
                   engine -> controller -> client

One message per chunk, never blocking on submission. ipyparallel's blocking
``map`` is not used: it swallows KeyboardInterrupt. Each AsyncResult answers
exactly one message, so a late reply can never be read as another's.
"""
from __future__ import annotations

import concurrent.futures

from ipyparallel import error as ipp_error

from .. import _engine
from .._cache import MAX_ENTRIES
from .base import EngineLost, Transport


class IppTransport(Transport):
    """Each chunk is one ``apply_async`` on one engine's DirectView."""

    name = "ipp"

    def __init__(self, client):
        self._client = client
        self._views: dict = {}

    def _view(self, engine_id):
        view = self._views.get(engine_id)
        if view is None:
            view = self._views[engine_id] = self._client.direct_view(engine_id)
        return view

    def call(self, engine_id, fn, *args):
        """Run any function on one engine (set-up calls); return its AsyncResult."""
        return self._view(engine_id).apply_async(fn, *args)

    def submit(self, engine_id, token, payload, chunk):
        return self.call(engine_id, _engine.evaluate, token, payload, chunk, MAX_ENTRIES)

    def wait_first(self, handles, timeout):
        done, _ = concurrent.futures.wait(
            handles, timeout=timeout, return_when=concurrent.futures.FIRST_COMPLETED
        )
        replies = [(ar, _reply(ar)) for ar in done]
        for ar, _ in replies:
            self._purge(ar)
        return replies

    def _purge(self, ar) -> None:
        """Drop a read reply from the client's caches, which otherwise grow by
        every message (~1 KB per map: 10,000 maps grew the client by 10 MB)."""
        self._client.purge_local_results(jobs=ar.msg_ids)
        history = self._client.history
        for msg_id in ar.msg_ids:
            if history and history[-1] == msg_id:
                history.pop()
            elif msg_id in history[-64:]:
                history.remove(msg_id)
        view = self._views.get(getattr(ar, "engine_id", None))
        if view is not None:
            view.history.clear()

    def close(self):
        self._views.clear()


def engine_lost(exc: BaseException) -> bool:
    """ipyparallel reports a dead engine as EngineError, or as a RemoteError named so."""
    return isinstance(exc, ipp_error.EngineError) or getattr(exc, "ename", "") == "EngineError"


def _reply(ar):
    try:
        return ar.get(0)
    except (ipp_error.EngineError, ipp_error.RemoteError) as exc:
        if engine_lost(exc):
            return EngineLost(str(exc))
        raise
