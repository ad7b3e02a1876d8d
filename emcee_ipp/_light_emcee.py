"""emcee, imported on an engine without importing ``scipy.stats`` first.

Runs where ``run_split`` runs an ensemble: on the engines (and in the
client, where the user has usually imported emcee already). ``import
emcee`` imports ``emcee.moves.kde``, which does ``from scipy.stats import
gaussian_kde``: about 0.7 s of emcee's 0.7-1 s import on these machines,
paid by every engine at its first ``run_split``, for a move few samplers
use. So, where neither emcee nor ``scipy.stats`` is loaded yet, emcee is
imported with a stand-in ``scipy.stats`` whose ``gaussian_kde`` imports the
real one when first called (``KDEMove`` works as before, on its first
proposal). The stand-in is removed as soon as emcee is in, so a log-prob
that imports ``scipy.stats`` gets the real module.
"""

from __future__ import annotations

import sys
import types


def _gaussian_kde(*args, **kwargs):
    from scipy.stats import gaussian_kde

    return gaussian_kde(*args, **kwargs)


def _import_emcee():
    if "emcee" in sys.modules or "scipy.stats" in sys.modules:
        import emcee

        return emcee
    stand_in = types.ModuleType("scipy.stats")
    stand_in.gaussian_kde = _gaussian_kde  # type: ignore[attr-defined]
    sys.modules["scipy.stats"] = stand_in
    try:
        import emcee
    finally:
        if sys.modules.get("scipy.stats") is stand_in:
            del sys.modules["scipy.stats"]
    return emcee


emcee = _import_emcee()
