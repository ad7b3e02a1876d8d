"""Does a long emcee run survive engines being killed under it, and what does it cost?

One emcee run (``EnsembleSampler``, 36 walkers, a log-prob that spins ~2 ms)
on ``IPyParallelPool(4)``, the pool's own local cluster, for ``--minutes``.
The run alternates quiet and chaos phases of ``--phase`` seconds each. In a
chaos phase a thread of this process SIGKILLs a random engine of the pool
about every ``--every`` seconds (intervals drawn from a seeded RNG). Once,
halfway through the run, the main thread maps the log-prob over the current
walkers with one walker moved where the log-prob calls ``os._exit(3)``: the
pool must name that walker (``EngineCrashError``) and carry on.

Answers, side by side in one process run:

- kills survived: each killed engine is dropped from ``pool.size`` and
  replaced, and the run goes on; time from kill to ``pool.size`` back to 4;
- throughput lost: steps/s in the chaos phases against the quiet phases of
  the same run (interleaved, so the machine's drift hits both alike);
- the chain: bit-identical to serial emcee with the same random state, for
  as many steps (SHA-256 of every step's positions and log-probs; serial
  runs a copy of the log-prob without its spin, which changes no value);
- the client's open file descriptors and RSS over the run: start, end, max
  and slope (a leak per kill would show as a slope).

Figures go to stdout and ``benchmarks/results/chaos.json`` (plot:
``chaos.png``). ``tests/test_chaos.py`` runs a 60 s version.

    python benchmarks/bench_chaos.py [--minutes 5] [--every 3] [--phase 10]
                                     [--transport direct|ipp] [--seed 0]
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import logging
import os
import platform
import signal
import statistics
import sys
import threading
import time

import numpy as np

from emcee_ipp._reaper import MARKER

log = logging.getLogger("bench_chaos")
HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "results")

ENGINES = 4
NWALKERS, NDIM = 36, 3
COST_S = 2e-3  # log-prob cost: 36 walkers x 2 ms on 4 engines, ~40 steps/s on 2 cores
POISON = 1e6  # theta[0] at or above it: the log-prob kills its engine
CRASH_WALKER = 5  # the walker moved there, in the one crash map
EXIT_CODE = 3
SAMPLE_S = 0.25  # how often the client's fds and RSS are read
TICK_S = 0.01  # the killer thread's look at the schedule and at pool.size
RECOVER_S = 60.0  # at most this long for the pool to be whole after a chaos phase


class Model:
    """The log-prob: ``-0.5 * |theta|^2`` after spinning ``cost_s`` seconds
    of CPU, and ``os._exit(3)`` where ``theta[0] >= POISON`` (a C extension
    that dies on some parameters). Runs on the engines (serially: here)."""

    def __init__(self, cost_s: float):
        self.cost_s = cost_s

    def __call__(self, theta) -> float:
        if theta[0] >= POISON:
            os._exit(EXIT_CODE)
        end = time.perf_counter() + self.cost_s
        while time.perf_counter() < end:
            pass
        return -0.5 * float(np.dot(theta, theta))


def kill_schedule(seed: int, every: float, phase_s: float, n_chaos: int) -> list[list[float]]:
    """Kill times, in seconds from the start of each of ``n_chaos`` chaos
    phases: intervals uniform in ``[every / 2, 3 * every / 2]``, from one
    RNG seeded with ``seed``, within ``phase_s``."""
    rng = np.random.default_rng(seed)
    phases = []
    for _ in range(n_chaos):
        t, offsets = 0.0, []
        while True:
            t += rng.uniform(0.5 * every, 1.5 * every)
            if t >= phase_s:
                break
            offsets.append(t)
        phases.append(offsets)
    return phases


def _usage() -> tuple[int, float]:
    """(open file descriptors, RSS in MiB) of this process."""
    with open("/proc/self/statm") as f:
        rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return len(os.listdir("/proc/self/fd")), rss / 2**20


def _our_engine(pid: int, token: str) -> bool:
    """Whether ``pid`` is a live process of the pool's own cluster, whose
    environment carries the pool's reaper ``token`` (a pid of a dead engine
    may be reused by any process: never kill that). The engines are children
    of the pool's zygote, or of this process when it has none."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        with open(f"/proc/{pid}/environ", "rb") as f:
            environ = f.read().split(b"\0")
    except OSError:
        return False
    return state not in "ZX" and f"{MARKER}={token}".encode() in environ


class Kill:
    """One SIGKILL and what the pool made of it (times from the run's start)."""

    __slots__ = ("at", "pid", "engine", "dropped", "back")

    def __init__(self, at: float, pid: int, engine: int):
        self.at, self.pid, self.engine = at, pid, engine
        self.dropped = None  # when pool.size stopped counting the victim
        self.back = None  # when pool.size was back to ENGINES, the victim not among them

    def record(self) -> dict:
        return {
            "at_s": self.at,
            "pid": self.pid,
            "engine": self.engine,
            "dropped_after_s": None if self.dropped is None else self.dropped - self.at,
            "replaced_after_s": None if self.back is None else self.back - self.at,
        }


class Killer(threading.Thread):
    """Kills the pool's engines on a schedule while a chaos phase is armed,
    and watches ``pool.size``: when it stops counting each victim, and when
    it is back to :data:`ENGINES` without it. Runs in its own thread, beside
    the sampler's maps in the main thread (``pool.size`` only reads)."""

    def __init__(self, pool, t0: float, seed: int):
        super().__init__(name="bench_chaos killer", daemon=True)
        self.pool, self.t0 = pool, t0
        self.token = pool._owned.token  # noqa: SLF001 (its processes carry it)
        self.rng = np.random.default_rng(seed + 1)  # which engine dies
        self.kills: list[Kill] = []
        self.sizes: list[tuple[float, int]] = []  # (time, pool.size) at each change
        self.errors: list[str] = []
        self.recounted: set[int] = set()  # killed engines pool.size counted again
        self._due: list[float] = []  # absolute times of this phase's kills to come
        self._lock = threading.Lock()
        self._halt = threading.Event()

    def arm(self, offsets: list[float]) -> None:
        """Start a chaos phase now: kill at these offsets (seconds) from now."""
        now = time.monotonic()
        with self._lock:
            self._due = [now + t for t in offsets]

    def settled(self) -> bool:
        """Whether every kill due is done and the pool has replaced them all."""
        with self._lock:
            return not self._due and all(k.back is not None for k in self.kills)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5.0)

    def run(self) -> None:
        while not self._halt.wait(TICK_S):
            try:
                self._tick()
            except Exception as exc:  # noted, and the run's checks fail on it
                self.errors.append(repr(exc))

    def _tick(self) -> None:
        # The engine ids pool.size counts (it is their number): a killed
        # engine leaves them once the pool knows it is dead.
        counted = self.pool._registered()  # noqa: SLF001
        now = time.monotonic()
        if not self.sizes or self.sizes[-1][1] != len(counted):
            self.sizes.append((now - self.t0, len(counted)))
        with self._lock:
            for kill in self.kills:
                if kill.engine in counted:
                    if kill.dropped is not None:  # dead, and counted again
                        self.recounted.add(kill.engine)
                    continue
                if kill.dropped is None:
                    kill.dropped = now - self.t0
                if kill.back is None and len(counted) == ENGINES:
                    kill.back = now - self.t0
            if self._due and now >= self._due[0] and self._kill_one(counted, now):
                self._due.pop(0)

    def _kill_one(self, counted: list[int], now: float) -> bool:
        """SIGKILL a random engine the pool counts; False if none can be
        killed now (all are being replaced): it is tried again next tick."""
        killed = {k.pid for k in self.kills}
        pids = dict(self.pool.engine_pids)  # (a copy: the main thread adds to it)
        victims = sorted(
            (e, p)
            for e, p in pids.items()
            if e in counted and p not in killed and _our_engine(p, self.token)
        )
        if not victims:
            return False
        engine, pid = victims[self.rng.integers(len(victims))]
        os.kill(pid, signal.SIGKILL)
        log.info("killed engine %s (pid %s); the pool counts %s", engine, pid, counted)
        self.kills.append(Kill(now - self.t0, pid, engine))
        return True


class ChainHash:
    """SHA-256 of every step's positions and log-probs, in order; the
    digest every ``block`` steps too, to find where two chains part."""

    def __init__(self, block: int = 500):
        self.sha = hashlib.sha256()
        self.steps = 0
        self.block = block
        self.blocks: list[str] = []

    def add(self, state) -> None:
        self.sha.update(np.ascontiguousarray(state.coords).tobytes())
        self.sha.update(np.ascontiguousarray(state.log_prob).tobytes())
        self.steps += 1
        if self.steps % self.block == 0:
            self.blocks.append(self.sha.hexdigest())


def _sampler(model, pool, seed):
    import emcee

    sampler = emcee.EnsembleSampler(NWALKERS, NDIM, model, pool=pool)
    sampler.random_state = np.random.RandomState(seed).get_state()
    return sampler


def _start(seed: int) -> np.ndarray:
    return np.random.RandomState(seed + 5).normal(size=(NWALKERS, NDIM))


def serial_chain(steps: int, seed: int) -> ChainHash:
    """Serial emcee, same start and random state, for ``steps`` steps."""
    chain = ChainHash()
    sampler = _sampler(Model(0.0), None, seed)  # same values, no spin
    for state in sampler.sample(_start(seed), iterations=steps, store=False):
        chain.add(state)
    return chain


def _crash_map(pool, model, coords) -> dict:
    """One map of ``model`` over ``coords`` with :data:`CRASH_WALKER` moved
    where it kills its engine: the error must name it."""
    from emcee_ipp import EngineCrashError

    x = np.array(coords, dtype=float)
    x[CRASH_WALKER, 0] = POISON
    t0 = time.monotonic()
    try:
        pool.map(model, x)
    except EngineCrashError as exc:
        return {
            "named_s": time.monotonic() - t0,
            "walker_params": x[CRASH_WALKER].tolist(),
            "named_params": np.asarray(exc.params).tolist(),
            "exitcode": exc.exitcode,
            "expected_exitcode": EXIT_CODE,
            "engine_id": exc.engine_id,
            "message": str(exc).splitlines()[0],
        }
    return {
        "named_s": None,
        "walker_params": x[CRASH_WALKER].tolist(),
        "named_params": None,
        "exitcode": None,
        "expected_exitcode": EXIT_CODE,
        "message": "the map returned: no EngineCrashError",
    }


def _slope_per_min(samples: list[tuple[float, int, float]], column: int) -> float:
    t = np.array([s[0] for s in samples])
    y = np.array([s[column] for s in samples], dtype=float)
    if len(t) < 2 or np.ptp(t) == 0:
        return 0.0
    return float(np.polyfit(t / 60.0, y, 1)[0])


def _summary(values: list) -> dict:
    """Median, max and min of the values that are not None."""
    values = [v for v in values if v is not None]
    if not values:
        return {"n": 0, "median": None, "max": None, "min": None}
    return {
        "n": len(values),
        "median": statistics.median(values),
        "max": max(values),
        "min": min(values),
    }


def run(
    minutes: float = 5.0,
    every: float = 3.0,
    phase_s: float = 10.0,
    transport: str = "direct",
    seed: int = 0,
    cost_s: float = COST_S,
) -> dict:
    """The chaos run; returns its figures (what ``chaos.json`` holds).

    Parameters
    ----------
    minutes : float
        Length of the measured run (quiet and chaos phases), in minutes.
    every : float
        Mean seconds between two kills in a chaos phase.
    phase_s : float
        Length of each quiet and each chaos phase, in seconds. A chaos phase
        also lasts until the pool has replaced every engine killed in it.
    transport : {"direct", "ipp"}
        The pool's transport.
    seed : int
        Seeds the kill schedule, the choice of victims, and the sampler.
    cost_s : float
        Seconds each log-prob call spins on its engine.

    Returns
    -------
    dict
        Kills, throughput, the crash walker, chain digests (pool and
        serial), the client's fds and RSS, and ``error``: what ended the run
        early (a map that raised), else None.
    """
    config = {
        "minutes": minutes,
        "every_s": every,
        "phase_s": phase_s,
        "transport": transport,
        "seed": seed,
        "engines": ENGINES,
        "nwalkers": NWALKERS,
        "ndim": NDIM,
        "cost_ms": cost_s * 1e3,
    }
    return _ChaosRun(config).run()


class _ChaosRun:
    """One run of :func:`run`: the pool's side, then serial's, then the figures."""

    def __init__(self, config: dict):
        self.config = config
        self.n_pairs = max(1, round(config["minutes"] * 60 / (2 * config["phase_s"])))
        self.schedule = kill_schedule(
            config["seed"], config["every_s"], config["phase_s"], self.n_pairs
        )
        self.model = Model(config["cost_ms"] * 1e-3)
        self.chain = ChainHash()
        self.usage: list[tuple[float, int, float]] = []  # (seconds, fds, RSS MiB)
        self.phases: list[dict] = []
        self.per_second: dict[int, int] = {}  # whole second of the run -> steps finished in it
        self.crash = None
        self.error = None  # what ended the run early
        self.engines_at_end = None
        self.killer = None

    def run(self) -> dict:
        from emcee_ipp import EmceeIppError, IPyParallelPool

        with IPyParallelPool(ENGINES, transport=self.config["transport"], timeout=60.0) as pool:
            sampler = _sampler(self.model, pool, self.config["seed"])
            steps = sampler.sample(_start(self.config["seed"]), iterations=None, store=False)
            warm = time.monotonic() + 3.0  # engines unpickle the log-prob; not measured
            while time.monotonic() < warm or self.chain.steps < 20:
                self.state = next(steps)
                self.chain.add(self.state)
            self.t0 = time.monotonic()
            self.killer = Killer(pool, self.t0, self.config["seed"])
            self.killer.start()
            self.usage.append((0.0, *_usage()))
            try:
                for i in range(2 * self.n_pairs):
                    if not self._phase(pool, steps, "chaos" if i % 2 else "quiet", i // 2):
                        break
            except EmceeIppError as exc:  # a library failure is a result, not a crash
                self.error = f"{type(exc).__name__}: {exc}"
                log.error("the run ended early: %s", self.error)
            finally:
                self.killer.stop()
            whole = time.monotonic() + RECOVER_S
            while pool.size != ENGINES and time.monotonic() < whole:
                time.sleep(0.05)
            self.engines_at_end = pool.size
            self.usage.append((time.monotonic() - self.t0, *_usage()))
        self.serial = serial_chain(self.chain.steps, self.config["seed"])
        return self._report()

    def _phase(self, pool, steps, kind: str, pair: int) -> bool:
        """Step through one phase; False if the pool did not recover from it."""
        start, first_step = time.monotonic(), self.chain.steps
        end = start + self.config["phase_s"]
        crash_at = None
        if kind == "chaos":
            self.killer.arm(self.schedule[pair])
            if pair == self.n_pairs // 2:  # the crash walker, once, halfway through
                crash_at = start + self.config["phase_s"] / 2
        crash_s, recovered = 0.0, True
        while True:
            now = time.monotonic()
            if now >= end and (kind == "quiet" or self.killer.settled()):
                break
            if now > end + RECOVER_S:
                recovered = False
                self.error = (
                    f"the pool was not back to {ENGINES} engines {RECOVER_S} s after a chaos phase"
                )
                break
            if crash_at is not None and now >= crash_at:
                self.crash = _crash_map(pool, self.model, self.state.coords)
                self.crash["at_s"] = now - self.t0
                crash_s, crash_at = time.monotonic() - now, None
            self.state = next(steps)
            self.chain.add(self.state)
            done = time.monotonic() - self.t0
            self.per_second[int(done)] = self.per_second.get(int(done), 0) + 1
            if done - self.usage[-1][0] >= SAMPLE_S:
                self.usage.append((done, *_usage()))
        seconds = time.monotonic() - start
        n = self.chain.steps - first_step
        self.phases.append(
            {
                "kind": kind,
                "start_s": start - self.t0,
                "seconds": seconds,
                "crash_map_s": crash_s,
                "steps": n,
                "steps_per_s": n / (seconds - crash_s),
            }
        )
        return recovered

    def _report(self) -> dict:
        kills = [k.record() for k in self.killer.kills]
        quiet = [p for p in self.phases if p["kind"] == "quiet"]
        chaos = [p for p in self.phases if p["kind"] == "chaos"]
        quiet_rate, chaos_rate = _rate(quiet), _rate(chaos)
        fds, rss = [u[1] for u in self.usage], [u[2] for u in self.usage]
        chain, serial = self.chain, self.serial
        return {
            "question": __doc__.splitlines()[0],
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
            "machine": {"cores": os.cpu_count(), "python": platform.python_version()},
            "config": self.config,
            "error": self.error,
            "killer_errors": self.killer.errors,
            "killed_engines_counted_again": sorted(self.killer.recounted),
            "largest_pool_size": max(n for _, n in self.killer.sizes),
            "engines_at_end": self.engines_at_end,
            "kills": {
                "scheduled": sum(len(s) for s in self.schedule),
                "done": len(kills),
                "survived": sum(k["replaced_after_s"] is not None for k in kills),
                "dropped_from_size_s": _summary([k["dropped_after_s"] for k in kills]),
                "replaced_s": _summary([k["replaced_after_s"] for k in kills]),
                "list": kills,
            },
            "throughput": {
                "quiet_steps_per_s": quiet_rate,
                "chaos_steps_per_s": chaos_rate,
                "chaos_over_quiet": chaos_rate / quiet_rate if quiet_rate and chaos_rate else None,
                "lost_fraction": 1 - chaos_rate / quiet_rate if quiet_rate and chaos_rate else None,
                "pair_ratios": [c["steps_per_s"] / q["steps_per_s"] for q, c in zip(quiet, chaos)],
                "phases": self.phases,
                "steps_per_second_of_run": [
                    self.per_second.get(s, 0) for s in range(int(self.usage[-1][0]) + 1)
                ],
            },
            "crash": self.crash,
            "chain": {
                "steps": chain.steps,
                "pool_sha256": chain.sha.hexdigest(),
                "serial_sha256": serial.sha.hexdigest(),
                "first_differing_block": next(
                    (i for i, (a, b) in enumerate(zip(chain.blocks, serial.blocks)) if a != b), None
                ),
                "block_steps": chain.block,
            },
            "client": {
                "fd": {
                    "start": fds[0],
                    "end": fds[-1],
                    "max": max(fds),
                    "slope_per_min": _slope_per_min(self.usage, 1),
                },
                "rss_mib": {
                    "start": rss[0],
                    "end": rss[-1],
                    "max": max(rss),
                    "slope_per_min": _slope_per_min(self.usage, 2),
                },
                "samples": [list(u) for u in self.usage[:: max(1, len(self.usage) // 400)]]
                + [list(self.usage[-1])],
            },
            "pool_size": [list(s) for s in self.killer.sizes],
        }


def _rate(phases: list[dict]) -> float | None:
    """Steps per second over these phases, less their crash map's time."""
    seconds = sum(p["seconds"] - p["crash_map_s"] for p in phases)
    return sum(p["steps"] for p in phases) / seconds if seconds else None


def show(r: dict) -> None:
    """Print the figures of :func:`run`."""
    c, k, t, cl = r["config"], r["kills"], r["throughput"], r["client"]
    print(
        f"{c['minutes']} min on IPyParallelPool({c['engines']}), transport {c['transport']}, "
        f"{c['nwalkers']} walkers, {c['cost_ms']:.1f} ms log-prob, a kill every "
        f"~{c['every_s']} s in {c['phase_s']} s chaos phases between quiet ones"
    )
    rs, ds = k["replaced_s"], k["dropped_from_size_s"]
    print(f"  kills survived      {k['survived']} of {k['done']} ({k['scheduled']} scheduled)")
    if rs["n"]:
        print(f"  kill to size back   median {rs['median']:.2f} s, max {rs['max']:.2f} s")
        print(f"  kill to size drop   median {ds['median']:.2f} s, max {ds['max']:.2f} s")
    if t["chaos_over_quiet"] is not None:
        print(
            f"  steps/s             quiet {t['quiet_steps_per_s']:.1f}, chaos "
            f"{t['chaos_steps_per_s']:.1f}: {t['chaos_over_quiet']:.2f} of quiet "
            f"({100 * t['lost_fraction']:.0f}% lost)"
        )
    cr = r["crash"]
    if cr is not None:
        print(
            f"  crash walker        {'named' if cr['named_s'] is not None else 'NOT named'}"
            + (f" in {cr['named_s']:.2f} s, exit code {cr['exitcode']}" if cr["named_s"] else "")
        )
    ch = r["chain"]
    same = ch["pool_sha256"] == ch["serial_sha256"]
    print(f"  chain vs serial     {ch['steps']} steps, {'bit-identical' if same else 'DIFFERENT'}")
    for name, unit in (("fd", ""), ("rss_mib", " MiB")):
        u = cl[name]
        print(
            f"  client {name:<12} start {u['start']:.1f}{unit}, end {u['end']:.1f}{unit}, "
            f"max {u['max']:.1f}{unit}, slope {u['slope_per_min']:+.2f}{unit}/min"
        )
    print(f"  engines at end      {r['engines_at_end']}")
    if r["error"]:
        print(f"  RUN ENDED EARLY     {r['error']}")


def plot(r: dict, path: str) -> None:
    """Steps/s, pool.size and the client's fds and RSS over the run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 1, figsize=(9, 7), sharex=True)
    rate = r["throughput"]["steps_per_second_of_run"]
    axes[0].step(np.arange(len(rate)), rate, where="post", color="k", lw=0.8)
    axes[0].set_ylabel("steps/s")
    size = np.array(r["pool_size"] + [[r["client"]["samples"][-1][0], r["pool_size"][-1][1]]])
    axes[1].step(size[:, 0], size[:, 1], where="post", color="C0")
    axes[1].set_ylabel("pool.size")
    axes[1].set_ylim(0, ENGINES + 0.5)
    samples = np.array(r["client"]["samples"])
    axes[2].plot(samples[:, 0], samples[:, 2], color="C1")
    axes[2].set_ylabel("client RSS (MiB)", color="C1")
    fd_axis = axes[2].twinx()
    fd_axis.plot(samples[:, 0], samples[:, 1], color="C2")
    fd_axis.set_ylabel("client fds", color="C2")
    axes[2].set_xlabel("seconds")
    for ax in axes:
        for p in r["throughput"]["phases"]:
            if p["kind"] == "chaos":
                ax.axvspan(p["start_s"], p["start_s"] + p["seconds"], color="r", alpha=0.08, lw=0)
    for kill in r["kills"]["list"]:
        axes[1].axvline(kill["at_s"], color="r", lw=0.5)
    if r["crash"] is not None:
        axes[1].annotate(
            "crash walker",
            (r["crash"]["at_s"], 0.3),
            xytext=(4, 0),
            textcoords="offset points",
            fontsize=8,
            color="C3",
        )
    c = r["config"]
    axes[0].set_title(
        f"IPyParallelPool({c['engines']}, transport={c['transport']!r}): "
        f"engines SIGKILLed in the shaded phases"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--every", type=float, default=3.0, help="mean seconds between kills")
    parser.add_argument("--phase", type=float, default=10.0, help="seconds per quiet/chaos phase")
    parser.add_argument("--transport", choices=["direct", "ipp"], default="direct")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cost-ms", type=float, default=COST_S * 1e3)
    parser.add_argument("--out", default=os.path.join(OUT, "chaos.json"))
    parser.add_argument(
        "--plot", default=None, help="PNG path (default: beside --out); 'none' for no plot"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(relativeCreated)9.0f ms %(message)s")
    result = run(
        args.minutes, args.every, args.phase, args.transport, args.seed, args.cost_ms * 1e-3
    )
    show(result)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    png = args.plot or os.path.splitext(args.out)[0] + ".png"
    if png != "none":
        plot(result, png)


if __name__ == "__main__":
    main()
