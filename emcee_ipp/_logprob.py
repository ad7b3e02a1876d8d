"""emcee's log-prob wrapper, without emcee.

Runs on the client (:func:`portable`, when the function cache pickles a
log-prob) and on the engines (:class:`LogProb`, called for every walker).

emcee hands ``pool.map`` its ``_FunctionWrapper(f, args, kwargs)``.
Unpickling that on an engine imports emcee, and with it scipy.stats where
scipy is installed: 0.9-1.3 s of CPU in every new engine's first map here
(``python -X importtime -c "import emcee"``, 2026-11-28), which made the
demo's first pooled run 1.6-2.4x serial against 1.2-1.3x once warm. The
function cache pickles this equivalent instead; its module imports nothing,
so an engine imports emcee only if the log-prob itself does.
"""
from __future__ import annotations

import sys


class LogProb:
    """``f(x, *args, **kwargs)``: the call emcee's ``_FunctionWrapper`` makes.

    emcee's wrapper also prints the walker and the arguments when ``f``
    raises; the pool's :class:`~emcee_ipp.RemoteLogProbError` names the
    walker and carries the remote traceback instead.
    """

    def __init__(self, f, args, kwargs):
        self.f = f
        self.args = args
        self.kwargs = kwargs

    def __call__(self, x):
        return self.f(x, *self.args, **self.kwargs)

    def __repr__(self) -> str:
        return f"LogProb({self.f!r})"


def portable(func):
    """``func``, or for emcee's ``_FunctionWrapper`` the same call as a
    :class:`LogProb` (emcee is then already imported here: never imported
    by this check)."""
    ensemble = sys.modules.get("emcee.ensemble")
    wrapper = getattr(ensemble, "_FunctionWrapper", None)
    if wrapper is not None and type(func) is wrapper:
        return LogProb(func.f, func.args, func.kwargs)
    return func
