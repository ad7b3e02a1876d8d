"""Log-prob functions and engine-side probes used by the tests.

Module level, so the engines of a pool's own cluster import them by
reference (they get the client's sys.path, which pytest gave this folder);
engines of other clusters get them by value (``ship_modules="auto"``).
"""
from __future__ import annotations

import os
import sys
import time

import numpy as np

N_PICKLES = 0  # client side: times a CountingLogProb was pickled
N_UNPICKLES = 0  # engine side: times one was unpickled in this process
_ENGINE_VALUE = None


def gaussian(x):
    """An isotropic unit Gaussian, as a Python float."""
    return float(-0.5 * np.dot(x, x))


def gaussian_np(x):
    """The same, returning a numpy float64."""
    return -0.5 * np.dot(x, x)


def gaussian_with_blobs(x):
    """Log-prob plus two blobs: the sum of x and this engine's pid."""
    return -0.5 * float(np.dot(x, x)), float(np.sum(x)), os.getpid()


def gaussian_with_sum_blob(x):
    """Log-prob plus one float blob."""
    return -0.5 * float(np.dot(x, x)), float(np.sum(x))


def gaussian_named(p):
    """Log-prob taking emcee's dict of named parameters."""
    return -0.5 * (p["a"] ** 2 + p["b"] ** 2 + p["c"] ** 2)


def slow_gaussian_with_pid(x, delay=2e-3):
    """A costlier log-prob (sleeps ``delay`` s), with the engine pid as a blob."""
    time.sleep(delay)
    return -0.5 * float(np.dot(x, x)), os.getpid()


def gaussian_20ms(x):
    time.sleep(0.02)
    return gaussian(x)


def sleeps_if_positive(x, delay=0.02):
    """Costs ``delay`` s where x[0] > 0 and nothing elsewhere: uneven work."""
    if x[0] > 0:
        time.sleep(delay)
    return gaussian(x)


def slower_gaussian_with_pid(x):
    return slow_gaussian_with_pid(x, delay=5e-3)


def unpicklable_blob(x):
    """A log-prob whose blob cannot be pickled to travel back to the client."""
    import threading

    return float(-0.5 * np.dot(x, x)), threading.Lock()


def returns_int(x):
    return int(len(x))


def raises_on_negative(x):
    if x[0] < 0:
        raise ValueError(f"negative first parameter {x[0]}")
    return 0.0


def bimodal(x, separation=8.0):
    """Two well-separated unit Gaussians at +-separation/2 along every axis."""
    a = -0.5 * np.sum((x - separation / 2) ** 2)
    b = -0.5 * np.sum((x + separation / 2) ** 2)
    return float(np.logaddexp(a, b))


class CountingLogProb:
    """A Gaussian log-prob that counts how often it is pickled and unpickled."""

    def __init__(self, scale=1.0, data=None):
        self.scale = scale
        self.data = data

    def __call__(self, x):
        return float(-0.5 * np.dot(x, x) / self.scale)

    def __getstate__(self):
        global N_PICKLES
        N_PICKLES += 1
        return self.__dict__

    def __setstate__(self, state):
        global N_UNPICKLES
        N_UNPICKLES += 1
        self.__dict__.update(state)


class Offset:
    """``x -> sum(x) + k``: distinct objects give distinct results."""

    def __init__(self, k):
        self.k = k

    def __call__(self, x):
        return float(np.sum(x) + self.k)


def n_unpickles() -> int:
    return N_UNPICKLES


def set_engine_value(value, pid_file=None):
    """An initializer: store ``value`` in this engine's process."""
    global _ENGINE_VALUE
    _ENGINE_VALUE = value


def read_engine_value(x):
    return _ENGINE_VALUE


def get_engine_value():
    return _ENGINE_VALUE


def gaussian_shifted(x, shift, scale=1.0):
    """A log-prob taking a positional arg and a keyword arg."""
    return float(-0.5 * np.sum(((np.asarray(x) - shift) / scale) ** 2))


def cached_function_types():
    """Type names of the functions this engine's cache holds."""
    from emcee_ipp import _engine

    return [type(f).__name__ for f in _engine._CACHE.values()]


def has_module(name):
    """Whether this process has imported ``name`` (run on an engine)."""
    import sys

    return name in sys.modules


def failing_initializer():
    raise RuntimeError("initializer failed on purpose")


def sleepy_gaussian(x, delay=5e-4):
    """A Gaussian log-prob slow enough to kill an engine in the middle of a run."""
    time.sleep(delay)
    return float(-0.5 * np.dot(x, x))


class CreatesFile:
    """Unpickling this creates ``path``: what a forged message would try."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def point_direct_server_at(urls):
    """Make this engine advertise ``urls`` for its direct channel (dead addresses)."""
    from emcee_ipp.transport import _direct_engine

    old = _direct_engine.serve()
    _direct_engine._SERVER["urls"] = urls
    return old


def direct_rejected():
    from emcee_ipp.transport import _direct_engine

    return _direct_engine.rejected()


def python_hang(x, seconds=60.0):
    """A log-prob that hangs in Python code (interruptible between sleeps)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(0.005)
    return 0.0


def hang_if_negative(x):
    if x[0] < 0:
        return python_hang(x)
    return gaussian(x)


def returns_nan(x):
    return float("nan") if x[0] > 0 else gaussian(x)


def returns_string(x):
    return "not a number"


def process_usage():
    """(RSS bytes, open fds) of this process."""
    import resource  # noqa: F401

    with open("/proc/self/statm") as f:
        rss_pages = int(f.read().split()[1])
    return rss_pages * os.sysconf("SC_PAGE_SIZE"), len(os.listdir("/proc/self/fd"))


def mpi_rank_and_size():
    from mpi4py import MPI

    return MPI.COMM_WORLD.Get_rank(), MPI.COMM_WORLD.Get_size()


def slurm_job_id():
    return os.environ.get("SLURM_JOB_ID")


class StampedLogProb:
    """A log-prob carrying ``data`` (say, 40 MB) that returns its value, the
    pid that ran it and when it started; sleeps ``delay`` s in process ``pid``."""

    def __init__(self, data, pid, delay):
        self.data, self.pid, self.delay = data, pid, delay

    def __call__(self, x):
        start = time.time()  # one clock for every process on this machine
        if os.getpid() == self.pid:
            time.sleep(self.delay)
        return -0.5 * float(np.dot(x, x)), os.getpid(), start


def slow_except_in(x, pid, delay=0.2):
    """The log-prob and the pid that ran it; sleeps ``delay`` s unless run by process ``pid``."""
    if os.getpid() != pid:
        time.sleep(delay)
    return -0.5 * float(np.dot(x, x)), os.getpid()


def raises_far_else_slow(x):
    """Raises far out (x[0] < -100), else a Gaussian that sleeps 2 ms."""
    if x[0] < -100:
        raise ValueError(f"far out: {x[0]}")
    time.sleep(2e-3)
    return gaussian(x)


def sleeps_in_c_if_negative(x, seconds=4.0):
    """Blocks in C (time.sleep) where x[0] < 0: no interrupt reaches a server thread there."""
    if x[0] < 0:
        time.sleep(seconds)
    return gaussian(x)


def chatty(x):
    """Prints a line per walker on stdout and stderr; a Gaussian."""
    print(f"walker {x[0]:.1f}")
    print(f"note {x[0]:.1f}", file=sys.stderr)
    return gaussian(x)


def chatty_raises_on_positive(x):
    print(f"walker {x[0]:.1f}")
    if x[0] > 0:
        raise ValueError("positive")
    return gaussian(x)


def raises_if_positive_hangs_if_negative(x):
    """Raises at once where x[0] > 0; spins in Python where x[0] < 0."""
    if x[0] > 0:
        raise ValueError("positive")
    return hang_if_negative(x)


class WaitsFor:
    """``i -> i * 10``, but item ``index`` first waits (at most 60 s) for
    ``path`` to exist: a chunk that finishes only when the test says so."""

    def __init__(self, path, index):
        self.path, self.index = str(path), index

    def __call__(self, i):
        if i == self.index:
            end = time.monotonic() + 60
            while not os.path.exists(self.path) and time.monotonic() < end:
                time.sleep(0.005)
        return i * 10


def _load_only_in(pid):
    if os.getpid() != pid:
        raise RuntimeError(f"this item loads only in process {pid}")
    return LoadsOnlyIn(pid)


class LoadsOnlyIn:
    """An item that unpickles only in process ``pid`` (the client)."""

    def __init__(self, pid):
        self.pid = pid

    def __reduce__(self):
        return _load_only_in, (self.pid,)


class CountingModel:
    """A model whose bound method is the log-prob; counts its pickles."""

    pickles = 0

    def __init__(self, scale):
        self.scale = scale

    def logp(self, x):
        return float(-0.5 * np.dot(x, x) / self.scale)

    def __getstate__(self):
        CountingModel.pickles += 1
        return self.__dict__


def remotely(view, fn, *args):
    """``fn(*args)`` on the engines of an ipyparallel ``view``, sent as a pool
    sends user code to engines that cannot import it: by value, into the
    namespace ``fn``'s module shares there (so it sees what an initializer
    the pool shipped set). For clusters the pool did not start."""
    import cloudpickle

    from emcee_ipp._shipping import Shipper, _Call

    payload = Shipper([fn.__module__], lambda names: ()).dumps(_Call(fn, args))
    return view.apply_sync(cloudpickle.loads, payload)


class RaisesOnOneWaitsOnZero(WaitsFor):
    """Item 1 raises ValueError at once; item 0 waits for ``path``."""

    def __init__(self, path):
        super().__init__(path, 0)

    def __call__(self, i):
        if i == 1:
            raise ValueError("item one")
        return super().__call__(i)
