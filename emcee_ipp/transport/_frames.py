"""Signed messages of the direct channel, for both sides.

Runs on the client and on the engines. The channel is a stream socket (Unix
or TCP); each message on it is::

    | 8-byte length | 32-byte HMAC-SHA256 | 4-byte header length | header | part | part ...

(:func:`send` and :func:`recv`; the length counts what follows it).

The HMAC, keyed with the cluster's session key as ipyparallel signs its own
messages, covers everything after it. A message whose signature fails is
dropped before anything in it is parsed, let alone unpickled.

The header is a small dict (the request id, the parts' lengths, ...),
pickled because that takes a fifth of JSON's time (1.7 against 8 us to dump
and load, twice per chunk); it is only loaded once the signature checks.
Positions and float results travel as raw float64 bytes; the header says
their shape. Other items (dicts of named parameters, dynesty's tuples)
travel as the ``_wire.Packed`` bytes ``_shipping`` made; other results
(tuples with blobs) travel pickled.
"""
from __future__ import annotations

import hmac
import pickle
import socket
import struct

import numpy as np

from .._wire import Packed

SIG_BYTES = 32
_LENGTH = struct.Struct("<Q")
# A message's length is not signed (nothing is verified before the whole
# message is in), so the buffer a message is read into grows with the bytes
# that really arrive, from _FIRST_READ up, doubling: a forged length costs a
# few times what was sent (tests/test_frames.py), never what it claims. One
# buffer, so a large message (a 50 MB function) is not copied again to join
# pieces.
_FIRST_READ = 1 << 16
_JOIN_BELOW = 1 << 16  # bytes of parts up to which pack joins them


def send(sock, message: list) -> None:
    """Send one :func:`pack`-ed message on a blocking stream socket."""
    views = framed(message)
    while views:
        views = send_some(sock, views)


def framed(message: list) -> list:
    """What goes on the stream for one :func:`pack`-ed message: its length,
    then its buffers as they are (a large part is never copied into a
    joined message), as byte views whatever their format."""
    views = [memoryview(b).cast("B") for b in message]
    views.insert(0, memoryview(_LENGTH.pack(sum(map(len, views)))))
    return views


def send_some(sock, views: list, flags: int = 0) -> list:
    """Write what the socket takes of ``views`` in one scatter-gather call;
    return the views still to send (``views`` itself, trimmed). With
    ``socket.MSG_DONTWAIT`` this never blocks: a full socket takes nothing."""
    try:
        sent = sock.sendmsg(views, [], flags)
    except BlockingIOError:
        if not flags & socket.MSG_DONTWAIT:
            raise  # a blocking send that timed out (SO_SNDTIMEO)
        return views
    while views and sent >= len(views[0]):
        sent -= len(views.pop(0))
    if sent:
        views[0] = views[0][sent:]
    return views


def recv(sock) -> bytearray | None:
    """The next message from a stream socket, or None if it was closed."""
    head = _recv_exactly(sock, _LENGTH.size)
    if head is None:
        return None
    return _recv_exactly(sock, _LENGTH.unpack(head)[0])


def _recv_exactly(sock, n: int) -> bytearray | None:
    buffer = bytearray(min(n, _FIRST_READ))
    view, got = memoryview(buffer), 0
    while got < n:
        if got == len(buffer):  # full, and more is coming: grow it
            view.release()
            buffer.extend(bytes(min(n, 2 * len(buffer)) - len(buffer)))
            view = memoryview(buffer)
        k = sock.recv_into(view[got:])
        if not k:
            return None
        got += k
    return buffer


def pack(key: bytes, header: dict, *parts) -> list:
    """One signed message: ``header`` (a small dict) plus raw ``parts``.

    Returned as a list of buffers for :func:`send`. A small message is
    joined (one buffer is quicker to sign and send); a large one's parts are
    signed and sent where they lie, never copied.
    """
    header = dict(header, sizes=[memoryview(p).nbytes for p in parts])
    head = pickle.dumps(header, protocol=4)
    prefix = len(head).to_bytes(4, "little") + head
    if sum(header["sizes"]) <= _JOIN_BELOW:
        body = b"".join([prefix, *parts])
        return [hmac.digest(key, body, "sha256"), body]
    mac = hmac.new(key, prefix, "sha256")
    for part in parts:
        mac.update(part)
    return [mac.digest(), prefix, *parts]


def unpack(key: bytes, message) -> tuple[dict, list] | None:
    """``(header, parts)`` of a correctly signed message, else None."""
    message = memoryview(message)
    if len(message) < SIG_BYTES + 4:
        return None
    body = message[SIG_BYTES:]
    if not hmac.compare_digest(hmac.digest(key, body, "sha256"), message[:SIG_BYTES]):
        return None
    try:
        n = int.from_bytes(body[:4], "little")
        header = pickle.loads(body[4 : 4 + n])  # signed by the cluster's key: see above
        parts, at = [], 4 + n
        for size in header["sizes"]:
            parts.append(body[at : at + size])
            at += size
    except Exception:  # a signed but malformed message (a bug, or another version)
        return None
    return header, parts


def encode_chunk(chunk) -> tuple[dict, bytes]:
    """A chunk of the map's input (float64 rows, or a ``_wire.Packed``) as
    (header fields, data part)."""
    if isinstance(chunk, np.ndarray):
        data = np.ascontiguousarray(chunk, dtype=np.float64)
        return {"kind": "array", "shape": list(data.shape)}, data.tobytes()
    return {"kind": "packed", "count": chunk.count, "whole": chunk.whole}, chunk.data


def decode_chunk(header: dict, data):
    if header["kind"] == "array":
        # A writable copy: a log-prob may change its input, as it may serially.
        return np.frombuffer(data, dtype=np.float64).reshape(header["shape"]).copy()
    # Loaded by _engine.evaluate, item by item; only ever on a verified message.
    return Packed(int(header["count"]), data, bool(header.get("whole")))


def encode_reply(reply: tuple) -> tuple[dict, bytes]:
    """An ``_engine.evaluate`` reply as (header fields, data part)."""
    status = reply[0]
    if status == "ok":
        _, kind, data, seconds, *output = reply
        fields = {"status": "ok", "kind": kind, "seconds": seconds}
        if output:  # what the log-prob printed (_capture)
            fields["output"] = output[0]
        if kind == "p":  # pickled on the engine (_wire.pickle_results)
            return fields, data
        return fields, data.tobytes()
    if status == "miss":
        return {"status": "miss"}, b""
    return {"status": status, "error": list(reply[1:])}, b""  # "error", "badinput"


def decode_reply(header: dict, data) -> tuple:
    status = header["status"]
    if status == "ok":
        kind = header["kind"]
        values = data if kind == "p" else np.frombuffer(data, dtype=np.float64)
        output = (tuple(header["output"]),) if "output" in header else ()
        return ("ok", kind, values, header["seconds"], *output)
    if status == "miss":
        return ("miss",)
    return (status, *header["error"])
