"""Ctrl-C in a client, run as a subprocess by tests/test_faults.py.

``python ctrl_c_client.py TRANSPORT map|split MARKER``: starts a pool,
prints "ready", runs a map (or a run_split) whose log-prob hangs on the
engines (``helpers.Hangs(MARKER)``: the file MARKER appears once it hangs,
MARKER.interrupted once it is interrupted), and prints "interrupted" the
moment KeyboardInterrupt arrives, so the test times it on its own clock.
Then it runs a correct map, prints as JSON whether it was right and how
long it took, and keeps its pool until a line comes on stdin (stopping the
cluster sends the engines a SIGINT of its own).
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

transport, call, marker = sys.argv[1:4]
hangs = helpers.Hangs(marker)
with IPyParallelPool(2, transport=transport) as pool:
    x = np.arange(12, dtype=float).reshape(6, 2)
    pool.map(helpers.gaussian, x)
    print("ready", flush=True)
    try:
        if call == "split":
            start = -np.abs(np.random.default_rng(0).normal(size=(4, 2)))  # every walker hangs
            run_split(pool, emcee.EnsembleSampler(4, 2, hangs), start, 10, seed=1)
        else:
            pool.map(hangs, -np.ones((4, 2)))
        print("not interrupted", flush=True)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
    t0 = time.monotonic()
    got = pool.map(helpers.gaussian, x)
    print(
        json.dumps(
            {"next_ok": got == [helpers.gaussian(r) for r in x], "next_s": time.monotonic() - t0}
        ),
        flush=True,
    )
    sys.stdin.readline()
