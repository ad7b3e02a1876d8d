"""The reference workload: emcee's quickstart line fit, from the seed write-up.

Runs on the client (data, start positions) and on the engines (``lnprob``).
Used by the demo, the benchmarks and the tests.
"""

from __future__ import annotations

import numpy as np

M_TRUE, B_TRUE, F_TRUE = -0.9594, 4.294, 0.534
TRUTH = np.array([M_TRUE, B_TRUE, np.log(F_TRUE)])
LABELS = ("m", "b", "ln f")


def make_data(n_points: int = 50, seed: int = 123):
    """Synthetic data ``(x, y, yerr)`` as in the quickstart (seeded)."""
    rng = np.random.RandomState(seed)
    x = np.sort(10 * rng.rand(n_points))
    yerr = 0.1 + 0.5 * rng.rand(n_points)
    y = M_TRUE * x + B_TRUE
    y += np.abs(F_TRUE * y) * rng.randn(n_points)
    y += yerr * rng.randn(n_points)
    return x, y, yerr


def lnprior(theta) -> float:
    m, b, lnf = theta
    if -5.0 < m < 0.5 and 0.0 < b < 10.0 and -10.0 < lnf < 1.0:
        return 0.0
    return -np.inf


def lnlike(theta, x, y, yerr) -> float:
    m, b, lnf = theta
    model = m * x + b
    inv_sigma2 = 1.0 / (yerr**2 + model**2 * np.exp(2 * lnf))
    return -0.5 * (np.sum((y - model) ** 2 * inv_sigma2 - np.log(inv_sigma2)))


def lnprob(theta, x, y, yerr) -> float:
    lp = lnprior(theta)
    if not np.isfinite(lp):
        return -np.inf
    return lp + lnlike(theta, x, y, yerr)


def start_positions(nwalkers: int, seed: int = 42) -> np.ndarray:
    """A tight ball around the maximum-likelihood point, shape (nwalkers, 3).

    The seed write-up finds that point with scipy's optimizer; a weighted
    least-squares fit of the line gives ``m`` and ``b`` without scipy.
    """
    x, y, yerr = make_data()
    A = np.vstack([x, np.ones_like(x)]).T / yerr[:, None]
    (m, b), *_ = np.linalg.lstsq(A, y / yerr, rcond=None)
    centre = np.array([m, b, np.log(F_TRUE)])
    rng = np.random.RandomState(seed)
    return centre + 1e-4 * rng.randn(nwalkers, 3)
