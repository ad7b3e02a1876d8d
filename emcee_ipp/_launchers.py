"""ipyparallel launchers that fork the pool's controller and engines from its zygote.

Runs on the client, in the thread of the cluster's event loop. They are
ipyparallel's local launchers but for how the process starts: the command
ipyparallel builds (``python -m ipyparallel.engine --profile-dir=... ...``)
is sent to the zygote (:mod:`emcee_ipp._zygote`), which forks a process
that has already imported it. ipyparallel still starts, registers, signals
and stops every engine; the zygote reports each exit code, and the launcher
passes it to ipyparallel's ``notify_stop`` as its Popen launchers do.

Without a running zygote (it died, or the pool was told not to use one),
they start the process as ipyparallel's own launchers do.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time

import psutil
from ipyparallel.cluster.launcher import (
    LocalControllerLauncher,
    LocalEngineLauncher,
    LocalEngineSetLauncher,
    LocalProcessLauncher,
)
from traitlets import Unicode

from . import _zygote

# zygote token -> the running zygote of a pool's cluster (launchers find it
# by the token in their config: ipyparallel builds them, not us)
ZYGOTES: dict[str, _zygote.Zygote] = {}


class _Forked(LocalProcessLauncher):
    """What the fork launchers share: start through the zygote if it runs."""

    zygote = Unicode("", config=True, help="token of the zygote to fork from (ZYGOTES)")
    _ended: threading.Event | None = None  # set once the zygote reports the exit
    _exit_code: int | None = None

    def start(self):
        zygote = ZYGOTES.get(self.zygote)
        if zygote is None or not zygote.alive():
            return super().start()
        try:
            pid = zygote.fork(
                self.args, self.get_env(), os.path.abspath(self.work_dir), self.output_file
            )
        except _zygote.ZygoteGone:
            return super().start()
        self.pid = pid
        try:
            self.process = psutil.Process(pid)
        except psutil.NoSuchProcess:  # ended already; its exit is reported below
            self.process = None
        self._ended = threading.Event()
        loop = self.loop  # (read here, in the loop's thread)
        self.notify_start(pid)
        zygote.on_exit(pid, lambda code: self._exited(loop, code))
        return pid

    def _exited(self, loop, code: int | None) -> None:
        """The zygote reaped our process (runs in the zygote's reader thread)."""
        data = dict(exit_code=code, pid=self.pid, identifier=self.identifier)
        self._exit_code = code
        assert self._ended is not None
        self._ended.set()
        if loop.asyncio_loop.is_closed():  # a *_sync call's loop, gone
            self.notify_stop(data)
        else:
            loop.add_callback(lambda: self.notify_stop(data))

    def poll(self):
        if self._ended is None:
            return super().poll()
        if not self._ended.is_set():
            return None
        return "unknown" if self._exit_code is None else self._exit_code

    def signal(self, sig):
        if self._ended is None:
            return super().signal(sig)
        if self.state == "running" and not self._ended.is_set() and self.process is not None:
            try:  # (psutil checks the pid is still our process's, not a reused one)
                self.process.send_signal(sig)
            except psutil.NoSuchProcess:  # ended meanwhile
                pass

    async def join(self, timeout=None):
        if self._ended is None:
            return await super().join(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._ended.is_set():
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"Process {self.pid} did not exit in {timeout} seconds.")
            await asyncio.sleep(0.01)


class ForkControllerLauncher(_Forked, LocalControllerLauncher):
    """ipyparallel's local controller launcher, forking from the zygote."""

    async def get_connection_info(self, timeout=None):
        """ipyparallel's, but looking for the connection files every 5 ms,
        not 0.1 s: the client connects as soon as the controller is ready."""
        paths = list(self.connection_files.values())
        deadline = time.monotonic() + (self.connection_info_timeout if timeout is None else timeout)
        while not all(os.path.exists(p) for p in paths):
            if time.monotonic() > deadline:
                break  # ipyparallel's raises the TimeoutError
            status = self.poll()
            if status is not None:
                raise RuntimeError(f"Controller stopped with {status} while waiting for {paths}")
            await asyncio.sleep(0.005)
        return await super().get_connection_info(timeout=0)


class ForkEngineLauncher(_Forked, LocalEngineLauncher):
    """ipyparallel's local engine launcher, forking from the zygote."""


class ForkEngineSetLauncher(LocalEngineSetLauncher):
    """ipyparallel's local engine-set launcher, its engines forked from the zygote."""

    launcher_class = ForkEngineLauncher
