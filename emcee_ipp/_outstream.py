"""The engines' stdout and stderr, with a flush that costs nothing when idle.

Runs on the engines of the clusters the pool starts (set as
``IPEngine.out_stream_factory``). ipykernel's ``OutStream.flush`` always
waits for a round trip through the kernel's IOPub thread, even with nothing
to send, and an ipyparallel engine flushes both streams before every reply
and again after it: 4 thread hand-offs per message, 2 of them between the
request and its reply. This stream skips the hand-off when nothing is
pending: nothing written since the last flush, and no flush under way in the
IOPub thread (one that has taken the buffers but not yet queued its message
would otherwise be overtaken by the engine's idle status). Anything else is
flushed by ipykernel's own code, exactly as before.
"""

from __future__ import annotations

from ipykernel.iostream import OutStream


class QuickFlushOutStream(OutStream):
    """An ``OutStream`` whose flush returns at once when there is nothing to send."""

    def __init__(self, *args, **kwargs):
        self._flushes_running = 0  # _flush calls under way (IOPub thread)
        super().__init__(*args, **kwargs)

    def _flush(self):
        self._flushes_running += 1
        try:
            super()._flush()
        finally:
            self._flushes_running -= 1

    def flush(self):
        if self._nothing_pending():
            return
        super().flush()

    def _nothing_pending(self) -> bool:
        # Order matters: a _flush that starts after the first checks finds
        # nothing to send; one that started before them is counted by the last.
        if getattr(self, "_buffers", None) is None:  # another ipykernel layout: never skip
            return False
        if self._flush_pending or getattr(self, "_subprocess_flush_pending", False):
            return False
        with self._buffer_lock:
            if self._buffers:
                return False
        return self._flushes_running == 0
