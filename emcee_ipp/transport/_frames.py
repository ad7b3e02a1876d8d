"""Signed messages of the direct channel, for both sides.

Runs on the client and on the engines. A message is one ZeroMQ frame (one
frame, not several: each extra frame costs a few microseconds per hop)::

    | 32-byte HMAC-SHA256 | 4-byte header length | JSON header | part | part ...

The HMAC, keyed with the cluster's session key as ipyparallel signs its own
messages, covers everything after it. The header lists the parts' lengths. A
message whose signature fails is dropped before anything in it is parsed,
let alone unpickled.

Positions and float results travel as raw float64 bytes; the header says
their shape. Only lists (dicts of named parameters, tuples with blobs) are
pickled, and only inside signed messages.
"""
from __future__ import annotations

import hmac
import json
import pickle

import numpy as np

SIG_BYTES = 32


def pack(key: bytes, header: dict, *parts: bytes) -> bytes:
    """One signed message: ``header`` (JSON) plus raw ``parts``."""
    header = dict(header, sizes=[len(p) for p in parts])
    head = json.dumps(header, separators=(",", ":")).encode()
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
        header = json.loads(bytes(body[4 : 4 + n]))
        parts, at = [], 4 + n
        for size in header["sizes"]:
            parts.append(body[at : at + size])
            at += size
    except (ValueError, KeyError, TypeError):
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
