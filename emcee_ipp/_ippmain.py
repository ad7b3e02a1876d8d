"""``python -m emcee_ipp._ippmain controller|engine ARGS``: ipyparallel's
controller or engine, for a cluster the pool starts itself, less three
waits on the way to the first map.

Runs in the controller's and the engines' processes (forked by the zygote,
or started afresh). ipyparallel 9's controller sleeps 0.25 s while it
starts, before it writes its connection file (``IPController.init_hub``),
and an engine started before that file exists looks for it every 0.1 s
(``IPEngine.init_engine``). Here the first sleep is skipped (nothing is
connected to the controller yet: no engine or client has its file) and the
second polls every 5 ms; the controller then writes its connection files
whole (a temporary file renamed), since engines polling that often read
half-written ones (32 engines on 2 cores, tests/test_faults.py). Third,
the controller finishes an engine's registration only when its heart
monitor, at its next beat, has seen the engine's heart answer: one or
two periods (``HEARTBEAT_MS``, 100 ms). For its first
:data:`QUICK_BEATS_S` the monitor beats every :data:`QUICK_BEAT_MS`
instead, while the first engines come up. Measured on
2 cores with 2 engines (benchmarks/bench_startup.py; benchmarks/RESULTS.md,
"Issue 22: zygote"). Every other sleep of theirs is left as it is.
"""

from __future__ import annotations

import json
import os
import sys
import time

HUB_SLEEP_S = 0.25  # IPController.init_hub's
URL_POLL_S = 0.1  # IPEngine.init_engine's, waiting for the connection file
FAST_URL_POLL_S = 0.005
QUICK_BEAT_MS = 10
QUICK_BEATS_S = 2.0


class _Clock:
    """Stands in for the ``time`` module of one ipyparallel module."""

    def __init__(self, skip: float, instead: float):
        self._skip, self._instead = skip, instead

    def __getattr__(self, name: str):
        return getattr(time, name)

    def sleep(self, seconds: float) -> None:
        time.sleep(self._instead if seconds == self._skip else seconds)


def _quick_first_beats() -> None:
    """Make ipyparallel's heart monitor beat every QUICK_BEAT_MS for its
    first QUICK_BEATS_S, then at its configured period. An engine is given
    up after as long without answering either way: the allowed misses are
    scaled by the same factor meanwhile. (The monitor runs in a process the
    controller forks: the change is inherited.)"""
    from ipyparallel.controller.heartmonitor import HeartMonitor
    from tornado import ioloop

    start = HeartMonitor.start

    def quick_start(self) -> None:
        start(self)
        factor = max(1, self.period // QUICK_BEAT_MS)
        steady, misses = self.caller, self.max_heartmonitor_misses
        steady.stop()
        self.max_heartmonitor_misses = misses * factor
        self.caller = ioloop.PeriodicCallback(self.beat, self.period // factor)
        self.caller.start()

        def settle() -> None:
            self.caller.stop()
            self.max_heartmonitor_misses = misses
            self.on_probation = {h: -(-n // factor) for h, n in self.on_probation.items()}
            self.caller = steady
            steady.start()

        self.loop.call_later(QUICK_BEATS_S, settle)

    HeartMonitor.start = quick_start


def _save_whole(self, fname: str, cdict: dict) -> None:
    """``IPController.save_connection_dict``, but the file appears whole,
    readable by its owner only from the start."""
    path = os.path.join(self.profile_dir.security_dir, fname)
    self.log.info("writing connection info to %s", path)
    part = f"{path}.{os.getpid()}.part"
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(cdict, indent=2))
    os.replace(part, path)


def main(argv: list[str]) -> None:
    role, args = argv[0], argv[1:]
    if role == "controller":
        from ipyparallel.controller import app

        app.time = _Clock(HUB_SLEEP_S, 0.0)
        app.IPController.save_connection_dict = _save_whole
        _quick_first_beats()
        sys.argv = ["ipcontroller", *args]
        app.main()
    elif role == "engine":
        from ipyparallel.engine import app

        app.time = _Clock(URL_POLL_S, FAST_URL_POLL_S)
        sys.argv = ["ipengine", *args]
        app.main()
    else:
        raise SystemExit(
            f"usage: python -m emcee_ipp._ippmain controller|engine ARGS (not {role!r})"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
