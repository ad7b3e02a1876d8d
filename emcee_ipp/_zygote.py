"""A fork server for a pool's own cluster: the controller and engines are
forked from one process that has already imported their modules.

Two processes run this file::

    client (Zygote, the pool's process)        zygote (this file, run as a script)
    -----------------------------------        -----------------------------------
    Zygote() -- Popen, "hello" line -->        sys.path of the client; imports the
                                                controller's and engines' modules
                                                (no thread, no zmq context: safe to fork)
    (the client imports ipyparallel meanwhile)
    Zygote.fork(args, ...) -- "fork" line -->  fork(); the child: new session, output
                           <-- "forked" pid --  file on fd 1 and 2, runs
                                                `python -m <module> <args>` in-process
    reader thread          <-- "exit" pid code  SIGCHLD: waitpid; -N for signal N
      -> the callbacks given to on_exit
    Zygote.close() -- EOF -->                  exits; its children live on (the cluster
                                                stops them, the reaper ends what is left)

A fork costs ~2 ms where a fresh ``python -m ipyparallel.engine`` spends
~0.3 s importing on a core the others need (benchmarks/bench_startup.py;
benchmarks/RESULTS.md, "Issue 22: zygote"). The zygote is started with the
reaper's marker and the engines' environment, so every child carries them.

Lines are JSON, one message each. The process side imports only the standard
library until it has read the client's ``sys.path``.
"""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import subprocess
import sys
import threading
from typing import Callable

# What the zygote imports before it forks, when it can (a failure is only
# reported): the controller's and the engines' ipyparallel stacks, and what
# an engine of the pool imports for its first call (emcee_ipp._engine and the
# transports' engine halves, numpy and cloudpickle with them).
PRELOAD = (
    "ipyparallel.controller.app",
    "ipyparallel.engine.app",
    "emcee_ipp._outstream",
    "emcee_ipp._engine",
    "emcee_ipp.transport._direct_engine",
    "emcee_ipp.transport._ipp_engine",
)
log = logging.getLogger("emcee_ipp")

REPLY_TIMEOUT_S = 60.0  # a fork request waits this long for the zygote's imports


class ZygoteGone(RuntimeError):
    """The zygote is not running (it died, or was closed): start processes another way."""


def available() -> bool:
    """Whether this platform can fork a warm process safely (Linux)."""
    return sys.platform.startswith("linux") and hasattr(os, "fork")


# -- client side -------------------------------------------------------------


class Zygote:
    """Client-side handle of a zygote process.

    Runs on the client. ``env`` is added to this process's environment for
    the zygote, hence for every process it forks.
    """

    def __init__(self, env: dict[str, str], preload: tuple[str, ...] = PRELOAD):
        self._proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env={**os.environ, **env},
            start_new_session=True,  # a Ctrl-C in the client's terminal spares it
        )
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._next_id = 0
        self._replies: dict[int, dict] = {}
        self._replied = threading.Condition(self._lock)
        self._exits: dict[int, int | None] = {}  # pid -> exit code, once reported
        self._waiters: dict[int, Callable[[int | None], None]] = {}
        self._children: set[int] = set()
        self.closed = False
        self.problems: list[str] = []  # what the zygote could not import
        self._send({"path": list(sys.path), "preload": list(preload)})
        self._reader = threading.Thread(target=self._read, name="emcee_ipp zygote", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self._proc.pid

    def alive(self) -> bool:
        return not self.closed and self._proc.poll() is None

    def fork(self, args: list[str], env: dict[str, str], cwd: str, output: str) -> int:
        """Fork a process running ``args`` (``python -m module ...``); its pid.

        ``env`` is added to its environment, ``cwd`` is its working directory,
        ``output`` the file its stdout and stderr append to. Raises
        :class:`ZygoteGone` if the zygote cannot do it.
        """
        with self._lock:
            if not self.alive():
                raise ZygoteGone("the zygote is not running")
            self._next_id += 1
            rid = self._next_id
        self._send({"id": rid, "args": list(args), "env": env, "cwd": cwd, "output": output})
        with self._replied:
            if not self._replied.wait_for(
                lambda: rid in self._replies or self.closed, REPLY_TIMEOUT_S
            ):
                raise ZygoteGone(f"the zygote did not answer within {REPLY_TIMEOUT_S} s")
            reply = self._replies.pop(rid, None)
            if reply is None:
                raise ZygoteGone("the zygote exited")
            if "error" in reply:
                raise ZygoteGone(f"the zygote could not fork: {reply['error']}")
            pid = int(reply["pid"])
            self._children.add(pid)
            return pid

    def on_exit(self, pid: int, callback: Callable[[int | None], None]) -> None:
        """Call ``callback(exit_code)`` (in the reader thread, or now) when
        child ``pid`` has ended; ``None`` if the zygote died before it."""
        with self._lock:
            if pid not in self._exits:
                self._waiters[pid] = callback
                return
            code = self._exits[pid]
        callback(code)

    def close(self) -> None:
        """Let the zygote exit (its children are not touched). Idempotent."""
        with self._lock:
            self.closed = True
            self._replied.notify_all()
        try:
            if self._proc.stdin is not None:
                self._proc.stdin.close()
        except OSError:
            pass
        from ._reaper import wait_or_kill  # (not at the top: this file also runs as a script)

        wait_or_kill(self._proc)

    def _send(self, message: dict) -> None:
        stdin = self._proc.stdin
        try:
            assert stdin is not None  # Popen(stdin=PIPE)
            with self._write_lock:
                stdin.write(json.dumps(message).encode() + b"\n")
                stdin.flush()
        except (OSError, ValueError) as exc:
            raise ZygoteGone(f"the zygote is not running ({exc})") from exc

    def _read(self) -> None:
        stdout = self._proc.stdout
        assert stdout is not None  # Popen(stdout=PIPE)
        for line in stdout:
            message = json.loads(line)
            if "exit" in message:
                self._ended(int(message["exit"]), message["code"])
            elif "problem" in message:
                log.info("emcee_ipp: zygote: %s", message["problem"])
                self.problems.append(message["problem"])
            else:
                with self._replied:
                    self._replies[message["id"]] = message
                    self._replied.notify_all()
        stdout.close()
        self._proc.wait()
        with self._replied:
            self.closed = True
            self._replied.notify_all()
            orphans = self._children.difference(self._exits)
        # The zygote died first: its children live on, orphaned; watch them here.
        for pid in orphans:
            threading.Thread(
                target=self._watch_orphan, args=(pid,), name=f"emcee_ipp orphan {pid}", daemon=True
            ).start()

    def _ended(self, pid: int, code: int | None) -> None:
        with self._lock:
            self._exits[pid] = code
            callback = self._waiters.pop(pid, None)
        if callback is not None:
            callback(code)

    def _watch_orphan(self, pid: int) -> None:
        import psutil

        try:
            psutil.Process(pid).wait()
        except psutil.Error:
            pass
        self._ended(pid, None)  # not our child: its exit code is lost


# -- zygote side ---------------------------------------------------------------


def _serve() -> dict | None:
    """The zygote's loop. Returns, in a forked child only, the request the
    child is to run; returns None in the zygote when the client is gone."""
    lines = _Lines()
    hello = lines.next(block=True)
    if hello is None:
        return None
    sys.path[:] = hello["path"]  # (the client's, in its order: imports match)
    for name in hello["preload"]:
        try:
            __import__(name)
        except BaseException as exc:  # the children import it themselves
            _say({"problem": f"importing {name}: {type(exc).__name__}: {exc}"})
    if len(os.listdir("/proc/self/task")) > 1:  # (a BLAS pool): forking is unsafe now
        _say({"problem": "a thread started while importing; the zygote exits"})
        return None
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes select() through wake_r
    while True:
        _reap()
        request = lines.next(block=False)
        if request is None:
            if lines.eof:  # the client is gone, or done with us
                return None
            try:
                select.select([0, wake_r], [], [])
            except InterruptedError:
                pass
            try:
                os.read(wake_r, 4096)
            except BlockingIOError:
                pass
            continue
        try:
            pid = os.fork()
        except OSError as exc:
            _say({"id": request["id"], "error": str(exc)})
            continue
        if pid == 0:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            os.close(wake_r)
            os.close(wake_w)
            return request
        _say({"id": request["id"], "pid": pid})


class _Lines:
    """JSON lines from fd 0, read without a buffer that select() cannot see."""

    def __init__(self):
        self.buffer = b""
        self.eof = False

    def next(self, block: bool) -> dict | None:
        while b"\n" not in self.buffer and not self.eof:
            if not block and not select.select([0], [], [], 0)[0]:
                return None
            data = os.read(0, 65536)
            self.eof = not data
            self.buffer += data
        if b"\n" not in self.buffer:
            return None
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)


def _reap() -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _say({"exit": pid, "code": os.waitstatus_to_exitcode(status)})


def _say(message: dict) -> None:
    data = json.dumps(message).encode() + b"\n"
    while data:
        data = data[os.write(1, data) :]


def _become(request: dict) -> None:
    """In a forked child: become ``request["args"]``, as Popen would have
    started it (new session, stdin from /dev/null, stdout and stderr
    appending to the output file), and run it."""
    os.setsid()
    fd = os.open(request["output"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    os.close(null)
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    if os.environ.get("PYTHONFAULTHANDLER"):
        import faulthandler

        faulthandler.enable(all_threads=True)  # onto the output file, now fd 2
    numpy_random = sys.modules.get("numpy.random")
    if numpy_random is not None:  # else every child would draw the same numbers
        numpy_random.seed()
    args = request["args"]
    if len(args) < 3 or args[1] != "-m":  # not `python -m module ...`: exec it
        os.execvpe(args[0], args, os.environ)
    import runpy

    sys.argv = [args[2], *args[3:]]
    runpy.run_module(args[2], run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # (children restore it below)
    _request = _serve()
    if _request is not None:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        _become(_request)
