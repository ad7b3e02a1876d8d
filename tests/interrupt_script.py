"""Ctrl-C in a client, run as a subprocess by tests/test_faults.py.

Starts a pool, prints "ready", runs a map whose log-prob hangs, and reports
as JSON when KeyboardInterrupt arrived and whether the next map is correct.
"""
import json
import sys
import time

import numpy as np

import helpers
from emcee_ipp import IPyParallelPool

with IPyParallelPool(2, transport=sys.argv[1]) as pool:
    x = np.arange(12, dtype=float).reshape(6, 2)
    pool.map(helpers.gaussian, x)
    print("ready", flush=True)
    try:
        pool.map(helpers.python_hang, -np.ones((4, 2)))
        outcome = {"interrupted": False}
    except KeyboardInterrupt:
        outcome = {"interrupted": True, "at": time.time()}
    t0 = time.monotonic()
    got = pool.map(helpers.gaussian, x)
    outcome["next_ok"] = got == [helpers.gaussian(r) for r in x]
    outcome["next_s"] = time.monotonic() - t0
    print(json.dumps(outcome), flush=True)
