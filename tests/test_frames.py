"""The direct channel's framing and sessions (``transport._frames``), over
a real socket pair.

No cluster: these run in the test process, with a writer thread on the
other end of a ``socket.socketpair``. (tests/test_direct_faults.py replays
real requests to real engines.)
"""

from __future__ import annotations

import hmac
import socket
import threading
import tracemalloc

import numpy as np
import pytest

from emcee_ipp.transport import _frames

KEY = b"the cluster's key"


def _joined(message: list) -> bytes:
    """A packed message as ``recv`` returns it (without its length)."""
    return b"".join(message)


def _session_pair():
    """A client's and an engine's end of one session, after the hellos."""
    client, hello = _frames.hello(KEY)
    engine, answer = _frames.answer(KEY, _joined(hello))
    client.confirm(_joined(answer))
    return client, engine


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    # Small kernel buffers, so a large message cannot go out in one call:
    # send must finish a partial scatter-gather send itself.
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 14)
    b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 14)
    a.settimeout(30)
    b.settimeout(30)
    with a, b:
        yield a, b


def _send_in_thread(sock, message):
    thread = threading.Thread(target=_frames.send, args=(sock, message))
    thread.start()
    return thread


@pytest.mark.parametrize("nbytes", [0, 100, (1 << 16) + 1, 5 << 20])
@pytest.mark.timeout(60)
def test_parts_arrive_whole_signed_and_in_order(pair, nbytes):
    # Sizes around the join threshold and the first read's size, one far above.
    big = np.random.default_rng(nbytes).random(nbytes // 8)
    parts = [b"first", memoryview(big), b""]
    client, engine = _session_pair()
    thread = _send_in_thread(pair[0], client.pack({"id": "r-1"}, *parts))
    header, got = engine.unpack(_frames.recv(pair[1]))
    thread.join(30)
    assert not thread.is_alive()
    assert header["id"] == "r-1"
    assert [bytes(p) for p in got] == [b"first", big.tobytes(), b""]


class _Trickle:
    """A stream socket that takes at most ``takes[i]`` bytes on its i-th
    sendmsg call (then everything), and reads back what it took."""

    def __init__(self, takes):
        self.takes, self.calls, self.data = list(takes), 0, bytearray()

    def sendmsg(self, buffers, ancillary=(), flags=0):
        self.calls += 1
        room = self.takes.pop(0) if self.takes else float("inf")
        taken = 0
        for b in buffers:
            view = memoryview(b).cast("B")
            piece = view[: int(min(room - taken, len(view)))]
            self.data += piece
            taken += len(piece)
            if taken >= room:
                break
        return taken

    def recv_into(self, view):
        n = min(len(view), len(self.data))
        view[:n] = self.data[:n]
        del self.data[:n]
        return n


def test_partial_sends_resume_at_the_right_byte():
    floats = np.arange(100, dtype=np.float64)
    tail = b"tail" * 20000  # over the join threshold: the parts go out unjoined
    client, engine = _session_pair()
    message = client.pack({"id": "r-3"}, memoryview(floats), tail)
    prefix = len(message[1])
    # Cut inside the length prefix, on its edge, on the signature's edge,
    # 3 bytes into the first float64 (the prefix holds the stamp and the
    # header), and once more.
    takes = [1, 7, _frames.SIG_BYTES, prefix + 3, 100]
    sock = _Trickle(takes)
    _frames.send(sock, message)
    assert sock.calls == len(takes) + 1
    header, parts = engine.unpack(_frames.recv(sock))
    assert header["id"] == "r-3"
    assert bytes(parts[0]) == floats.tobytes() and bytes(parts[1]) == tail


def test_a_message_signed_with_another_key_is_refused(pair):
    client, engine = _session_pair()
    # The right stamp (the session's next), the wrong key.
    stamp = _frames.STAMP.pack(client.id, client.sent)
    thread = _send_in_thread(pair[0], _frames.pack(b"another key", stamp, {"id": "r-2"}, b"x"))
    message = _frames.recv(pair[1])
    thread.join(30)
    assert message is not None
    with pytest.raises(_frames.Rejected, match="failed authentication"):
        engine.unpack(message)
    # Control: the same message signed with the session's key is taken.
    assert engine.unpack(_joined(client.pack({"id": "r-2"}, b"x")))[0]["id"] == "r-2"


@pytest.mark.parametrize("sender", ["client", "engine"])
def test_a_repeated_or_skipped_message_is_refused_both_ways(sender):
    client, engine = _session_pair()
    send, take = (client, engine) if sender == "client" else (engine, client)
    first, second, third = (_joined(send.pack({"id": f"r-{i}"})) for i in range(3))
    assert take.unpack(first)[0]["id"] == "r-0"
    with pytest.raises(_frames.Rejected, match=r"message #1 where #2 was due"):
        take.unpack(first)  # replayed on its connection
    with pytest.raises(_frames.Rejected, match=r"message #3 where #2 was due"):
        take.unpack(third)  # one skipped (or a reordering)
    # Neither refusal moved the session on: the next message is still taken.
    assert take.unpack(second)[0]["id"] == "r-1"
    assert take.unpack(third)[0]["id"] == "r-2"


def test_another_sessions_message_is_refused_even_at_the_right_number():
    client, engine = _session_pair()
    other_client, other_engine = _session_pair()
    assert {client.id, other_client.id} == {engine.id, other_engine.id}
    assert client.id != other_client.id
    with pytest.raises(_frames.Rejected, match="another session"):
        engine.unpack(_joined(other_client.pack({"id": "r-0"})))
    with pytest.raises(_frames.Rejected, match="another session"):
        client.unpack(_joined(other_engine.pack({"id": "r-0"})))
    assert engine.unpack(_joined(client.pack({"id": "r-0"})))[0]["id"] == "r-0"


def test_each_side_picks_half_of_the_session_id():
    # A client reusing a captured hello (the same half of its own) still
    # gets a new session from the engine, which a captured request misses.
    client, hello = _frames.hello(KEY)
    request = _joined(client.pack({"id": "r-0"}))
    first, _ = _frames.answer(KEY, _joined(hello))
    again, _ = _frames.answer(KEY, _joined(hello))
    assert first.id[:8] == again.id[:8] == client.id[:8]
    assert first.id[8:] != again.id[8:]
    # Only a hello opens a session: a request sent first is refused.
    with pytest.raises(_frames.Rejected, match="not a hello"):
        _frames.answer(KEY, request)
    # A client takes only the hello answering its own.
    other, _ = _frames.hello(KEY)
    with pytest.raises(_frames.Rejected, match="another session"):
        other.confirm(_joined(_frames.answer(KEY, _joined(hello))[1]))


def test_a_signed_but_malformed_message_is_refused():
    client, engine = _session_pair()
    stamp = _frames.STAMP.pack(client.id, 1)
    body = stamp + (1000).to_bytes(4, "little") + b"not a pickle"
    with pytest.raises(_frames.Rejected, match="malformed"):
        engine.unpack(hmac.digest(KEY, body, "sha256") + body)


@pytest.mark.parametrize(
    "read", [_frames.recv, lambda sock: _frames.Reader(sock).recv()], ids=["recv", "Reader"]
)
@pytest.mark.timeout(60)
def test_a_forged_length_costs_only_what_was_sent(pair, read):
    # A peer claims a 1 GiB message, sends 200 kB and hangs up: the reader
    # must give up with None, having held a few times what came, not 1 GiB
    # (its buffer doubles as bytes arrive: at most 2x what came, plus the
    # zeros of one growth step while it grows).
    sent = 200_000
    forged = _frames._LENGTH.pack(1 << 30) + b"\0" * sent  # noqa: SLF001

    def forge():
        pair[0].sendall(forged)
        pair[0].shutdown(socket.SHUT_WR)

    tracemalloc.start()
    try:
        thread = threading.Thread(target=forge)
        thread.start()
        assert read(pair[1]) is None
        peak = tracemalloc.get_traced_memory()[1]
        thread.join(30)
    finally:
        tracemalloc.stop()
    assert peak < 3 * sent + (1 << 16), peak


# -- Reader: one recv per small message, never a byte past a large one -------


@pytest.mark.timeout(60)
def test_reader_takes_back_to_back_messages_of_every_size_in_order(pair):
    # Small ones that arrive in one read, one that spans the reader's
    # buffer, one far larger than it (read on its own), then small ones: each
    # comes out whole and in order, and the stream stays in step.
    client, engine = _session_pair()
    sizes = [0, 10, 3000, _frames._FIRST_READ - 100, 7, 3 * _frames._FIRST_READ, 1, 2]  # noqa: SLF001
    rng = np.random.default_rng(7)
    payloads = [rng.bytes(n) for n in sizes]
    wire = b"".join(
        b"".join(_frames.framed(client.pack({"id": f"r-{i}"}, p))) for i, p in enumerate(payloads)
    )
    thread = threading.Thread(target=pair[0].sendall, args=(wire,))
    thread.start()
    reader = _frames.Reader(pair[1])
    for i, payload in enumerate(payloads):
        header, parts = engine.unpack(reader.recv())
        assert header["id"] == f"r-{i}"
        assert bytes(parts[0]) == payload
    thread.join(30)
    assert not reader.ready()
    pair[0].close()
    assert reader.recv() is None  # the end of the stream


def test_reader_is_ready_only_with_a_whole_message_read(pair):
    client, engine = _session_pair()
    one, two = (b"".join(_frames.framed(client.pack({"id": i}, b"x" * 50))) for i in "ab")
    pair[0].sendall(one + two[:20])  # the first whole, the second begun
    reader = _frames.Reader(pair[1])
    assert not reader.ready()  # nothing read yet
    assert engine.unpack(reader.recv())[0]["id"] == "a"
    assert not reader.ready()  # 20 bytes of the second: poll would say so, not ready()
    pair[0].sendall(two[20:] + one)  # the rest of the second, and a third message
    assert engine.unpack(reader.recv())[0]["id"] == "b"
    assert reader.ready()  # the third came in the same read: poll would not show it
    with pytest.raises(_frames.Rejected, match="#1 where #3 was due"):
        engine.unpack(reader.recv())  # (a replay of the first: refused, but read whole)
