"""Log-prob functions and engine-side probes used by the tests, and the
client-side helpers every test file shares (the serial-vs-pool chain runner,
a pinned chunk policy).

Module level, so the engines of a pool's own cluster import them by
reference (they get the client's sys.path, which pytest gave this folder);
engines of other clusters get them by value (``ship_modules="auto"``). So
this module imports nothing the engines lack, and not emcee (which engines
import only for run_split).
"""

from __future__ import annotations

import contextlib
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


def exits_far_out(x, bound=50.0):
    """``sleepy_gaussian``, but beyond ``bound`` the process exits (code 3),
    as a C extension that crashes on some parameters ends its engine."""
    if x[0] > bound:
        os._exit(3)
    return sleepy_gaussian(x)


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
        start = time.monotonic()  # one clock for every process on this machine (Linux)
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


class Hangs:
    """A log-prob that hangs (in Python, so an interrupt lands) where
    ``x[0] < 0``, in process ``pid`` only if given; a Gaussian elsewhere.

    On hanging it writes its pid to ``path``: the test's sign that the
    hanging chunk runs, and where. If interrupted (KeyboardInterrupt), it
    writes its pid to ``path + ".interrupted"`` before re-raising: the
    engine-side proof that the interrupt landed in this very call.
    """

    def __init__(self, path, pid=None):
        self.path, self.pid = str(path), pid

    def __call__(self, x):
        if x[0] >= 0 or (self.pid is not None and os.getpid() != self.pid):
            return gaussian(x)
        _write_atomically(self.path, str(os.getpid()))
        try:
            return python_hang(x)
        except KeyboardInterrupt:
            _write_atomically(self.path + ".interrupted", str(os.getpid()))
            raise


def _write_atomically(path, text):
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)  # a reader never sees a half-written file


def wait_for_file(path, timeout=30.0, alive=lambda: True) -> str:
    """The text of ``path`` once it exists (polled every 5 ms), or
    AssertionError after ``timeout`` s or once ``alive()`` turns false."""
    end = time.monotonic() + timeout
    while time.monotonic() < end and alive():
        try:
            with open(path) as f:
                return f.read()
        except FileNotFoundError:
            time.sleep(0.005)
    raise AssertionError(f"{path} did not appear within {timeout} s")


class SignalsItself:
    """``sleepy_gaussian`` (2 ms), except that in process ``pid`` the
    ``n``-th call first sends that process ``sig``: a SIGKILL or SIGSTOP
    that lands in the middle of a chunk, at a known point of the run."""

    def __init__(self, pid, sig, n=20):
        self.pid, self.sig, self.n, self.calls = pid, sig, n, 0

    def __call__(self, x):
        if os.getpid() == self.pid:
            self.calls += 1
            if self.calls == self.n:
                os.kill(self.pid, self.sig)
        return sleepy_gaussian(x, 2e-3)


def prints_a_lot(x, size=600_000):
    """Prints ``size`` characters on stdout (the letter ``chr(97 + x[0])``)
    and on stderr (upper case), then a newline on each: a Gaussian."""
    letter = chr(97 + int(x[0]))
    print(letter * size)
    print(letter.upper() * size, file=sys.stderr)
    return gaussian(x)


# -- client side: the serial-vs-pool chain runner ------------------------------


def run_chain(
    pool, log_prob, nsteps=40, *, nwalkers=16, ndim=3, p0=None, seed=1234, on_step=None, **kwargs
):
    """An emcee ``EnsembleSampler`` run of ``nsteps`` through ``pool`` (None:
    serially); returns the sampler.

    The sampler's random state is seeded with ``seed``; the start ``p0``
    defaults to ``RandomState(5)`` normal draws of shape ``(nwalkers, ndim)``.
    ``on_step(sampler)`` is called after every step (``sampler.iteration``
    steps done); a true return ends the run there. ``kwargs`` go to
    ``EnsembleSampler`` (args, kwargs, moves, parameter_names, ...).
    """
    import emcee  # here, not at the top: engines import this module

    sampler = emcee.EnsembleSampler(nwalkers, ndim, log_prob, pool=pool, **kwargs)
    sampler.random_state = np.random.RandomState(seed).get_state()
    if p0 is None:
        p0 = np.random.RandomState(5).normal(size=(nwalkers, ndim))
    if on_step is None:
        sampler.run_mcmc(p0, nsteps)  # (so run_mcmc(None, ...) continues it)
        return sampler
    for _ in sampler.sample(p0, iterations=nsteps):
        if on_step(sampler):
            break
    return sampler


def assert_identical(a, b, blobs=True):
    """Samplers ``a`` and ``b`` hold the same chain and log-probs, bit for
    bit, and (unless ``blobs`` is false: a blob naming the process that
    computed it differs by design) the same blobs."""
    assert a.iteration == b.iteration > 0
    assert np.array_equal(a.get_chain(), b.get_chain())
    assert np.array_equal(a.get_log_prob(), b.get_log_prob())
    if not blobs:
        return
    blobs_a, blobs_b = a.get_blobs(), b.get_blobs()
    if blobs_a is None:
        assert blobs_b is None
        return
    for name in blobs_a.dtype.names or [None]:
        assert np.array_equal(
            blobs_a[name] if name else blobs_a, blobs_b[name] if name else blobs_b
        )


def assert_chain_matches_serial(pool, log_prob, nsteps=40, *, blobs=True, on_step=None, **kwargs):
    """:func:`run_chain` through ``pool`` (``on_step`` may end it early),
    then serially for as many steps, with the same seeds; assert the two are
    identical (:func:`assert_identical`). Returns ``(serial, pooled)``."""
    pooled = run_chain(pool, log_prob, nsteps, on_step=on_step, **kwargs)
    serial = run_chain(None, log_prob, pooled.iteration, **kwargs)
    assert_identical(serial, pooled, blobs=blobs)
    return serial, pooled


# -- client side: the pool's chunk policy, pinned for one test -----------------


class FixedChunks:
    """A chunk policy that always cuts a map into ``k`` chunks; it keeps
    what the pool tells it of each map in ``recorded``, and learns nothing."""

    def __init__(self, k):
        self.k = k
        self.recorded = []

    def n_chunks(self, n_items, n_engines):
        return self.k

    def record(self, *args):
        self.recorded.append(args)


@contextlib.contextmanager
def chunk_policy(pool, policy):
    """Inside the block, ``pool`` (a session pool, say) cuts its maps with
    ``policy`` (a fresh ``ChunkPolicy()``, or :class:`FixedChunks`), whatever
    earlier tests taught its own; after it, its own policy is back, and has
    learnt nothing from the block's maps."""
    saved = pool._policy  # noqa: SLF001
    pool._policy, pool._unrecorded = policy, None  # noqa: SLF001 (no earlier map's cycle)
    try:
        yield policy
    finally:
        pool._policy, pool._unrecorded = saved, None  # noqa: SLF001


def engine_computes(pool, pid, timeout=10.0, chunks=None) -> bool:
    """Map (one chunk per engine, or ``chunks``) until engine process
    ``pid`` computes a share, at most ``timeout`` s: whether it did. (The
    pool leaves out an engine still owing a chunk it gave up, until its late
    reply comes: an engine left hanging never computes here.)"""
    x = np.zeros((8, 2))
    end = time.monotonic() + timeout
    with chunk_policy(pool, FixedChunks(chunks or pool.size)):
        while time.monotonic() < end:
            if pid in {r[1] for r in pool.map(slow_gaussian_with_pid, x)}:
                return True
    return False


def scipy_gaussian(x):
    """A Gaussian log-prob through ``scipy.stats``, imported when called."""
    import scipy.stats

    return float(scipy.stats.norm.logpdf(x).sum())


def alive(pid: int) -> bool:
    """Client side: whether process ``pid`` runs (a zombie, or one being
    reaped, does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False
