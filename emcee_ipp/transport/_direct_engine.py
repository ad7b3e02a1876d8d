"""The engine's end of the direct channel: a ZeroMQ server in a thread.

Runs on the engine. The pool asks for it once per engine, through
ipyparallel (:func:`serve`); it binds a ROUTER socket on the interface the
engine already uses to reach its controller, and serves map chunks from a
daemon thread, so the engine's main thread keeps answering ipyparallel.
After each reply it polls for the next request for as long as the request
asked (``spin``, see ``direct.ENGINE_SPIN_S``) before it blocks::

    pool (DEALER)                          this thread (ROUTER)
    sig|{"id","op":"eval",...}|data     -> verify HMAC, or drop and log
                                           _engine.evaluate(token, payload, chunk)
    <- sig|{"id","status",...}|data        same id, so the pool matches it

One server per engine process, shared by every pool of the same cluster
(they share the session key).
"""
from __future__ import annotations

import ctypes
import logging
import os
import socket
import threading
import time
import traceback
from urllib.parse import urlparse

import zmq

from .. import _engine
from .._cluster import default_n_engines
from .._cache import MAX_ENTRIES
from . import _frames

log = logging.getLogger("emcee_ipp.direct")

# The longest an engine polls for the next request before sleeping (the
# client asks for less, or none, per request).
MAX_SPIN_S = 0.01
_SERVER: dict = {}  # "url", "thread", "rejected", "busy"
# Orders interrupt() against the end of an evaluation: an interrupt is only
# ever raised while "busy", and one raised just before "busy" ended is
# cleared before the thread sends or receives anything.
_BUSY = threading.Lock()


def serve() -> str:
    """Start this engine's server if needed; return the URL to connect to."""
    if "url" not in _SERVER:
        key = _session_key()
        if not key:
            raise RuntimeError("the cluster has no session key: refusing an unauthenticated channel")
        ctx = zmq.Context()
        sock = ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        ip = _interface_ip()
        port = sock.bind_to_random_port(f"tcp://{ip}")
        _SERVER.update(url=f"tcp://{ip}:{port}", rejected=0, busy=False)
        thread = threading.Thread(
            target=_loop, args=(sock, key), name="emcee_ipp-direct", daemon=True
        )
        thread.start()
        _SERVER["thread"] = thread
    return _SERVER["url"]


def rejected() -> int:
    """How many messages failed authentication on this engine (for tests)."""
    return _SERVER.get("rejected", 0)


def interrupt() -> bool:
    """Raise KeyboardInterrupt in the server thread if it is evaluating a chunk.

    Runs on the engine's main thread (called through ipyparallel). SIGINT
    only reaches the main thread; this reaches the log-prob running in the
    server thread at its next Python instruction. Returns whether it was busy.
    """
    thread = _SERVER.get("thread")
    with _BUSY:
        if thread is None or not _SERVER.get("busy"):
            return False
        ctypes.pythonapi.PyThreadState_SetAsyncExc(
            ctypes.c_ulong(thread.ident), ctypes.py_object(KeyboardInterrupt)
        )
    return True


def _loop(sock, key: bytes) -> None:
    spin = 0.0
    while True:
        try:
            _end_busy()  # idle from here on: no interrupt can land in recv or send
            if spin:
                _spin(sock, spin)
            spin = _serve_one(sock, key)
        except zmq.ZMQError:  # context terminated: the engine is shutting down
            return
        except BaseException:  # a late interrupt() must not end the server
            spin = 0.0


def _end_busy() -> None:
    """Leave the busy state, and drop an interrupt raised but not yet delivered."""
    with _BUSY:
        _SERVER["busy"] = False
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(threading.get_ident()), None)


def _spin(sock, seconds: float) -> None:
    """Poll without sleeping for up to ``seconds`` before blocking in recv.

    A thread blocked in recv waits for the kernel to wake it (tens to
    hundreds of microseconds on a VM); while the client computes emcee's
    next half-step, polling here answers the next request at once.
    sched_yield hands the core to any other runnable thread meanwhile.
    """
    end = time.perf_counter() + seconds
    while not sock.poll(0) and time.perf_counter() < end:
        os.sched_yield()


def _serve_one(sock, key: bytes) -> float:
    """Answer one message; return how long to spin for the next (the client's wish)."""
    frames = sock.recv_multipart()  # copying is faster than tracking small frames
    verified = _frames.unpack(key, frames[-1]) if len(frames) == 2 else None
    if verified is None:
        _SERVER["rejected"] += 1
        log.warning("emcee_ipp: dropped a message that failed authentication")
        return 0.0
    sock.send_multipart([frames[0], _handle(key, *verified)])
    return _spin_seconds(verified[0].get("spin"))


def _spin_seconds(value) -> float:
    """The poll time a request asked for, within [0, MAX_SPIN_S]; 0 if malformed."""
    try:
        seconds = float(value)
    except (TypeError, ValueError, OverflowError):
        return 0.0
    return min(seconds, MAX_SPIN_S) if seconds > 0.0 else 0.0  # NaN > 0 is False


def _handle(key: bytes, header: dict, parts: list) -> bytes:
    rid = header.get("id")
    if header.get("op") == "ping":
        # The cores this engine may use: the client decides from them whether to poll.
        return _frames.pack(key, {"id": rid, "status": "pong", "cores": default_n_engines()})
    try:
        chunk = _frames.decode_chunk(header, parts[0])
        payload = bytes(parts[1]) if header.get("payload") else None
        _SERVER["busy"] = True
        try:
            reply = _engine.evaluate(header["token"], payload, chunk, MAX_ENTRIES)
        finally:
            _end_busy()
    except BaseException as exc:  # interrupted, or worse: report, never die
        _end_busy()  # the interrupt may have landed inside the first call
        reply = ("error", 0, type(exc).__name__, str(exc), traceback.format_exc())
    fields, data = _frames.encode_reply(reply)
    return _frames.pack(key, {"id": rid, **fields}, data)


def _session_key() -> bytes:
    from IPython import get_ipython

    return get_ipython().kernel.session.key


def _interface_ip() -> str:
    """The local address of the interface this engine uses to reach its controller."""
    from ipyparallel.engine.app import IPEngine

    host = urlparse(IPEngine.instance().registration_url).hostname or "127.0.0.1"
    if host in ("127.0.0.1", "localhost", "::1"):
        return "127.0.0.1"
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect((host, 9))  # no packet is sent: this only picks the route
        return probe.getsockname()[0]
    finally:
        probe.close()
