"""Engines: on owned clusters output still reaches the client, flushes cost nothing
when idle, and every thread is batch work for the scheduler; on any cluster the
ipp transport's chunks publish no status."""

from __future__ import annotations

import os

import helpers
import pytest


def _count_handoffs_and_print(text: str) -> tuple[str, int, int]:
    """On an engine: hand-offs to the IOPub thread by 5 idle flushes, then by
    a write and its flush."""
    import sys

    outer = sys.stdout  # emcee_ipp._capture's router, once a map has run here
    stream = getattr(outer, "_stream", outer)
    calls = []
    schedule = stream.pub_thread.schedule
    stream.pub_thread.schedule = lambda f: (calls.append(f), schedule(f))[1]
    try:
        for _ in range(5):
            outer.flush()
        idle = len(calls)
        print(text)
        outer.flush()
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


def _statuses_until(sub, session, msg_id: str, timeout: float = 20.0) -> list[tuple[str, str]]:
    """(parent session, state) of IOPub status messages, up to the idle status of ``msg_id``."""
    import time

    import zmq

    seen, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not sub.poll(100):
            continue
        _, frames = session.feed_identities(sub.recv_multipart(zmq.NOBLOCK))
        msg = session.deserialize(frames)
        if msg["header"]["msg_type"] != "status":
            continue
        parent, state = msg["parent_header"], msg["content"]["execution_state"]
        seen.append((parent.get("session"), state))
        if parent.get("msg_id") == msg_id and state == "idle":
            return seen
    raise AssertionError(f"no idle status for {msg_id} within {timeout} s; saw {seen}")


@pytest.mark.timeout(90)
def test_ipp_map_chunks_publish_no_status_and_views_still_do(pools):
    """Status messages for the transport's own requests cost every process CPU
    and no one reads them (emcee_ipp/transport/_ipp_engine.py); a view's
    requests keep theirs, which its futures wait for."""
    import zmq
    from jupyter_client.session import Session

    pool = pools("ipp")
    client = pool.client
    pool.map(abs, [-1.0, 2.0, -3.0, 4.0])  # the pool's socket and session exist
    mux_session = pool._transport._mux._session.session
    session = Session(key=client.session.key, signature_scheme=client.session.signature_scheme)
    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(client._config["iopub"])
    try:
        # The subscription is live once a view's status comes through.
        for _ in range(20):
            ar = client[0].apply_async(abs, -1)
            ar.get(timeout=30)
            try:
                _statuses_until(sub, session, ar.msg_ids[0], timeout=1.0)
                break
            except AssertionError:
                continue
        else:
            pytest.fail("the IOPub subscription never saw a view's status")
        for _ in range(10):
            assert pool.map(abs, [-1.0, 2.0, -3.0, 4.0]) == [1.0, 2.0, 3.0, 4.0]
        ar = client[1].apply_async(print, "marker-quiet")
        ar.get(timeout=30)
        seen = _statuses_until(sub, session, ar.msg_ids[0])
        ar.wait_for_output(timeout=30)
    finally:
        sub.close(linger=0)
    # At most the busy/idle pair of the request that turned an engine's status
    # off, if the first map reached only one engine; 10 maps would make >= 20.
    assert len([state for s, state in seen if s == mux_session]) <= 2 * len(client.ids)
    assert [state for s, state in seen if s == client.session.session] == ["busy", "idle"]
    assert "marker-quiet" in ar.stdout


def _thread_policies() -> list[int]:
    """On an engine: the scheduling policy of each of its threads."""
    import os

    policies = []
    for tid in os.listdir("/proc/self/task"):
        try:
            policies.append(os.sched_getscheduler(int(tid)))
        except OSError:  # ended meanwhile
            pass
    return policies


@pytest.mark.skipif(not hasattr(os, "SCHED_BATCH"), reason="Linux scheduling policies")
@pytest.mark.timeout(90)
def test_owned_engines_are_batch_work_and_other_clusters_keep_their_policy(
    pools, fresh_pool_on_external
):
    ours = os.sched_getscheduler(0)
    owned = pools("direct")
    owned.map(abs, [-1.0, 2.0, -3.0, 4.0])  # the direct server's threads exist
    for policies in owned.client[:].apply_sync(_thread_policies):
        assert len(policies) > 3  # the kernel's, the heart's and the direct server's threads
        assert set(policies) == {os.SCHED_BATCH}
    assert os.sched_getscheduler(0) == ours  # the client is left alone

    external = fresh_pool_on_external
    external.map(abs, [-1.0, 2.0, -3.0, 4.0])
    for policies in helpers.remotely(external.client[:], _thread_policies):
        assert set(policies) == {os.SCHED_OTHER}


class _FakeKernel:
    """Just what _ipp_engine touches of an ipykernel Kernel: the current
    request and ``_publish_status(status, channel, parent=None)``."""

    def __init__(self):
        self.current, self.published = None, []

    def get_parent(self, channel="shell"):
        return self.current

    def _publish_status(self, status, channel, parent=None):
        self.published.append((status, (parent or self.current)["header"]["msg_id"]))

    def request(self, session, msg_id, through_ipp):
        """What dispatch_shell does around a handler, the handler being
        _ipp_engine.evaluate's first step when ``through_ipp``."""
        from emcee_ipp.transport import _ipp_engine

        self.current = {"header": {"session": session, "msg_id": msg_id}}
        self._publish_status("busy", "shell")
        if through_ipp:
            _ipp_engine._quiet()
        self._publish_status("idle", "shell", self.current)  # as _publish_status_and_flush


def test_status_off_for_the_quiet_session_only_and_busy_always_meets_idle(monkeypatch):
    from emcee_ipp.transport import _ipp_engine

    kernel = _FakeKernel()
    monkeypatch.setattr(_ipp_engine, "_kernel", lambda: kernel)
    monkeypatch.setattr(_ipp_engine, "MAX_QUIET", 2)
    kernel.request("pool-1", "a1", through_ipp=True)  # busy went out before: idle too
    kernel.request("pool-1", "a2", through_ipp=True)
    kernel.request("view", "v1", through_ipp=False)  # another session keeps its status
    kernel._publish_status(
        "busy", "shell", parent={"header": {"session": "pool-1", "msg_id": "a3"}}
    )
    assert kernel.published == [("busy", "a1"), ("idle", "a1"), ("busy", "v1"), ("idle", "v1")]
    kernel.published.clear()
    kernel.request("pool-2", "b1", through_ipp=True)
    kernel.request("pool-3", "c1", through_ipp=True)  # the oldest, pool-1, is forgotten
    kernel.request("pool-1", "a4", through_ipp=True)  # ... and quieted again, pair intact
    kernel.request("pool-1", "a5", through_ipp=True)
    assert kernel.published == [
        ("busy", "b1"),
        ("idle", "b1"),
        ("busy", "c1"),
        ("idle", "c1"),
        ("busy", "a4"),
        ("idle", "a4"),
    ]
    assert list(kernel._publish_status.sessions) == ["pool-3", "pool-1"]
