"""Signed frames of the direct channel, for both sides.

Runs on the client and on the engines. Every message is a list of ZeroMQ
frames ``[signature, header, data, (payload)]``. The signature is an
HMAC-SHA256, keyed with the cluster's session key, over every other frame
(each prefixed with its length, so frames cannot be shifted between each
other), as ipyparallel signs its own messages. A message whose signature
fails is dropped before anything in it is parsed, let alone unpickled.

Positions and float results travel as raw float64 bytes; the header (JSON)
says their shape. Only lists (dicts of named parameters, tuples with blobs)
are pickled, and only inside signed messages.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import pickle

import numpy as np


def sign(key: bytes, frames: list[bytes]) -> bytes:
    mac = hmac.new(key, digestmod=hashlib.sha256)
    for frame in frames:
        mac.update(len(frame).to_bytes(8, "little"))
        mac.update(frame)
    return mac.hexdigest().encode()


def signed(key: bytes, header: dict, *frames) -> list:
    """``[signature, header, *frames]`` ready for ``send_multipart``."""
    body = [json.dumps(header).encode(), *[_bytes(f) for f in frames]]
    return [sign(key, body), *body]


def verify(key: bytes, message: list) -> tuple[dict, list] | None:
    """Return ``(header, frames)`` of a correctly signed message, else None."""
    if len(message) < 2:
        return None
    body = [bytes(f) for f in message[1:]]
    if not hmac.compare_digest(sign(key, body), bytes(message[0])):
        return None
    try:
        return json.loads(body[0]), body[1:]
    except ValueError:
        return None


def encode_chunk(chunk) -> tuple[dict, bytes]:
    """A chunk of the map's input as (header fields, data frame)."""
    if isinstance(chunk, np.ndarray):
        data = np.ascontiguousarray(chunk, dtype=np.float64)
        return {"kind": "array", "shape": list(data.shape)}, data.tobytes()
    return {"kind": "pickle"}, pickle.dumps(list(chunk), protocol=pickle.HIGHEST_PROTOCOL)


def decode_chunk(header: dict, data: bytes):
    if header["kind"] == "array":
        # A writable copy: a log-prob may change its input, as it may serially.
        return np.frombuffer(data, dtype=np.float64).reshape(header["shape"]).copy()
    return pickle.loads(data)  # only ever called on a verified message


def encode_reply(reply: tuple) -> tuple[dict, bytes]:
    """An ``_engine.evaluate`` reply as (header fields, data frame)."""
    status = reply[0]
    if status == "ok":
        _, kind, data, seconds = reply
        if kind == "o":
            return {"status": "ok", "kind": kind, "seconds": seconds}, pickle.dumps(
                data, protocol=pickle.HIGHEST_PROTOCOL
            )
        return {"status": "ok", "kind": kind, "seconds": seconds}, data.tobytes()
    if status == "miss":
        return {"status": "miss"}, b""
    return {"status": "error", "error": list(reply[1:])}, b""


def decode_reply(header: dict, data: bytes) -> tuple:
    status = header["status"]
    if status == "ok":
        kind = header["kind"]
        values = pickle.loads(data) if kind == "o" else np.frombuffer(data, dtype=np.float64)
        return ("ok", kind, values, header["seconds"])
    if status == "miss":
        return ("miss",)
    return ("error", *header["error"])


def _bytes(frame) -> bytes:
    return frame if isinstance(frame, bytes) else bytes(frame)
