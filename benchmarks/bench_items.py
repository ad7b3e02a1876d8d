"""What does sending map items cloudpickled cost, against plain pickle?

Items that are not a float64 array (emcee's dicts for named parameters,
dynesty's tuples, which hold its prior transform and likelihood) used to
travel as ``pickle.dumps(list(chunk))``. They now travel through
``_shipping.Shipper.pack_items`` (cloudpickle, one pickle per item, functions
by value replaced by cache tokens) and ``_engine.load_items``. Measured in one
process, interleaved rounds, medians; the client's encode and the engine's
decode of one chunk:

1. emcee with ``parameter_names``: 16 dicts of 3 numpy floats (half of 32
   walkers), as emcee makes them;
2. dynesty's shape: 2 tuples of (array, float, two functions defined in
   ``__main__``, an int); plain pickle cannot send these functions at all
   (by reference to a ``__main__`` the engines lack), so its figure is a floor;
3. the same, end to end: one ``pool.map`` of each, per call, on 2 engines
   (default transport), against a float64 array of the same walkers.

    python benchmarks/bench_items.py [--rounds 7] [--calls 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import statistics
import time

import numpy as np

from emcee_ipp import IPyParallelPool, _engine
from emcee_ipp._cache import MAX_OBJECTS, FunctionCache
from emcee_ipp._shipping import Shipper

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def prior_transform(u):
    return 10.0 * u - 5.0


def loglike(x):
    return float(-0.5 * np.dot(x, x))


def named(p):
    return -0.5 * (p["a"] ** 2 + p["b"] ** 2 + p["c"] ** 2)


def dynesty_like(item):
    u, _, ptform, logl, _ = item
    return logl(ptform(u))


def chunks():
    rng = np.random.default_rng(0)
    dicts = [dict(zip("abc", r)) for r in rng.normal(size=(16, 3))]  # np.float64, as emcee's
    tuples = [(rng.uniform(size=3), -1e300, prior_transform, loglike, k) for k in range(2)]
    return {"named_16": dicts, "dynesty_2": tuples}


def per_chunk(items, shipper, objects, n=2000):
    """Median microseconds to encode and to decode one chunk, old and new."""

    def old_encode():
        return pickle.dumps(list(items), protocol=pickle.HIGHEST_PROTOCOL)

    def new_encode():
        return shipper.pack_items(items, objects)

    old_bytes = old_encode()
    packed, used = new_encode()
    for entry in used:  # what the engine holds after the first chunk
        _engine._OBJECTS[entry.token] = entry.func  # noqa: SLF001
    timings = {}
    for name, fn in (
        ("old_encode", old_encode),
        ("new_encode", new_encode),
        ("old_decode", lambda: pickle.loads(old_bytes)),
        ("new_decode", lambda: _engine.load_items(packed)),
    ):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        timings[name] = (time.perf_counter() - t0) / n * 1e6
    return timings


def per_map(pool, func, items, calls):
    for _ in range(200):
        pool.map(func, items)
    t0 = time.perf_counter()
    for _ in range(calls):
        pool.map(func, items)
    return (time.perf_counter() - t0) / calls * 1e3


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    shipper = Shipper(False, lambda names: ())
    objects = FunctionCache(MAX_OBJECTS, dumps=shipper.dumps)
    data = chunks()
    micro = {name: [] for name in data}
    rng = np.random.default_rng(1)
    walkers = rng.normal(size=(16, 3))
    workloads = {
        "float64_array_16": (named_array := (lambda x: -0.5 * float(np.dot(x, x))), walkers),
        "named_16": (named, data["named_16"]),
        "dynesty_2": (dynesty_like, data["dynesty_2"]),
    }
    del named_array
    maps = {name: [] for name in workloads}
    with IPyParallelPool(2) as pool:
        for r in range(args.rounds):
            for name, items in data.items():
                micro[name].append(per_chunk(items, shipper, objects))
            for name, (func, items) in workloads.items():
                maps[name].append(per_map(pool, func, items, args.calls))
            print(
                f"round {r + 1}/{args.rounds}: "
                + ", ".join(f"{k} {v[-1]:.3f} ms" for k, v in maps.items()),
                flush=True,
            )
        transport = pool.transport
    result = {"rounds": args.rounds, "transport": transport, "per_chunk_us": {}, "per_map_ms": {}}
    for name, rounds in micro.items():
        med = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
        result["per_chunk_us"][name] = med
        print(
            f"{name}: encode {med['old_encode']:.1f} -> {med['new_encode']:.1f} us, "
            f"decode {med['old_decode']:.1f} -> {med['new_decode']:.1f} us (old: plain pickle)"
        )
    for name, rounds in maps.items():
        result["per_map_ms"][name] = {"median": statistics.median(rounds), "rounds": rounds}
        print(
            f"map of {name}: {statistics.median(rounds):.3f} ms per call (median of {args.rounds})"
        )
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "bench_items.json"), "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
