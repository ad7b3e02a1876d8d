"""The engines' stdout and stderr, with a flush that costs nothing when idle.

Runs on the engines of the clusters the pool starts (set as
``IPEngine.out_stream_factory``). ipykernel's ``OutStream.flush`` always
waits for a round trip through the kernel's IOPub thread, even with nothing
to send, and an ipyparallel engine flushes both streams before every reply
and again after it: 4 thread hand-offs per message, 2 of them between the
request and its reply. This stream skips the hand-off when nothing was
written since the last flush; written output is flushed exactly as before.
"""
from __future__ import annotations

from ipykernel.iostream import OutStream


class QuickFlushOutStream(OutStream):
    """An ``OutStream`` whose flush returns at once when there is nothing to send."""

    def flush(self):
        if not (self._flush_pending or self._subprocess_flush_pending):
            with self._buffer_lock:
                empty = not self._buffers
            if empty:
                return
        super().flush()
