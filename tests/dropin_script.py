"""A user's script: everything it sends the engines is defined here, in ``__main__``.

Run by tests/test_dropin.py as ``python dropin_script.py TRANSPORT`` from
another folder. Prints one JSON line: for each place a ``__main__`` object
can travel, whether the pool gave what the built-in map (or a serial emcee
run) gives.
"""

import json
import sys

import emcee
import numpy as np

from emcee_ipp import IPyParallelPool, run_split


class Shift:
    """A class of __main__'s, sent inside args, kwargs and map items."""

    def __init__(self, by):
        self.by = by


def log_prob(x, shift, scale=None):
    return float(-0.5 * np.sum(((x - shift.by) / scale.by) ** 2))


def transform(u):
    return 10.0 * u - 5.0


def call_item(item):
    fn, x = item  # a __main__ function inside each item, as dynesty's items hold
    return fn(x)


SEEN = {}


def remember(value):  # the initializer
    SEEN["value"] = value


def seen(_):
    return SEEN.get("value")


def main(transport):
    x = np.random.default_rng(0).uniform(size=(12, 3))
    shift, scale = Shift(0.5), Shift(2.0)
    checks = {}
    with IPyParallelPool(
        2, transport=transport, initializer=remember, initargs=(Shift(7),)
    ) as pool:
        checks["mapped_function"] = pool.map(transform, list(x[:, 0])) == [
            transform(v) for v in x[:, 0]
        ]
        items = [(transform, v) for v in x[:, 0]]
        checks["inside_items"] = pool.map(call_item, items) == [call_item(i) for i in items]
        checks["initializer"] = [s.by for s in pool.map(seen, range(4))] == [7] * 4

        def run(p):
            sampler = emcee.EnsembleSampler(
                8, 3, log_prob, args=(shift,), kwargs={"scale": scale}, pool=p
            )
            sampler.random_state = np.random.RandomState(3).get_state()
            sampler.run_mcmc(np.random.RandomState(4).normal(size=(8, 3)), 30)
            return sampler.get_chain()

        checks["args_and_kwargs"] = bool(np.array_equal(run(None), run(pool)))
        template = emcee.EnsembleSampler(8, 3, log_prob, args=(shift,), kwargs={"scale": scale})
        p0 = np.random.RandomState(5).normal(size=(8, 3))
        split = run_split(pool, template, p0, 20, n_ensembles=2, seed=11)
        # Ensemble i draws from SeedSequence(seed).spawn(n)[i]: rerun them here.
        serial = []
        for s in np.random.SeedSequence(11).spawn(2):
            state = np.random.RandomState(np.random.MT19937(s)).get_state()
            sampler = emcee.EnsembleSampler(8, 3, log_prob, args=(shift,), kwargs={"scale": scale})
            sampler.run_mcmc(emcee.State(p0, random_state=state), 20)
            serial.append(sampler.get_chain())
        checks["run_split"] = bool(
            np.array_equal(split.get_chain(), np.concatenate(serial, axis=1))
        )
    print(json.dumps(checks))


if __name__ == "__main__":
    main(sys.argv[1])
