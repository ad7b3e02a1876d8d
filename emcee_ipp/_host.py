"""Facts about the machine a process runs on, for both sides.

Runs on the client and on the engines. The direct channel compares them to
decide who may poll instead of sleeping: pollers must not take cores from
processes that compute on the same machine.
"""

from __future__ import annotations

import os
import socket


def usable_cores() -> int:
    """The number of CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def machine_id() -> str:
    """An id shared by every process on this machine's kernel.

    Linux's boot id is the same in every network namespace and container of
    one kernel (which share its cores), unlike IP addresses; elsewhere, the
    host name.
    """
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return socket.gethostname()
