"""Keeping a pool-owned local cluster at its size: dead engines are replaced.

Runs on the client, in a thread of its own. The engines of a cluster the
pool started are watched by their ipyparallel launchers (the zygote's fork
launchers, or ipyparallel's own), which call ``notify_stop`` with the exit
code when one ends. The keeper looks at the launchers every :data:`POLL_S`;
when an engine has ended it records how (exit code, the end of its output)
and starts another engine in its place through the cluster
(``Cluster.start_engines``), so ipyparallel still starts, registers and
watches it. The pool prepares it lazily, as any engine that joins
(``IPyParallelPool._engines``).

Clusters the pool only connected to are never touched: it stops using their
dead engines, nothing more.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any, Callable

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

    def __init__(self, cluster, timeout: float, run: Callable[[Any], Any]):
        self._cluster = cluster
        self._call = run  # runs a coroutine of the cluster on its loop (OwnedCluster)
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
        self._call(self._cluster.start_engines(n=n))
        self._started.extend([time.monotonic()] * n)
        self._adopt()


def _running(launcher) -> bool:
    """Whether the launcher's process runs: neither reported ended
    (``notify_stop``) nor gone, for a report still on its way."""
    if launcher.state == "after":
        return False
    process = getattr(launcher, "process", None)
    try:
        return process is not None and process.is_running() and process.status() != "zombie"
    except Exception:  # gone between the two calls
        return False


def _exitcode(launcher) -> int | None:
    """The exit code the launcher reported to ipyparallel (``notify_stop``):
    ``-N`` for signal ``N``; None if it has not within a second."""
    deadline = time.monotonic() + 1.0
    while launcher.state != "after" and time.monotonic() < deadline:
        time.sleep(0.01)
    code = (launcher.stop_data or {}).get("exit_code")
    return code if isinstance(code, int) else None


def _tail(launcher) -> str:
    """The last lines the engine wrote (stdout and stderr share its file,
    which ipyparallel reads and removes when it learns of the end)."""
    try:
        text = launcher.get_output()[-TAIL_BYTES:]
    except Exception:  # a launcher without a file, or the file gone
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
