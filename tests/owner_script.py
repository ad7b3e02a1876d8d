"""A pool owner for the clean-up tests, run as a subprocess.

Prints one JSON line with the pids of its cluster and its reaper, then:
``sleep`` (to be killed), ``exit`` (ends without close(), once a line
arrives on stdin, so the test can see the cluster alive first), or ``gc``
(drops the unclosed pool, collects it, then sleeps so only the pool's own
finalizer can have stopped the cluster).
"""
import gc
import json
import sys
import time
import warnings

from emcee_ipp import IPyParallelPool

warnings.simplefilter("always", ResourceWarning)
pool = IPyParallelPool(2)
print(json.dumps({"pids": pool._owned.pids(), "reaper": pool._owned.reaper.pid}), flush=True)
mode = sys.argv[1]
if mode == "sleep":
    time.sleep(120)
elif mode == "exit":
    sys.stdin.readline()
elif mode == "gc":
    del pool
    gc.collect()
    print("collected", flush=True)
    time.sleep(120)
