"""Map traffic over ipyparallel's own messages.

Runs on the client::

    submit ----> apply_request(_ipp_engine.evaluate, ...) to one engine
                   client -> controller (mux queue) -> engine kernel
                   (_engine.evaluate on a client tunnelled over SSH)
    wait_first <- its apply_reply
                   engine -> controller -> client

One message per chunk, never blocking on submission. ipyparallel's blocking
``map`` is not used: it swallows KeyboardInterrupt. Each reply answers
exactly one msg_id, so a late reply can never be read as another's.

Map chunks skip the view layer and the client's I/O thread: they travel on a
socket of the transport's own beside the client (``_mux``), sent and read in
the calling thread; the request is the same message a view sends, and the
engines publish no IOPub status for it (``_ipp_engine``). A client
tunnelled over SSH sends through its own sockets instead
(``Client.send_apply_request``, a future per chunk). Set-up calls
(:meth:`IppTransport.call`) use a view.
"""

from __future__ import annotations

import concurrent.futures
import functools
from typing import Any, Literal

from ipyparallel import error as ipp_error
from ipyparallel.serialize import PrePickled

from .. import _engine
from .._cache import MAX_ENTRIES
from . import _ipp_engine, _mux
from .base import EngineLost, Transport

# ipyparallel ships a plain function by value (its code object, pickled again
# on every call and rebuilt on the engine); a partial pickles it by reference,
# "emcee_ipp._engine.evaluate", and PrePickled does that once for all calls.
_EVALUATE = PrePickled(functools.partial(_engine.evaluate))
# The same on the transport's own socket, whose session no one else uses: it
# also turns off the engine's IOPub status for that session (_ipp_engine).
_EVALUATE_QUIETLY = PrePickled(functools.partial(_ipp_engine.evaluate))


class IppTransport(Transport):
    """Each chunk is one apply request to one engine, sent without a view."""

    name = "ipp"
    # A one-chunk map always goes to the first engine, which answered the
    # last one too: it is awake, where another one may have to be woken.
    # Quickstart, medians of 4 interleaved rounds: 4.69 -> 4.08 of serial
    # (DirectView: 9.60).
    rotate_engines = False

    def __init__(self, client):
        self._client = client
        self._views: dict = {}
        self._idents: dict = {}  # engine id -> its routing identity on the mux queue
        # opened by the first chunk (False: use the client's socket)
        self._mux: _mux.MuxSocket | Literal[False] | None = None

    def _view(self, engine_id):
        view = self._views.get(engine_id)
        if view is None:
            view = self._views[engine_id] = self._client.direct_view(engine_id)
        return view

    def call(self, engine_id, fn, *args):
        """Run any function on one engine (set-up calls); return its AsyncResult."""
        return self._view(engine_id).apply_async(fn, *args)

    def submit(self, engine_id, token, payload, chunk, objects=()):
        ident = self._idents.get(engine_id)
        if ident is None:
            ident = self._idents[engine_id] = self._client._build_targets(engine_id)[0][0]  # noqa: SLF001
        args = [token, payload, chunk, MAX_ENTRIES]
        if objects:
            args.append(list(objects))
        if self._mux is None:
            self._mux = _mux.open_for(self._client) or False
        if self._mux:
            return self._mux.send(ident, _EVALUATE_QUIETLY, args)
        return self._client.send_apply_request(
            self._view(engine_id)._socket,  # noqa: SLF001 (the view's own mux socket)
            _EVALUATE,
            args,
            ident=ident,
        )

    def wait_first(self, handles, timeout):
        if self._mux:  # handles are msg_ids
            return [(msg_id, _reply(result)) for msg_id, result in self._mux.wait(timeout)]
        done, _ = concurrent.futures.wait(
            handles, timeout=timeout, return_when=concurrent.futures.FIRST_COMPLETED
        )
        replies: list[tuple[Any, Any]] = [(future, _reply(future.result())) for future in done]
        for future, _ in replies:
            self._forget_history(future.msg_id)
        return replies

    def forget(self, handles):
        if self._mux:
            self._mux.forget(handles)
            return
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

    @property
    def dropped(self) -> int | None:
        """Late replies thrown away (None on the client's sockets, where the
        client's futures absorb them)."""
        return self._mux.dropped if self._mux else None

    def remove_engine(self, engine_id: int) -> None:
        self._views.pop(engine_id, None)
        self._idents.pop(engine_id, None)

    def close(self):
        self._views.clear()
        self._idents.clear()
        if self._mux:
            self._mux.close()
        self._mux = None


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
