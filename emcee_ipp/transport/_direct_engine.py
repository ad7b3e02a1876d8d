"""The engine's end of the direct channel: a socket server in threads.

Runs on the engine. The pool asks for it once per engine, through
ipyparallel (:func:`serve`). It listens on TCP, on the interface the engine
already uses to reach its controller, and on Linux also on a Unix socket in
the abstract namespace (no file; reachable only from the engine's own
network namespace, so from its own machine), which a pool on the same
machine prefers (see ``direct.py``). Each pool's connection is served from a
daemon thread, so the engine's main thread keeps answering ipyparallel.
After each reply it polls for the next request for as long as the request
asked (``spin``, see ``direct.ENGINE_SPIN_S``) before it blocks::

    pool (one connection per pool)         this engine (_connection thread)
    sig|C+0,#0|{"op":"hello"}           -> session id C+E (E: random, this side's)
    <- sig|C+E,#0|{"op":"hello"}
    sig|C+E,#1|{"id","op":"eval",...}|data
       (|fn bytes)(|objects' bytes)     -> verify HMAC and stamp (session C+E,
                                           the next #), or drop, log and hang up;
                                           _engine.evaluate(token, payload, chunk, ...)
    <- sig|C+E,#1|{"id","status",...}|data  same id, so the pool matches it

(``_frames`` explains the stamp: no captured message is taken twice, on
its connection or another.)

One server per engine process, shared by every pool of the same cluster
(they share the session key); their chunks are evaluated one at a time.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import select
import socket
import sys
import threading
import time
import traceback
import uuid
from urllib.parse import urlparse

from .. import _engine
from .._cache import MAX_ENTRIES
from .._host import machine_id, usable_cores
from . import _frames

log = logging.getLogger("emcee_ipp.direct")

# The longest an engine polls for the next request before sleeping (the
# client asks for less, or none, per request).
MAX_SPIN_S = 0.01
# "urls", "rejected", "busy": (thread, request id, loading) of the chunk being
# evaluated, or None. While "loading" (its function, objects and items being
# unpickled, which may import modules) an interrupt waits for the run to
# begin: one landing inside an import would leave half-made modules behind,
# and the engine failing every later map that needs them.
_SERVER: dict = {}
# Threads interrupt() raised KeyboardInterrupt in, until they leave the busy
# state (only they need the pending exception cleared: the ctypes call that
# clears it costs ~20 us on this VM, twice per request).
_RAISED: set = set()
# Orders interrupt() against the end of an evaluation: an interrupt is only
# ever raised while "busy", and one raised just before "busy" ended is
# cleared before the thread sends or receives anything.
_BUSY = threading.Lock()
_EVALUATING = threading.Lock()  # one chunk at a time, whichever pool sent it
# Request ids a pool gave up on (interrupt()), skipped if they arrive later.
_CANCELLED: set = set()
MAX_CANCELLED = 10_000
# Connections served at once (each pool opens one per engine); more are
# refused, so nobody can make an engine start threads without limit.
MAX_CONNECTIONS = 64
_CONNECTIONS = threading.BoundedSemaphore(MAX_CONNECTIONS)


def serve() -> list[str]:
    """Start this engine's server if needed; return the URLs it listens on,
    the quickest first: ``unix:@NAME`` (Linux's abstract namespace), then
    ``tcp://IP:PORT``."""
    if "urls" not in _SERVER:
        key = _session_key()
        if not key:
            raise RuntimeError(
                "the cluster has no session key: refusing an unauthenticated channel"
            )
        ip = _interface_ip()
        listeners = [socket.create_server((ip, 0))]
        urls = [f"tcp://{ip}:{listeners[0].getsockname()[1]}"]
        if sys.platform.startswith("linux"):
            name = f"emcee_ipp-{os.getpid()}-{uuid.uuid4().hex}"
            local = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                local.bind("\0" + name)
                local.listen()
            except OSError as exc:  # a sandbox that forbids it: TCP serves all
                local.close()
                log.warning("emcee_ipp: no Unix socket for the direct channel (%s)", exc)
            else:
                listeners.insert(0, local)
                urls.insert(0, f"unix:@{name}")
        _SERVER.update(urls=urls, rejected=0, busy=None)
        for listener in listeners:
            threading.Thread(
                target=_accept, args=(listener, key), name="emcee_ipp-direct-accept", daemon=True
            ).start()
    return _SERVER["urls"]


def rejected() -> int:
    """How many messages this engine refused (a bad signature, another
    session's, a repeated or out-of-order number), each ending its
    connection (for tests)."""
    return _SERVER.get("rejected", 0)


def interrupt(request_ids=None) -> bool:
    """Raise KeyboardInterrupt in the server thread evaluating a chunk.

    Runs on the engine's main thread (called through ipyparallel). SIGINT
    only reaches the main thread; this reaches the log-prob running in a
    server thread at its next Python instruction. With ``request_ids``,
    only a chunk with one of those ids is interrupted (the interrupt travels
    more slowly than the channel: the chunk it meant may have finished, and
    the next map's begun), and those chunks are skipped if they have not
    started yet. Returns whether a chunk was interrupted.
    """
    with _BUSY:
        if request_ids is not None:
            if len(_CANCELLED) > MAX_CANCELLED:
                _CANCELLED.clear()
            _CANCELLED.update(request_ids)
        busy = _SERVER.get("busy")
        if busy is None or (request_ids is not None and busy[1] not in request_ids):
            return False
        if busy[2]:  # loading: stopped as its run begins (_Running)
            _CANCELLED.add(busy[1])
            return True
        _RAISED.add(busy[0])
        ctypes.pythonapi.PyThreadState_SetAsyncExc(
            ctypes.c_ulong(busy[0]), ctypes.py_object(KeyboardInterrupt)
        )
    return True


def _accept(listener, key: bytes) -> None:
    """Serve every connection from its own thread (each pool opens one)."""
    while True:
        conn, counted = None, False
        try:
            conn, _ = listener.accept()
            counted = _CONNECTIONS.acquire(blocking=False)
            if not counted:
                log.warning("emcee_ipp: refused a connection: %d already open", MAX_CONNECTIONS)
                conn.close()
                continue
            if conn.family != socket.AF_UNIX:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)  # a vanished client
            threading.Thread(
                target=_connection, args=(conn, key), name="emcee_ipp-direct", daemon=True
            ).start()
        except Exception:  # out of file descriptors or threads: the next pool may fare better
            if conn is not None:
                conn.close()
            if counted:
                _CONNECTIONS.release()
            time.sleep(0.1)


def _connection(conn, key: bytes) -> None:
    """Answer one pool's requests until it hangs up, or sends a message that
    is not the next of its session (forged, replayed, reordered)."""
    poller = select.poll()
    poller.register(conn, select.POLLIN)
    reader = _frames.Reader(conn)
    spin, session = 0.0, None
    with conn, _released(_CONNECTIONS):
        while True:
            try:
                if _RAISED or _SERVER.get("busy") is not None:  # (as a rule, _handle ended it)
                    _end_busy()  # idle from here on: no interrupt can land in recv or send
                if spin and not reader.ready():
                    _spin(poller, spin)
                message = reader.recv()
                if message is None:  # the pool closed its end
                    return
                if session is None:  # a new connection's first message: its hello
                    session, reply = _frames.answer(key, message)
                    _frames.send(conn, reply)
                    continue
                header, parts = session.unpack(message)
                _frames.send(conn, _handle(session, header, parts))
                spin = _spin_seconds(header.get("spin"))
            except _frames.Rejected as exc:
                _reject(exc)
                return  # the rest of this stream cannot be trusted either
            except OSError:  # the connection broke
                return
            except BaseException:  # a late interrupt() must not end the server
                spin = 0.0


@contextlib.contextmanager
def _released(semaphore):
    try:
        yield
    finally:
        semaphore.release()


def _reject(why) -> None:
    with _BUSY:
        _SERVER["rejected"] = _SERVER.get("rejected", 0) + 1
    log.warning("emcee_ipp: dropped a message on the direct channel, and hung up: %s", why)


class _Running:
    """Entered as the chunk's run begins, after its loading: from here an
    interrupt lands at once; one that came while it loaded lands now."""

    __slots__ = ("rid",)

    def __init__(self, rid):
        self.rid = rid

    def __enter__(self) -> None:
        with _BUSY:
            if self.rid in _CANCELLED:
                _CANCELLED.discard(self.rid)
                raise KeyboardInterrupt("the pool gave this chunk up while it loaded")
            _SERVER["busy"] = (threading.get_ident(), self.rid, False)

    def __exit__(self, *exc) -> None:
        pass  # the caller ends the busy state (_end_busy)


def _end_busy() -> None:
    """Leave the busy state, and drop an interrupt raised but not yet delivered."""
    ident = threading.get_ident()
    with _BUSY:
        busy = _SERVER.get("busy")
        if busy is not None and busy[0] == ident:
            _SERVER["busy"] = None
        if ident in _RAISED:
            _RAISED.discard(ident)
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), None)


def _spin(poller, seconds: float) -> None:
    """Poll without sleeping for up to ``seconds`` before blocking in recv.

    A thread blocked in recv waits for the kernel to wake it (tens to
    hundreds of microseconds on a VM); while the client computes emcee's
    next half-step, polling here answers the next request at once.
    sched_yield hands the core to any other runnable thread meanwhile.
    """
    end = time.perf_counter() + seconds
    while not poller.poll(0) and time.perf_counter() < end:
        os.sched_yield()


def _spin_seconds(value) -> float:
    """The poll time a request asked for, within [0, MAX_SPIN_S]; 0 if malformed."""
    try:
        seconds = float(value)
    except (TypeError, ValueError, OverflowError):
        return 0.0
    return min(seconds, MAX_SPIN_S) if seconds > 0.0 else 0.0  # NaN > 0 is False


def _handle(session, header: dict, parts: list) -> list:
    """The reply to one verified request (a ping, or a chunk to evaluate)."""
    rid = header.get("id")
    if header.get("op") == "ping":
        # Where this engine runs, and on how many cores: the client decides
        # from them who may poll.
        return session.pack(
            {"id": rid, "status": "pong", "cores": usable_cores(), "machine": machine_id()}
        )
    try:
        chunk = _frames.decode_chunk(header, parts[0])
        payload = parts[1] if header.get("payload") else None  # unpickled, not kept
        keys = header.get("objects")  # cached objects the items name, sent last
        objects = list(zip(keys, parts[len(parts) - len(keys) :])) if keys else ()
        with _EVALUATING:
            with _BUSY:
                cancelled = rid in _CANCELLED
                _CANCELLED.discard(rid)
                _SERVER["busy"] = None if cancelled else (threading.get_ident(), rid, True)
            if cancelled:
                raise KeyboardInterrupt("the pool gave this chunk up before it started")
            try:
                reply = _engine.evaluate(
                    header["token"], payload, chunk, MAX_ENTRIES, objects, running=_Running(rid)
                )
            finally:
                _end_busy()
    except BaseException as exc:  # interrupted, or worse: report, never die
        _end_busy()  # the interrupt may have landed inside the first call
        reply = ("error", 0, type(exc).__name__, str(exc), traceback.format_exc())
    try:
        fields, data = _frames.encode_reply(reply)
    except Exception as exc:  # e.g. a blob that cannot be pickled: the client must hear of it
        fields, data = _frames.encode_reply(
            (
                "error",
                0,
                type(exc).__name__,
                f"the results could not be sent back: {exc}",
                traceback.format_exc(),
            )
        )
    return session.pack({"id": rid, **fields}, data)


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
