"""Signed messages of the direct channel, for both sides.

Runs on the client and on the engines. The channel is a TCP stream; each
message on it is::

    | 8-byte length | 32-byte HMAC-SHA256 | 4-byte header length | header | part | part ...

(:func:`send` and :func:`recv`; the length counts what follows it).

The HMAC, keyed with the cluster's session key as ipyparallel signs its own
messages, covers everything after it. A message whose signature fails is
dropped before anything in it is parsed, let alone unpickled.

The header is a small dict (the request id, the parts' lengths, ...),
pickled because that takes a fifth of JSON's time (1.7 against 8 us to dump
and load, twice per chunk); it is only loaded once the signature checks.
Positions and float results travel as raw float64 bytes; the header says
their shape. Lists (dicts of named parameters, tuples with blobs) travel
pickled.
"""
from __future__ import annotations

import hmac
import pickle
import struct

import numpy as np

SIG_BYTES = 32
_LENGTH = struct.Struct("<Q")
# A message's length is not signed (nothing is verified before the whole
# message is in): messages up to this size are read into one buffer, larger
# ones piece by piece as they arrive, so a forged length costs only the bytes
# really sent.
_READ_AT_ONCE = 1 << 16
_PIECE = 1 << 20


def send(sock, message: bytes) -> None:
    """Send one :func:`pack`-ed message on a stream socket, length first."""
    head = _LENGTH.pack(len(message))
    sent = sock.sendmsg([head, message])  # one system call for any message that fits
    if sent < len(head):
        sock.sendall(head[sent:])
    if sent < len(head) + len(message):  # a large one: the rest, without copying it
        sock.sendall(memoryview(message)[max(0, sent - len(head)):])


def recv(sock) -> bytearray | bytes | None:
    """The next message from a stream socket, or None if it was closed."""
    head = _recv_exactly(sock, _LENGTH.size)
    if head is None:
        return None
    return _recv_exactly(sock, _LENGTH.unpack(head)[0])


def _recv_exactly(sock, n: int):
    if n <= _READ_AT_ONCE:
        buffer = bytearray(n)
        view, got = memoryview(buffer), 0
        while got < n:
            k = sock.recv_into(view[got:])
            if not k:
                return None
            got += k
        return buffer
    pieces, got = [], 0
    while got < n:
        piece = sock.recv(min(n - got, _PIECE))
        if not piece:
            return None
        pieces.append(piece)
        got += len(piece)
    return b"".join(pieces)


def pack(key: bytes, header: dict, *parts: bytes) -> bytes:
    """One signed message: ``header`` (a small dict) plus raw ``parts``."""
    header = dict(header, sizes=[len(p) for p in parts])
    head = pickle.dumps(header, protocol=4)
    body = b"".join([len(head).to_bytes(4, "little"), head, *parts])
    return hmac.digest(key, body, "sha256") + body


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
    """A chunk of the map's input as (header fields, data part)."""
    if isinstance(chunk, np.ndarray):
        data = np.ascontiguousarray(chunk, dtype=np.float64)
        return {"kind": "array", "shape": list(data.shape)}, data.tobytes()
    return {"kind": "pickle"}, pickle.dumps(list(chunk), protocol=pickle.HIGHEST_PROTOCOL)


def decode_chunk(header: dict, data):
    if header["kind"] == "array":
        # A writable copy: a log-prob may change its input, as it may serially.
        return np.frombuffer(data, dtype=np.float64).reshape(header["shape"]).copy()
    return pickle.loads(data)  # only ever called on a verified message


def encode_reply(reply: tuple) -> tuple[dict, bytes]:
    """An ``_engine.evaluate`` reply as (header fields, data part)."""
    status = reply[0]
    if status == "ok":
        _, kind, data, seconds = reply
        fields = {"status": "ok", "kind": kind, "seconds": seconds}
        if kind == "o":
            return fields, pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL)
        return fields, data.tobytes()
    if status == "miss":
        return {"status": "miss"}, b""
    return {"status": "error", "error": list(reply[1:])}, b""


def decode_reply(header: dict, data) -> tuple:
    status = header["status"]
    if status == "ok":
        kind = header["kind"]
        values = pickle.loads(data) if kind == "o" else np.frombuffer(data, dtype=np.float64)
        return ("ok", kind, values, header["seconds"])
    if status == "miss":
        return ("miss",)
    return ("error", *header["error"])
