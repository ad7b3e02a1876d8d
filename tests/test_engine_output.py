"""Engines of owned clusters: output still reaches the client, flushes cost nothing when idle."""
from __future__ import annotations

import pytest


def _count_handoffs_and_print(text: str) -> tuple[str, int, int]:
    """On an engine: hand-offs to the IOPub thread by 5 idle flushes, then by
    a write and its flush."""
    import sys

    stream = sys.stdout
    calls = []
    schedule = stream.pub_thread.schedule
    stream.pub_thread.schedule = lambda f: (calls.append(f), schedule(f))[1]
    try:
        for _ in range(5):
            stream.flush()
        idle = len(calls)
        print(text)
        stream.flush()
        return type(stream).__name__, idle, len(calls) - idle
    finally:
        stream.pub_thread.schedule = schedule


@pytest.mark.timeout(60)
def test_idle_flush_skips_the_iopub_thread_and_output_still_arrives(pools):
    pool = pools("ipp")
    ar = pool.client[0].apply_async(_count_handoffs_and_print, "marker-7f3a")
    name, idle, after_write = ar.get(timeout=30)
    assert name == "QuickFlushOutStream"
    assert idle == 0  # stock ipykernel hands off twice per flush, written or not
    assert after_write > 0
    ar.wait_for_output(timeout=30)
    assert "marker-7f3a" in ar.stdout
