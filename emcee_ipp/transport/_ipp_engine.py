"""The ipp transport's entry point on the engines.

Runs on the engines, in the kernel's main thread: each map chunk the
transport sends on its own socket (``_mux``) is an apply request of
:func:`evaluate`. The kernel publishes a status message, busy then idle, on
IOPub around every request, and each one travels engine -> controller hub
-> every client, where it is checked and dropped: no one listens for the
status of these requests (they come from the transport's own session, which
no client or view shares). On 2 cores that CPU, in the engine's IOPub
thread, the hub and the client's I/O thread, came out of the engines' share.
In one pool with status toggled per block of steps (medians of 6 rounds,
2026-11-28; README, "Transports"), a map took 3.82 -> 2.96 ms on the
quickstart, 15.1 -> 13.8 ms at 1 ms per log-prob, 86.9 -> 85.7 ms at 10 ms.
So the first request from a session turns status off for that session's
later requests, and for no one else's: a view's requests, whose futures
wait for the idle status, still get theirs. The kernel's method is wrapped
on any cluster, the user's too, and stays wrapped after the pool closes
(it only ever drops the status of the sessions it was given).
"""

from __future__ import annotations

import signal
import threading
from typing import Any

from .. import _engine

MAX_QUIET = 64  # sessions remembered per engine (one per pool that used it); oldest forgotten


def evaluate(*args):
    """:func:`emcee_ipp._engine.evaluate`, with status off for the caller's
    session, and a SIGINT (the pool's interrupt) held back while the chunk
    loads: one landing inside an import would leave half-made modules
    behind, and the engine failing every later map that needs them."""
    _quiet()
    if threading.current_thread() is not threading.main_thread():
        return _engine.evaluate(*args)
    held = _HeldInterrupt()
    previous = signal.signal(signal.SIGINT, held.hold)
    if previous is None:  # a handler set outside Python: leave it alone
        signal.signal(signal.SIGINT, signal.default_int_handler)
        return _engine.evaluate(*args)
    held.previous = previous
    try:
        return _engine.evaluate(*args, running=held)
    finally:
        signal.signal(signal.SIGINT, previous)


class _HeldInterrupt:
    """SIGINT's handler while a chunk loads (it notes the signal), and the
    context of its run (the usual handler back; a noted signal raised)."""

    __slots__ = ("previous", "pending")

    def __init__(self):
        self.previous, self.pending = None, False

    def hold(self, signum, frame) -> None:
        self.pending = True

    def __enter__(self) -> None:
        signal.signal(signal.SIGINT, self.previous)
        if self.pending:
            raise KeyboardInterrupt("interrupted while the chunk loaded")

    def __exit__(self, *exc) -> None:
        pass


def _kernel():
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return getattr(get_ipython(), "kernel", None)


def _parent(kernel, channel="shell", parent=None) -> dict:
    """The request the kernel is handling (``_publish_status``'s arguments)."""
    return parent or kernel.get_parent(channel)


def _quiet() -> None:
    """Turn status off for the session of the request being handled.

    The state lives on the wrapper the first call installs on the kernel
    (``sessions``, and ``let_through``: the request that turned its session
    quiet already published "busy", so its "idle" still goes out).
    """
    kernel = _kernel()
    if kernel is None or not hasattr(kernel, "_publish_status"):
        return
    try:
        parent = _parent(kernel)
        session, msg_id = parent["header"]["session"], parent["header"]["msg_id"]
    except Exception:  # another ipykernel: status stays on
        return
    publish = kernel._publish_status  # noqa: SLF001 (ipykernel has no hook for status)
    if not hasattr(publish, "sessions"):  # once per engine: wrap the kernel's method
        publish = _wrap(kernel, publish)
    if session not in publish.sessions:
        publish.sessions[session] = None
        publish.let_through.add(msg_id)
        while len(publish.sessions) > MAX_QUIET:
            del publish.sessions[next(iter(publish.sessions))]


def _wrap(kernel, publish) -> Any:
    sessions: dict = {}  # sessions whose requests publish no status, oldest first
    let_through: set = set()  # msg_ids whose status still goes out

    def _publish_status(status, *args, **kwargs):  # (status, channel, parent=None)
        try:
            header = _parent(kernel, *args, **kwargs)["header"]
            quiet = header["session"] in sessions
            if quiet and header["msg_id"] in let_through:
                quiet = False
                if status == "idle":
                    let_through.discard(header["msg_id"])
        except Exception:  # arguments this code does not know: status stays on
            quiet = False
        return None if quiet else publish(status, *args, **kwargs)

    wrapper: Any = _publish_status  # the state rides on it, for _quiet
    wrapper.sessions = sessions
    wrapper.let_through = let_through
    kernel._publish_status = wrapper  # noqa: SLF001 (ipykernel has no hook for status)
    return wrapper
