"""A pool owner for the clean-up tests (tests/test_cleanup.py), run as a subprocess.

Prints one JSON line with the pids of its cluster and its reaper, then, by
its argument:

- ``sleep``: sleeps, to be killed;
- ``exit``: disarms its reaper (the watchdog, which would stop the cluster
  on its own when this process ends), then, once a line arrives on stdin (the
  test saw the cluster alive), lets the interpreter exit without close():
  only the pool's own exit-time clean-up can stop the cluster;
- ``gc``: drops the unclosed pool, collects it, prints "collected" and
  sleeps: only the pool's finalizer can have stopped the cluster;
- ``close-interrupted``: a Ctrl-C (SIGINT to itself) lands inside close(),
  as the owned cluster's stop begins; prints whether close() raised
  KeyboardInterrupt, calls close() again, prints "closed" and sleeps.
"""

import gc
import json
import os
import signal
import sys
import time
import warnings

from emcee_ipp import IPyParallelPool

warnings.simplefilter("always", ResourceWarning)
# Python's own Ctrl-C handler, whatever this process inherited: started in
# the background by a shell, SIGINT comes ignored and no KeyboardInterrupt
# would ever be raised ("close-interrupted").
signal.signal(signal.SIGINT, signal.default_int_handler)
pool = IPyParallelPool(2)
zygote = pool._owned.zygote
info = {"pids": pool._owned.pids(), "reaper": pool._owned.reaper.pid}
info["zygote"] = zygote and zygote.pid
print(json.dumps(info), flush=True)
mode = sys.argv[1]
if mode == "sleep":
    time.sleep(120)
elif mode == "exit":
    pool._owned.reaper.disarm()
    sys.stdin.readline()
elif mode == "close-interrupted":
    cluster = pool._owned.cluster
    stop = cluster.stop_cluster

    async def stop_after_ctrl_c(*args, **kwargs):
        cluster.stop_cluster = stop  # once
        # (the main thread, waiting in close() for this, raises it)
        os.kill(os.getpid(), signal.SIGINT)
        return await stop(*args, **kwargs)

    cluster.stop_cluster = stop_after_ctrl_c
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
