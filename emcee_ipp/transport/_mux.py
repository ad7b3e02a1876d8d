"""The ipp transport's own socket on the controller's direct-view queue.

Runs on the client. A view sends through the ``Client``, which hands every
message to its I/O thread and reads every reply there, then wakes the caller
through a future: two thread hand-offs per call, each a wake-up on a busy
machine, plus the client's bookkeeping (futures, metadata, history). Map
chunks only need the messages, so they travel on a socket of their own,
sent and read in the calling thread::

    send ----> DEALER --apply_request(_ipp_engine.evaluate, ...)--> controller mux -> engine
    wait <---- DEALER <--apply_reply----------------------------

The messages are ipyparallel's own: the same apply requests a
``DirectView`` sends, signed with the cluster's key by a ``Session`` of our
own (the client's is not thread-safe), to the queue a view uses, so the
controller and the engines see nothing new (except that the engines publish
no status for this session's requests: ``_ipp_engine``). A 50-item map of a
trivial function went from 2.5-3.0 ms to 1.5-1.7 ms per call on 2 cores.

A client tunnelled over SSH keeps its own path (the tunnel belongs to it):
:func:`open_for` returns None and the transport uses the client's sockets.
"""

from __future__ import annotations

import logging
import math
import time

import zmq
from ipyparallel import error as ipp_error
from ipyparallel import util
from ipyparallel.serialize.serialize import deserialize_object, pack_apply_message
from jupyter_client.session import Session

from ..exceptions import ClusterNotFoundError

log = logging.getLogger("emcee_ipp")

SEND_TIMEOUT_MS = 60_000


class MuxSocket:
    """Apply requests to single engines, and their replies, in this thread."""

    def __init__(self, client) -> None:
        theirs = client.session
        self._session = Session(
            key=theirs.key,
            signature_scheme=theirs.signature_scheme,
            packer=theirs.packer,
            unpacker=theirs.unpacker,
            username=theirs.username,
        )
        self._ctx = zmq.Context()
        self._socket = self._ctx.socket(zmq.DEALER)
        self._socket.setsockopt(zmq.LINGER, 0)
        # A controller gone for good must raise, not block a send forever.
        self._socket.setsockopt(zmq.SNDTIMEO, SEND_TIMEOUT_MS)
        util.connect(
            self._socket,
            client._config["mux"],  # noqa: SLF001 (the address views send to)
            curve_serverkey=client.curve_serverkey,
            curve_secretkey=client.curve_secretkey,
            curve_publickey=client.curve_publickey,
        )
        self._awaited: set[str] = set()
        self.dropped = 0  # late replies (abandoned calls) and unsigned ones

    def send(self, ident: bytes, f, args: list) -> str:
        """Send ``f(*args)`` to the engine routed as ``ident``; return the msg_id."""
        session = self._session
        buffers = pack_apply_message(
            f,
            args,
            {},
            buffer_threshold=session.buffer_threshold,
            item_threshold=session.item_threshold,
        )
        try:
            msg = session.send(
                self._socket, "apply_request", content={}, buffers=buffers, ident=ident, metadata={}
            )
        except zmq.Again as exc:
            raise ClusterNotFoundError(
                f"could not send to the controller for {SEND_TIMEOUT_MS // 1000} s: it "
                "is gone or unreachable. Check the cluster, then create a new pool."
            ) from exc
        assert msg is not None  # (Session.send sends nothing from a forked child)
        msg_id = msg["header"]["msg_id"]
        self._awaited.add(msg_id)
        return msg_id

    def wait(self, timeout: float) -> list[tuple[str, object]]:
        """``(msg_id, result)`` of the replies that arrive within ``timeout`` s.

        A result is what the function returned, or the exception it raised
        (ipyparallel's RemoteError), as a view's future would give it.
        """
        got: list = []
        deadline = time.monotonic() + max(timeout, 0.0)
        while not got:
            remaining = deadline - time.monotonic()
            if self._socket.poll(max(0, math.ceil(remaining * 1000))):
                got.extend(self._drain())
            if remaining <= 0:
                break
        return got

    def forget(self, msg_ids) -> None:
        self._awaited.difference_update(msg_ids)

    def close(self) -> None:
        self._socket.close(linger=0)
        self._ctx.term()

    def _drain(self) -> list:
        got: list = []
        while True:
            try:
                _, msg = self._session.recv(
                    self._socket, mode=zmq.NOBLOCK, content=True, copy=False
                )
            except ValueError as exc:  # a bad signature: drop it, never unpickle it
                self.dropped += 1
                log.warning("emcee_ipp: dropped a reply that failed authentication: %s", exc)
                continue
            if msg is None:
                return got
            msg_id = msg["parent_header"].get("msg_id")
            if msg_id not in self._awaited:
                self.dropped += 1  # a late reply of an abandoned call
                continue
            self._awaited.discard(msg_id)
            got.append((msg_id, _result(msg)))


def _result(msg):
    content = msg["content"]
    if content["status"] == "ok":
        return deserialize_object(msg["buffers"])[0]
    if content["status"] == "aborted":
        return ipp_error.TaskAborted(msg["parent_header"]["msg_id"])
    return ipp_error.unwrap_exception(content)


def open_for(client) -> MuxSocket | None:
    """A MuxSocket beside ``client``, or None if the client is tunnelled over SSH."""
    if getattr(client, "_ssh", False):
        return None
    return MuxSocket(client)
