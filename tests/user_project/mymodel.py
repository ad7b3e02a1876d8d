"""A user's model module, beside the script that imports it (not installed)."""

import numpy as np
import units  # another module of the user's, beside this one

DATA = np.linspace(0.0, 1.0, 20)


def log_prob(theta):
    m, b = theta
    return float(-0.5 * np.sum((units.scaled(DATA) * m + b) ** 2))


class Prior:
    """Maps the unit cube to the prior's box (dynesty's prior transform)."""

    def __call__(self, u):
        return 4.0 * np.asarray(u) - 2.0
