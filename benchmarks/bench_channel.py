"""What the direct channel's Unix socket and its non-blocking sends are worth.

1. A 600-byte round trip between two processes, both blocking in recv, over
   a Unix socket and over TCP loopback (medians; the kinds alternate).
2. The quickstart through the direct channel with the engines reached by
   Unix socket and by TCP: one emcee run whose maps alternate between two
   pools on the same engines in blocks of maps, both with the same chunk
   count (1, then 2: the chunk policy would otherwise choose for each pool
   apart, and the choice weighs more than the route). This VM's speed
   drifts within seconds, so the result is the median over block pairs of
   the ratio of their median cycle times (TCP over Unix; > 1: Unix is
   faster).
3. The first map of a new function carrying 50 MB of args, sent to 1 engine
   and to 2 (one chunk each): sent one engine after the other, 2 would take
   about twice as long as 1; the client sends to both at once.

    python benchmarks/bench_channel.py [--steps 3000] [--block 100] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import time

import emcee
import numpy as np
from _workloads import lnprob_big, qs, workloads
from emcee.ensemble import _FunctionWrapper

from emcee_ipp import IPyParallelPool

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def round_trips(family, n=3000, size=600):
    """Median seconds of a ``size``-byte echo through a forked process."""
    if family == "unix":
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    else:
        with socket.create_server(("127.0.0.1", 0)) as listener:
            a = socket.create_connection(listener.getsockname())
            b, _ = listener.accept()
        for s in (a, b):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    pid = os.fork()
    if pid == 0:  # the echo
        a.close()
        while data := b.recv(65536):
            b.sendall(data)
        os._exit(0)
    b.close()
    message, times = b"x" * size, []
    for _ in range(n):
        t0 = time.perf_counter()
        a.sendall(message)
        got = 0
        while got < size:
            got += len(a.recv(65536))
        times.append(time.perf_counter() - t0)
    a.close()
    os.waitpid(pid, 0)
    return statistics.median(times[n // 5 :])


def over_tcp(pool):
    """Reconnect the pool's direct channel to every engine over TCP."""
    transport = pool._transport  # noqa: SLF001 (a benchmark's look inside)
    for eid in list(transport.routes):
        transport._hang_up(eid)  # noqa: SLF001
        transport._urls[eid] = [u for u in transport._urls[eid] if u.startswith("tcp://")]  # noqa: SLF001
        transport._connect(eid, 5.0)  # noqa: SLF001
    return pool


class Alternating:
    """A ``pool=`` whose maps go to each of two pools in turn, ``block`` at a time,
    recording each map's cycle time (start to next start) by pool."""

    def __init__(self, pools: dict, block: int, settle: int = 10):
        self.pools, self.block, self.settle = pools, block, settle
        self.cycles = {name: [] for name in pools}
        self._calls, self._last = 0, None

    def map(self, fn, items):
        now = time.perf_counter()
        if self._last is not None and self._last[1] >= self.settle:
            self.cycles[self._last[0]].append(now - self._last[2])
        name = list(self.pools)[(self._calls // self.block) % 2]
        self._last = (name, self._calls % self.block, now)
        self._calls += 1
        return self.pools[name].map(fn, items)

    def ratios(self, a, b):
        """Per block pair: median cycle of ``b`` over that of ``a``."""
        m = self.block - self.settle
        pairs = min(len(self.cycles[a]), len(self.cycles[b])) // m
        return [
            statistics.median(self.cycles[b][i * m : (i + 1) * m])
            / statistics.median(self.cycles[a][i * m : (i + 1) * m])
            for i in range(pairs)
        ]


def routes_on_quickstart(steps, block):
    w = workloads()["quickstart"]
    out = {}
    with IPyParallelPool(2, transport="direct") as unix:
        with IPyParallelPool(client=unix.client, transport="direct") as tcp:
            over_tcp(tcp)
            assert all(u.startswith("unix:") for u in unix._transport.routes.values())  # noqa: SLF001
            for chunks in (1, 2):
                for p in (unix, tcp):
                    p._policy.n_chunks = lambda n_items, n_engines, k=chunks: k  # noqa: SLF001
                alternating = Alternating({"unix": unix, "tcp": tcp}, block)
                sampler = emcee.EnsembleSampler(w.nwalkers, 3, w.fn, args=w.args, pool=alternating)
                sampler.run_mcmc(w.start(), steps)
                ratios = alternating.ratios("unix", "tcp")
                out[chunks] = dict(
                    tcp_over_unix=statistics.median(ratios),
                    pairs=len(ratios),
                    unix_faster_in=sum(r > 1 for r in ratios) / len(ratios),
                    cycle_ms={k: statistics.median(v) * 1e3 for k, v in alternating.cycles.items()},
                )
    return dict(steps=steps, block=block, by_chunks=out)


def first_map_of_big_function(repeat):
    big = np.random.RandomState(1).rand(50 * 2**20 // 8)  # 50 MiB of float64
    x = np.random.RandomState(2).normal(size=(50, 3))
    out = {}
    with IPyParallelPool(2, transport="direct") as pool:
        pool.client[:].execute("import _workloads", block=True)
        for engines in (1, 2, 1, 2) * repeat:  # interleaved
            pool.clear_cache()
            fn = _FunctionWrapper(lnprob_big, qs.make_data() + (big,), {})
            pool._policy.n_chunks = lambda n_items, n_engines, k=engines: k  # noqa: SLF001
            t0 = time.perf_counter()
            pool.map(fn, x)
            out.setdefault(engines, []).append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in out.items()}, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--block", type=int, default=100, help="maps per block")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    os.makedirs(OUT, exist_ok=True)
    trips = {"unix": [], "tcp": []}
    for _ in range(args.repeat):
        for family in trips:
            trips[family].append(round_trips(family))
    rt = {k: statistics.median(v) * 1e6 for k, v in trips.items()}
    print(
        f"600-byte round trip, both sides blocking: Unix {rt['unix']:.1f} us, "
        f"TCP loopback {rt['tcp']:.1f} us (medians of {args.repeat} runs)",
        flush=True,
    )
    routes = routes_on_quickstart(args.steps, args.block)
    for chunks, r in routes["by_chunks"].items():
        print(
            f"quickstart, {chunks} chunk(s), engines by TCP / by Unix socket, cycle time "
            f"per block pair: median {r['tcp_over_unix']:.3f} over {r['pairs']} pairs "
            f"(Unix faster in {100 * r['unix_faster_in']:.0f}%)",
            flush=True,
        )
    medians, runs = first_map_of_big_function(args.repeat)
    print(
        f"first map of a new 50 MB function: 1 engine {medians[1]:.3f} s, "
        f"2 engines {medians[2]:.3f} s (x{medians[2] / medians[1]:.2f})",
        flush=True,
    )
    with open(os.path.join(OUT, "bench_channel.json"), "w") as f:
        json.dump(
            dict(
                round_trip_us=rt,
                round_trip_runs=trips,
                routes=routes,
                first_big_map_s=medians,
                first_big_map_runs=runs,
                when=time.strftime("%Y-%m-%d %H:%M"),
            ),
            f,
            indent=1,
        )


if __name__ == "__main__":
    main()
