"""Keeping a pool-owned local cluster at its size: dead engines are replaced.

Runs on the client, in a thread of its own. The engines of a cluster the
pool started are this process's children (ipyparallel's local launchers
start them and wait on them in threads). The keeper looks at them every
:data:`POLL_S`; when one has exited it records how (exit code, the end of
its output) and starts another engine in its place through the cluster
(``Cluster.start_engines``), so ipyparallel still starts, registers and
watches it. The pool prepares it lazily, as any engine that joins
(``IPyParallelPool._engines``).

Clusters the pool only connected to are never touched: it stops using their
dead engines, nothing more.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque

from .exceptions import describe_exit

log = logging.getLogger("emcee_ipp")

POLL_S = 0.1
# At most this many replacements within REPLACE_WINDOW_S; past it, engines
# that die at once (a broken environment) are not started again and again.
MAX_REPLACEMENTS = 60
REPLACE_WINDOW_S = 60.0
# How much of a dead engine's output file the error quotes.
TAIL_BYTES = 65536  # faulthandler's report lists every extension module
TAIL_LINES = 20


class Death:
    """How one engine process ended."""

    __slots__ = ("exitcode", "output")

    def __init__(self, exitcode: int | None, output: str):
        self.exitcode, self.output = exitcode, output


class Keeper:
    """Watches an owned cluster's engine processes and replaces dead ones."""

    def __init__(self, cluster, timeout: float):
        self._cluster = cluster
        self._timeout = timeout  # how long a replacement may take to register
        self._launchers: dict[int, object] = {}  # pid -> its ipyparallel launcher
        self.deaths: dict[int, Death] = {}  # pid -> how it ended
        self._started: deque = deque()  # monotonic times of replacements started
        self.gave_up = False  # too many replacements died: none are started any more
        self._replacing = False  # between seeing an engine end and starting another
        self._stop = threading.Event()
        self._adopt()
        self._thread = threading.Thread(target=self._run, name="emcee_ipp keeper", daemon=True)
        self._thread.start()

    def _adopt(self) -> None:
        """Note the launchers of every engine the cluster has started."""
        for engine_set in list(self._cluster.engines.values()):
            for launcher in list(getattr(engine_set, "launchers", {}).values()):
                pid = getattr(launcher, "pid", None)
                if pid and pid not in self.deaths:
                    self._launchers.setdefault(pid, launcher)

    def coming(self) -> bool:
        """Whether an engine is on its way: one has ended and is about to be
        replaced, or a replacement was started recently enough that it may
        still register."""
        if self.gave_up:
            return False
        if self._replacing or not all(_running(x) for x in list(self._launchers.values())):
            return True  # (a connection can break before the keeper's next look)
        return bool(self._started) and time.monotonic() - self._started[-1] < self._timeout

    def dead(self, pid: int) -> Death | None:
        """How engine process ``pid`` ended, once the keeper saw it end."""
        return self.deaths.get(pid)

    def stop(self) -> None:
        """Stop watching (before the cluster stops, so nothing is replaced then)."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)

    def _run(self) -> None:
        while not self._stop.wait(POLL_S):
            try:
                self._look()
            except Exception as exc:  # the keeper must not die of one bad look
                log.warning("emcee_ipp: watching the local engines failed: %s", exc)

    def _look(self) -> None:
        ended = [pid for pid, launcher in list(self._launchers.items()) if not _running(launcher)]
        if not ended:
            return
        self._replacing = True
        try:
            self._record_and_replace(ended)
        finally:
            self._replacing = False

    def _record_and_replace(self, ended: list) -> None:
        for pid in ended:
            launcher = self._launchers.pop(pid)
            death = Death(_exitcode(launcher), _tail(launcher))
            self.deaths[pid] = death  # (read by the pool's thread: one dict store)
            log.info(
                "emcee_ipp: local engine (pid %s) ended: %s; starting another",
                pid,
                describe_exit(death.exitcode),
            )
        if not self._stop.is_set():
            self._replace(len(ended))

    def _replace(self, n: int) -> None:
        now = time.monotonic()
        while self._started and now - self._started[0] > REPLACE_WINDOW_S:
            self._started.popleft()
        if len(self._started) + n > MAX_REPLACEMENTS:
            if not self.gave_up:
                log.error(
                    "emcee_ipp: %d local engines died within %.0f s; not starting more. "
                    "Their output is in the errors the pool raises.",
                    MAX_REPLACEMENTS,
                    REPLACE_WINDOW_S,
                )
            self.gave_up = True
            return
        self._cluster.start_engines_sync(n=n)
        self._started.extend([time.monotonic()] * n)
        self._adopt()


def _running(launcher) -> bool:
    process = getattr(launcher, "process", None)
    try:
        return process is not None and process.is_running() and process.status() != "zombie"
    except Exception:  # gone between the two calls
        return False


def _exitcode(launcher) -> int | None:
    """The exit code ipyparallel's waiting thread got (psutil keeps it):
    ``-N`` for signal ``N``."""
    waiter = getattr(launcher, "_wait_thread", None)
    if waiter is not None:
        waiter.join(timeout=1.0)  # it reaps the process; ours would race it
    try:
        return launcher.process.wait(timeout=0)
    except Exception:
        return None


def _tail(launcher) -> str:
    """The last lines the engine wrote (stdout and stderr share its file)."""
    path = getattr(launcher, "output_file", "")
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - TAIL_BYTES))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    lines = text.splitlines()
    # faulthandler's report (a segfault): its header, then every thread's
    # stack; the one that crashed is "Current thread". (Its list of
    # extension modules is one long line of no use here.)
    fatal = [i for i, line in enumerate(lines) if line.startswith("Fatal Python error")]
    if not fatal:
        return "\n".join(lines[-TAIL_LINES:])
    report = lines[fatal[-1] :]
    current = [i for i, line in enumerate(report) if line.startswith("Current thread")]
    stack = report[current[0] :] if current else report[1:]
    stack = [line for line in stack if line and not line.startswith("Extension modules:")]
    return "\n".join([report[0], *stack[: TAIL_LINES - 1]])
