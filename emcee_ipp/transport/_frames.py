"""Signed messages of the direct channel, for both sides, and the session
that makes each connection's messages unrepeatable.

Runs on the client and on the engines. The channel is a stream socket (Unix
or TCP); each message on it is::

    | 8-byte length | 32-byte HMAC-SHA256 | 16-byte session id | 8-byte counter |
    | 4-byte header length | header | part | part ...

(:func:`send`, and :func:`recv` or a :class:`Reader`; the length counts
what follows it).

The HMAC, keyed with the cluster's session key as ipyparallel signs its own
messages, covers everything after it. A message whose signature fails is
dropped before anything in it is parsed, let alone unpickled.

A signed message could still be captured and sent again, on its connection
or on a new one. So every message is stamped, inside the signature, with its
connection's session id and its number in that direction (:class:`Session`),
and each side takes only the next number of its own session. The id is
random, half the client's, half the engine's, chosen as the connection
opens (the client's hello, then the engine's)::

    client (direct.py)                      engine (_direct_engine.py)
    hello, stamped C + 0*8, #0          ->  signature ok, #0, engine half 0:
                                            session id = C + E (E random)
    session id starts with C, #0: ok    <-  hello, stamped C + E, #0
    request, stamped C + E, #1          ->  #1 due: ok
                                        <-  reply, stamped C + E, #1
    ...

A message with a bad signature, another session's id (a message replayed on
a new connection) or a number other than the next (one replayed on its own
connection, or dropped, or reordered) is refused (:class:`Rejected`): the
side that got it logs it and hangs up, and a new connection is a new
session. Each side's random half makes the session new to it: the engine
never takes a request made for another session, and the client never takes
a reply made for one. Checking the stamp is one ``struct`` unpack and a tuple
compare after the HMAC (~0.1 us).

The header is a small dict (the request id, the parts' lengths, ...),
pickled because that takes a fifth of JSON's time (1.7 against 8 us to dump
and load, twice per chunk); it is only loaded once the signature and the
stamp check. Positions and float results travel as raw float64 bytes; the
header says their shape. Other items (dicts of named parameters, dynesty's
tuples) travel as the ``_wire.Packed`` bytes ``_shipping`` made; other
results (tuples with blobs) travel pickled.
"""

from __future__ import annotations

import hmac
import os
import pickle
import socket
import struct

import numpy as np

from .._wire import Packed

SIG_BYTES = 32
STAMP = struct.Struct("<16sQ")  # the session id and the message's number in it
_HALF = 8  # bytes of the session id each side picks
_LENGTH = struct.Struct("<Q")
# A message's length is not signed (nothing is verified before the whole
# message is in), so the buffer a message is read into grows with the bytes
# that really arrive, from _FIRST_READ up, doubling: a forged length costs a
# few times what was sent (tests/test_frames.py), never what it claims. One
# buffer, so a large message (a 50 MB function) is not copied again to join
# pieces.
_FIRST_READ = 1 << 16
_JOIN_BELOW = 1 << 16  # bytes of parts up to which pack joins them
_KEYED: dict = {}  # key -> its HMAC state before any message (_signature)


def send(sock, message: list) -> None:
    """Send one :func:`pack`-ed message on a blocking stream socket."""
    views = framed(message)
    while views:
        views = send_some(sock, views)


def framed(message: list) -> list:
    """What goes on the stream for one :func:`pack`-ed message: its length,
    then its buffers as they are (a large part is never copied into a
    joined message), as byte views whatever their format. A small message,
    which :func:`pack` joined, goes as one buffer (a third of the time)."""
    if len(message) == 2 and type(message[1]) is bytes:
        return [_LENGTH.pack(len(message[0]) + len(message[1])) + message[0] + message[1]]
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
    """The next message from a stream socket, or None if it was closed
    (for a socket read once; :class:`Reader` for one read again and again)."""
    head = _recv_exactly(sock, _LENGTH.size)
    if head is None:
        return None
    return _recv_exactly(sock, _LENGTH.unpack(head)[0])


class Reader:
    """The messages of one stream socket, one ``recv`` each where
    :func:`recv` needs two (the length, then the rest): it takes whatever
    has arrived, up to ``_FIRST_READ`` bytes, and keeps what is past the
    message for the next call. A message larger than that is read on its
    own, never past its end.

    Used from one thread at a time. What it keeps is not visible to
    ``poll``: check :meth:`ready` before waiting on the socket.
    """

    __slots__ = ("_sock", "_buffer", "_view", "_start", "_end")

    def __init__(self, sock):
        self._sock = sock
        self._buffer = bytearray(_FIRST_READ)
        self._view = memoryview(self._buffer)
        self._start = self._end = 0  # bytes read but not yet returned: [_start, _end)

    def ready(self) -> bool:
        """Whether a whole message has been read already."""
        have = self._end - self._start
        return have >= _LENGTH.size and (
            have - _LENGTH.size >= _LENGTH.unpack_from(self._buffer, self._start)[0]
        )

    def recv(self) -> bytearray | None:
        """The next message, or None if the socket was closed."""
        while True:
            have = self._end - self._start
            if have >= _LENGTH.size:
                size = _LENGTH.unpack_from(self._buffer, self._start)[0]
                first = self._start + _LENGTH.size
                if have - _LENGTH.size >= size:
                    self._start = first + size
                    return self._buffer[first : self._start]  # (a copy: the buffer is reused)
                if size > len(self._buffer) - _LENGTH.size:  # it cannot fit: read it on its own
                    head = self._buffer[first : self._end]
                    self._start = self._end = 0
                    return _recv_exactly(self._sock, size, head)
            if self._start == self._end:
                self._start = self._end = 0
            elif self._end == len(self._buffer):  # a message begun at the end: move it to the front
                self._buffer[:have] = self._buffer[self._start : self._end]
                self._start, self._end = 0, have
            got = self._sock.recv_into(self._view[self._end :])
            if not got:
                return None
            self._end += got


def _recv_exactly(sock, n: int, head=b"") -> bytearray | None:
    """``n`` bytes from ``sock``, of which ``head`` has come already."""
    buffer = bytearray(max(min(n, _FIRST_READ), len(head)))
    buffer[: len(head)] = head
    view, got = memoryview(buffer), len(head)
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


class Rejected(Exception):
    """A message its connection must not act on (internal: the side that got
    it logs the reason and hangs up; it never reaches the user)."""


class Session:
    """One connection's signing state, on either side: its session id, the
    number of the next message to send, and of the next one to take.

    Made by :func:`hello` and :meth:`confirm` on the client, and by
    :func:`answer` on the engine; used from one thread at a time.
    """

    __slots__ = ("key", "id", "sent", "received")

    def __init__(self, key: bytes, session_id: bytes):
        self.key, self.id = key, session_id
        self.sent = self.received = 0

    def pack(self, header: dict, *parts) -> list:
        """The next message of this session (see :func:`pack`)."""
        message = pack(self.key, STAMP.pack(self.id, self.sent), header, *parts)
        self.sent += 1
        return message

    def unpack(self, message) -> tuple[dict, list]:
        """``(header, parts)`` of the next message of this session; raise
        :class:`Rejected` for any other (badly signed, another session's,
        a repeated or out-of-order number, malformed)."""
        body = _verified(self.key, message)
        stamp = STAMP.unpack_from(body)
        if stamp != (self.id, self.received):
            raise Rejected(self._why(stamp))
        self.received += 1
        return _parse(body)

    def confirm(self, message) -> None:
        """Client: take the engine's hello, which completes the session id."""
        body = _verified(self.key, message)
        session_id, number = STAMP.unpack_from(body)
        if session_id[:_HALF] != self.id[:_HALF]:
            raise Rejected("it belongs to another session (replayed from another connection?)")
        if number != 0:
            raise Rejected(f"it is message #{number} where the engine's hello, #0, was due")
        if _parse(body)[0].get("op") != "hello":
            raise Rejected("it is not the engine's hello")
        self.id, self.received = session_id, 1

    def _why(self, stamp) -> str:
        session_id, number = stamp
        if session_id != self.id:
            return "it belongs to another session (replayed from another connection?)"
        return f"it is message #{number} where #{self.received} was due (replayed or reordered?)"


def hello(key: bytes) -> tuple[Session, list]:
    """Client: a new connection's session, with the client's random half of
    its id, and the hello to send first (its message #0)."""
    session = Session(key, os.urandom(_HALF) + bytes(_HALF))
    return session, session.pack({"op": "hello"})


def answer(key: bytes, message) -> tuple[Session, list]:
    """Engine: the session a client's hello opens, with the engine's random
    half of its id, and the hello to send back; raise :class:`Rejected` for
    anything but a hello (the first message of a connection)."""
    body = _verified(key, message)
    session_id, number = STAMP.unpack_from(body)
    if number != 0 or session_id[_HALF:] != bytes(_HALF) or _parse(body)[0].get("op") != "hello":
        raise Rejected("it is not a hello, the first message of a connection (a replay?)")
    session = Session(key, session_id[:_HALF] + os.urandom(_HALF))
    session.received = 1
    return session, session.pack({"op": "hello"})


def pack(key: bytes, stamp: bytes, header: dict, *parts) -> list:
    """One signed message: its ``stamp`` (:data:`STAMP`), ``header`` (a
    small dict) and raw ``parts``.

    Returned as a list of buffers for :func:`send`. A small message is
    joined (one buffer is quicker to sign and send); a large one's parts are
    signed and sent where they lie, never copied.
    """
    header = dict(header, sizes=[memoryview(p).nbytes for p in parts])
    head = pickle.dumps(header, protocol=4)
    prefix = stamp + len(head).to_bytes(4, "little") + head
    if sum(header["sizes"]) <= _JOIN_BELOW:
        body = b"".join([prefix, *parts])
        return [_signature(key, body), body]
    return [_signature(key, prefix, *parts), prefix, *parts]


def _signature(key: bytes, *buffers) -> bytes:
    """HMAC-SHA256 of ``buffers`` under ``key``. Each key's padded state is
    hashed once, and copied per message (0.5 us less a message than
    ``hmac.digest``, of ~2 us for a small one)."""
    keyed = _KEYED.get(key)
    if keyed is None:
        if len(_KEYED) >= 16:  # (a process meets one key per cluster)
            _KEYED.clear()
        keyed = _KEYED[key] = hmac.new(key, digestmod="sha256")
    mac = keyed.copy()
    for buffer in buffers:
        mac.update(buffer)
    return mac.digest()


def _verified(key: bytes, message) -> memoryview:
    """What the signature of ``message`` covers, if it checks; else raise."""
    message = memoryview(message)
    if len(message) < SIG_BYTES + STAMP.size + 4:
        raise Rejected("it is too short to be a message")
    body = message[SIG_BYTES:]
    if not hmac.compare_digest(_signature(key, body), message[:SIG_BYTES]):
        raise Rejected("it failed authentication")
    return body


def _parse(body) -> tuple[dict, list]:
    """``(header, parts)`` of a verified message's signed ``body``."""
    try:
        n = int.from_bytes(body[STAMP.size : STAMP.size + 4], "little")
        at = STAMP.size + 4 + n
        header = pickle.loads(body[STAMP.size + 4 : at])  # signed by the cluster's key: see above
        parts = []
        for size in header["sizes"]:
            parts.append(body[at : at + size])
            at += size
    except Exception as exc:  # a signed but malformed message (a bug, or another version)
        raise Rejected(f"it is signed but malformed ({exc})") from None
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
