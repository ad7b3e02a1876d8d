"""Ctrl-C in a client, run as a subprocess by tests/test_faults.py.

Starts a pool, prints "ready", runs a map (or, with "split", a run_split)
whose log-prob hangs, and reports as JSON when KeyboardInterrupt arrived and
whether the next map is correct.
"""

import json
import signal
import sys
import time

import emcee
import helpers
import numpy as np

from emcee_ipp import IPyParallelPool, run_split

# A process started in the background by a shell without job control (as a
# CI runner may start the suite) inherits SIGINT ignored: restore Ctrl-C.
signal.signal(signal.SIGINT, signal.default_int_handler)

with IPyParallelPool(2, transport=sys.argv[1]) as pool:
    x = np.arange(12, dtype=float).reshape(6, 2)
    pool.map(helpers.gaussian, x)
    print("ready", flush=True)
    try:
        if len(sys.argv) > 2 and sys.argv[2] == "split":
            sampler = emcee.EnsembleSampler(4, 2, helpers.python_hang)
            run_split(pool, sampler, np.random.default_rng(0).normal(size=(4, 2)), 10, seed=1)
        else:
            pool.map(helpers.python_hang, -np.ones((4, 2)))
        outcome = {"interrupted": False}
    except KeyboardInterrupt:
        outcome = {"interrupted": True, "at": time.time()}
    t0 = time.monotonic()
    got = pool.map(helpers.gaussian, x)
    outcome["next_ok"] = got == [helpers.gaussian(r) for r in x]
    outcome["next_s"] = time.monotonic() - t0
    print(json.dumps(outcome), flush=True)
