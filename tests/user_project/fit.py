"""A user's script: ``python path/to/fit.py TRANSPORT``, run from any folder.

It imports its model from the module beside it, as scripts do, and checks
that the pool gives what serial code gives. Prints one JSON line.
"""

import json
import sys

import emcee
import numpy as np
from mymodel import Prior, log_prob

from emcee_ipp import IPyParallelPool


def transformed_sum(item):
    prior, u = item
    return float(np.sum(prior(u)))


if __name__ == "__main__":
    checks = {}
    with IPyParallelPool(2, transport=sys.argv[1]) as pool:
        units = np.random.default_rng(1).uniform(size=(10, 2))
        checks["map"] = pool.map(log_prob, units) == [log_prob(u) for u in units]
        items = [(Prior(), u) for u in units]  # instances of the user's class, in items
        checks["items"] = pool.map(transformed_sum, items) == [transformed_sum(i) for i in items]

        def run(p):
            sampler = emcee.EnsembleSampler(8, 2, log_prob, pool=p)
            sampler.random_state = np.random.RandomState(2).get_state()
            sampler.run_mcmc(np.random.RandomState(3).normal(size=(8, 2)), 25)
            return sampler.get_chain()

        checks["emcee_identical"] = bool(np.array_equal(run(None), run(pool)))
    print(json.dumps(checks))
