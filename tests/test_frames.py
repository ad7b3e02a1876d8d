"""The direct channel's framing (``transport._frames``), over a real socket pair.

No cluster: these run in the test process, with a writer thread on the
other end of a ``socket.socketpair``.
"""
from __future__ import annotations

import socket
import threading
import tracemalloc

import numpy as np
import pytest

from emcee_ipp.transport import _frames

KEY = b"the cluster's key"


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
    thread = _send_in_thread(pair[0], _frames.pack(KEY, {"id": "r-1"}, *parts))
    header, got = _frames.unpack(KEY, _frames.recv(pair[1]))
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
    message = _frames.pack(KEY, {"id": "r-3"}, memoryview(floats), tail)
    prefix = len(message[1])
    # Cut inside the length prefix, on its edge, on the signature's edge,
    # 3 bytes into the first float64, and once more.
    takes = [1, 7, _frames.SIG_BYTES, prefix + 3, 100]
    sock = _Trickle(takes)
    _frames.send(sock, message)
    assert sock.calls == len(takes) + 1
    header, parts = _frames.unpack(KEY, _frames.recv(sock))
    assert header["id"] == "r-3"
    assert bytes(parts[0]) == floats.tobytes() and bytes(parts[1]) == tail


def test_a_message_signed_with_another_key_is_refused(pair):
    thread = _send_in_thread(pair[0], _frames.pack(b"another key", {"id": "r-2"}, b"x"))
    message = _frames.recv(pair[1])
    thread.join(30)
    assert message is not None and _frames.unpack(KEY, message) is None


@pytest.mark.timeout(60)
def test_a_forged_length_costs_only_what_was_sent(pair):
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
        assert _frames.recv(pair[1]) is None
        peak = tracemalloc.get_traced_memory()[1]
        thread.join(30)
    finally:
        tracemalloc.stop()
    assert peak < 3 * sent + (1 << 16), peak
