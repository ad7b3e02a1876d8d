"""Map traffic over ipyparallel's own messages.

Runs on the client::

    pool.map --submit--> DirectView(engine).apply_async(evaluate, ...)
                           client -> controller (mux scheduler) -> engine kernel
    pool.map <--wait---- AsyncResult.get()   (engine -> controller -> client)

One message per engine per map, never blocking on submission. ipyparallel's
blocking ``map`` is not used: it swallows KeyboardInterrupt.
"""
from __future__ import annotations

import time

from ..exceptions import MapTimeoutError
from .base import Transport


class IppTransport(Transport):
    """Send each chunk as one ``apply_async`` to one engine's DirectView."""

    name = "ipp"

    def __init__(self, client):
        self._client = client
        self._views: dict = {}

    def submit(self, engine_id, fn, *args):
        view = self._views.get(engine_id)
        if view is None:
            view = self._views[engine_id] = self._client.direct_view(engine_id)
        return view.apply_async(fn, *args)

    def wait(self, handles, timeout):
        deadline = None if timeout is None else time.monotonic() + timeout
        replies = []
        for ar in handles:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                replies.append(ar.get(timeout=remaining))
            except TimeoutError as exc:
                late = [h.engine_id for h in handles if not h.ready()]
                raise MapTimeoutError(
                    f"map did not finish within timeout={timeout} s; engines "
                    f"{late} were still working. The log-prob may hang for some "
                    "parameters; raise timeout= or fix the log-prob."
                ) from exc
        return replies

    def close(self):
        self._views.clear()
