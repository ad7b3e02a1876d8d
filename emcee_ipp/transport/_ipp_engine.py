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
requests, and for no one else's: a view's requests, whose futures wait for
the idle status, still get theirs.
"""
from __future__ import annotations

from .. import _engine

_QUIET: dict[str, None] = {}  # sessions whose requests publish no status, oldest first
MAX_QUIET = 64  # one per pool that used this engine; the oldest are forgotten


def evaluate(*args):
    """:func:`emcee_ipp._engine.evaluate`, with status off for the caller's session."""
    _quiet(_current_session())
    return _engine.evaluate(*args)


def _kernel():
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    shell = get_ipython()
    return getattr(shell, "kernel", None)


def _current_session(kernel=None, channel="shell", parent=None) -> str | None:
    """The session id of the request the kernel is handling (None if unknown)."""
    kernel = kernel or _kernel()
    try:
        parent = parent or kernel.get_parent(channel)
        return parent["header"]["session"]
    except Exception:  # another ipykernel: status stays on
        return None


def _quiet(session: str | None) -> None:
    kernel = _kernel()
    if session is None or kernel is None or not hasattr(kernel, "_publish_status"):
        return
    if session in _QUIET:
        return
    _QUIET[session] = None
    while len(_QUIET) > MAX_QUIET:
        del _QUIET[next(iter(_QUIET))]
    if "_publish_status" not in vars(kernel):  # once per engine: wrap the kernel's method
        publish = kernel._publish_status

        def _publish_status(status, *args, **kwargs):  # (status, channel, parent=None)
            if _current_session(kernel, *args, **kwargs) in _QUIET:
                return None
            return publish(status, *args, **kwargs)

        kernel._publish_status = _publish_status
