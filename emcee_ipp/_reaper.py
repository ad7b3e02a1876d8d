"""A watchdog that stops a pool's own cluster when the pool's process dies.

Two processes run this file::

    owner (the pool's process)                 reaper (this file, run as a script)
    --------------------------                 -----------------------------------
    Reaper.start()  -- spawns, stdin pipe -->  reads lines until EOF
    Reaper.disarm() -- "disarm\\n", close -->   exits, touching nothing
    (owner dies: SIGKILL, OOM, kernel restart)
                    -- pipe closes (EOF) -->   kills every process carrying the
                    or owner pid disappears     pool's marker, then exits

ipyparallel starts the controller and the engines in sessions of their own,
so they outlive their owner. Every process the pool's cluster starts inherits
``EMCEE_IPP_OWNER=<random token>`` in its environment; the reaper ends exactly
the processes whose ``/proc/<pid>/environ`` carries that token: the controller,
its schedulers, the engines and their nannies, never anything else. It also
polls the owner's pid, because a process forked by the owner (a
multiprocessing worker) keeps the pipe open after the owner is gone.

This file imports only the standard library, so the reaper starts in ~30 ms.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time

MARKER = "EMCEE_IPP_OWNER"
POLL_S = 0.5  # how often the reaper checks that the owner is alive
GRACE_S = 2.0  # SIGTERM first, SIGKILL what is left after this


# -- owner side ----------------------------------------------------------------


class Reaper:
    """Owner-side handle of the watchdog process (runs on the client)."""

    def __init__(self, token: str):
        self.token = token
        self._proc = subprocess.Popen(
            [
                sys.executable,
                "-I",
                os.path.abspath(__file__),
                token,
                str(os.getpid()),
                str(_start_time(os.getpid())),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C or a kill of the owner's group spares it
        )

    @property
    def pid(self) -> int:
        return self._proc.pid

    def disarm(self) -> None:
        """The owner stopped its cluster itself: let the reaper exit quietly."""
        if self._proc.poll() is None:
            stdin = self._proc.stdin
            assert stdin is not None  # Popen(stdin=PIPE)
            try:
                stdin.write(b"disarm\n")
                stdin.close()
            except (BrokenPipeError, ValueError):
                pass
            wait_or_kill(self._proc)


def wait_or_kill(proc: subprocess.Popen, timeout: float = 5.0) -> None:
    """Wait for a helper process told to exit (the reaper, the zygote);
    kill it if it has not within ``timeout`` s."""
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# -- shared --------------------------------------------------------------------


def marked_pids(token: str, var: str = MARKER) -> list[int]:
    """Pids of the live processes whose environment has ``var=token`` (Linux)."""
    needle = f"{var}={token}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if needle in f.read().split(b"\0"):
                    found.append(int(entry))
        except OSError:  # gone, or not ours to read
            continue
    return found


def _start_time(pid: int) -> int:
    """Kernel start time of ``pid`` (so a recycled pid is never mistaken)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return -1


# -- reaper side ---------------------------------------------------------------


def _owner_alive(pid: int, start: int) -> bool:
    return _start_time(pid) == start if start >= 0 else _pid_exists(pid)


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reap(token: str) -> None:
    """SIGTERM every marked process, then SIGKILL what is left after GRACE_S."""
    for sig, wait in ((signal.SIGTERM, GRACE_S), (signal.SIGKILL, GRACE_S)):
        pids = marked_pids(token)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and marked_pids(token):
            time.sleep(0.05)


def _watch(token: str, owner_pid: int, owner_start: int) -> None:
    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    stdin = sys.stdin.buffer
    while True:
        ready, _, _ = select.select([stdin], [], [], POLL_S)
        if ready:
            line = stdin.readline()
            if line.strip() == b"disarm":
                return
            if not line:  # EOF: the owner is gone
                break
        elif not _owner_alive(owner_pid, owner_start):
            break
    reap(token)


if __name__ == "__main__":
    _watch(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
