"""What a log-prob prints on an engine, caught per chunk and sent back.

Runs on the engines (:func:`start`, :func:`stop`, around each chunk in
``_engine.evaluate``); the client writes the text out when the map returns
(``pool.map``), so prints show where the user runs the sampler: in the
notebook's cell, or the terminal::

    engine, thread evaluating a chunk          client
    print(...) -> sys.stdout (a _Router)
               -> this thread's _Caught    ->  reply (..., (stdout, stderr))
                                               -> sys.stdout / sys.stderr

Before, the direct channel's server threads wrote to the engine kernel's
stream under the parent of whatever request the kernel had last handled,
and the client kept that text, growing, in ``client.metadata`` without ever
showing it; the ipp transport's was dropped. Other threads (the kernel's
own) write through to the stream as before.
"""

from __future__ import annotations

import sys
import threading

# Most text kept per chunk and stream; the rest is dropped, and counted.
MAX_CHARS = 1_000_000

_CAUGHT: dict = {}  # thread id -> _Caught, while that thread evaluates a chunk


class _Caught:
    __slots__ = ("parts", "size", "dropped")

    def __init__(self) -> None:
        self.parts: tuple[list, list] = ([], [])  # stdout, stderr
        self.size = [0, 0]
        self.dropped = [0, 0]


class _Router:
    """Stands in for ``sys.stdout`` or ``sys.stderr``: text from a thread
    evaluating a chunk goes to its :class:`_Caught`, all else to ``stream``."""

    def __init__(self, stream, which: int) -> None:
        self._stream = stream
        self._which = which  # 0: stdout, 1: stderr

    def write(self, text) -> int:
        caught = _CAUGHT.get(threading.get_ident())
        if caught is None:
            return self._stream.write(text)
        text = str(text)
        room = MAX_CHARS - caught.size[self._which]
        if len(text) > room:
            caught.dropped[self._which] += len(text) - max(room, 0)
            text = text[: max(room, 0)]
        caught.parts[self._which].append(text)
        caught.size[self._which] += len(text)
        return len(text)

    def flush(self) -> None:
        if threading.get_ident() not in _CAUGHT:
            self._stream.flush()

    def __getattr__(self, name):  # encoding, isatty, fileno, ...: the stream's
        return getattr(self._stream, name)


def start() -> _Caught:
    """Catch what this thread prints from now on."""
    if not isinstance(sys.stdout, _Router):
        sys.stdout = _Router(sys.stdout, 0)
    if not isinstance(sys.stderr, _Router):
        sys.stderr = _Router(sys.stderr, 1)
    caught = _CAUGHT[threading.get_ident()] = _Caught()
    return caught


def stop(caught: _Caught) -> tuple[str, str] | None:
    """Stop catching; return ``(stdout, stderr)`` text, or None if nothing was printed."""
    _CAUGHT.pop(threading.get_ident(), None)
    if not (caught.parts[0] or caught.parts[1]):
        return None
    texts = []
    for which in (0, 1):
        text = "".join(caught.parts[which])
        if caught.dropped[which]:
            text += f"\n[emcee_ipp: {caught.dropped[which]} more characters of output dropped]\n"
        texts.append(text)
    return texts[0], texts[1]


def write_out(output) -> None:
    """Client side: write an engine's ``(stdout, stderr)`` text here."""
    out, err = output
    if out:
        sys.stdout.write(out)
    if err:
        sys.stderr.write(err)
