"""A pool owner for the clean-up tests, run as a subprocess.

Prints one JSON line with the pids of its cluster and its reaper, then:
``sleep`` (to be killed), ``exit`` (ends without close(), once a line
arrives on stdin, so the test can see the cluster alive first), or ``gc``
(drops the unclosed pool, collects it, then sleeps so only the pool's own
finalizer can have stopped the cluster), or ``close-interrupted`` (Ctrl-C
0.1 s into close(), then close() again, then sleeps).
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
elif mode == "close-interrupted":
    import os
    import signal
    import threading

    threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGINT)).start()
    try:
        pool.close()
        interrupted = False
    except KeyboardInterrupt:
        interrupted = True
    print(json.dumps({"interrupted": interrupted}), flush=True)
    pool.close()
    print("closed", flush=True)
    time.sleep(120)
elif mode == "gc":
    del pool
    gc.collect()
    print("collected", flush=True)
    time.sleep(120)
