"""Log-likelihoods, prior transforms and dynesty runs for tests/test_samplers.py
and tests/sampler_script.py.

Module level, so ipyparallel engines and multiprocessing workers import them
by reference, as they would a user's model module.
"""

from __future__ import annotations

import math

import numpy as np

NDIM = 3
HALF_WIDTH = 4.0  # the prior: uniform on [-HALF_WIDTH, HALF_WIDTH] per axis
# ln Z of gaussian_loglike under that prior: per axis, the unit Gaussian's
# mass inside the box over the box's width.
LOG_Z = NDIM * math.log(
    math.sqrt(2 * math.pi) * math.erf(HALF_WIDTH / math.sqrt(2)) / (2 * HALF_WIDTH)
)


def gaussian_loglike(x):
    """An isotropic unit Gaussian, unnormalized, as a Python float."""
    return float(-0.5 * np.dot(x, x))


def box_prior(u):
    """The unit cube onto the prior box (dynesty's and nautilus's ``prior_transform``)."""
    return HALF_WIDTH * (2.0 * u - 1.0)


def scaled_gaussian(x, scales=(1.0, 2.0, 0.5)):
    """A Gaussian with standard deviations ``scales`` along the axes (zeus's log-prob)."""
    z = np.asarray(x) / np.asarray(scales)
    return float(-0.5 * np.dot(z, z))


# -- the dynesty runs both test_samplers.py and sampler_script.py compare ------

# kind: (sampler class, its keywords, run_nested's keywords). Each map item
# carries its own seed, drawn from ``rstate`` in the client, so the results
# depend on ``rstate`` and ``queue_size`` only, not on which pool runs them.
DYNESTY_RUNS = {
    # 3-D 'auto' sampling: uniform draws in bootstrapped ellipsoids, whose 5
    # bootstraps also go through pool.map. queue_size=None: dynesty takes it
    # from the pool (``pool.size``, or ``pool._processes`` for multiprocessing).
    "static": ("NestedSampler", dict(nlive=50, queue_size=None), dict(dlogz=0.5)),
    # Random walks drawn in the workers, one batch, and the stopping
    # function's 20 realizations (each item a whole Results) through pool.map.
    "dynamic": (
        "DynamicNestedSampler",
        dict(nlive=50, sample="rwalk", walks=10, queue_size=4),
        dict(dlogz_init=1.0, maxbatch=1, stop_kwargs=dict(n_mc=20)),
    ),
}
# What the queue sizes above come to with a pool of 2 workers.
DYNESTY_QUEUE = {"static": 2, "dynamic": 4}


def run_dynesty(kind, pool, loglike=gaussian_loglike, ptform=box_prior, seed=7):
    """Run ``DYNESTY_RUNS[kind]`` through ``pool`` (in the client); return the sampler."""
    import dynesty

    cls, kwargs, run_kwargs = DYNESTY_RUNS[kind]
    sampler = getattr(dynesty, cls)(
        loglike, ptform, NDIM, pool=pool, rstate=np.random.default_rng(seed), **kwargs
    )
    sampler.run_nested(print_progress=False, **run_kwargs)
    return sampler


def same_dynesty_results(a, b) -> bool:
    """Whether two dynesty Results agree bit for bit."""
    return all(np.array_equal(getattr(a, k), getattr(b, k)) for k in ("logl", "samples", "logz"))
