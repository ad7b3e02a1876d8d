"""emcee's log-prob wrapper, without emcee.

Runs on the client (:func:`portable`, when the function cache pickles a
log-prob) and on the engines (:class:`LogProb`, called for every walker).

emcee hands ``pool.map`` its ``_FunctionWrapper(f, args, kwargs)``.
Unpickling that on an engine imports emcee, and with it scipy.stats where
scipy is installed. That made every new engine's first map 0.65-0.95 s
slower here (2 engines; 3.3-3.4 s on 8 sharing 2 cores) and doubled its
memory (RSS 66 -> 137 MB; README, "Start-up"). The function cache pickles
this equivalent instead; its module imports nothing, so an engine imports
emcee only if the log-prob itself does (``run_split``'s engines run whole
samplers, and do).
"""
from __future__ import annotations

import logging
import sys

log = logging.getLogger("emcee_ipp")


class LogProb:
    """``f(x, *args, **kwargs)``: the call emcee's ``_FunctionWrapper`` makes.

    emcee's wrapper also prints the walker and the arguments when ``f``
    raises; the pool's :class:`~emcee_ipp.RemoteLogProbError` names the
    walker and carries the remote traceback instead. (With
    ``client_computes=True`` the client's own share still calls emcee's
    wrapper, which prints in the client.)
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
    made_of = parts(func)
    return func if made_of is None else LogProb(*made_of)


def parts(func) -> tuple | None:
    """``(f, args, kwargs)`` of emcee's ``_FunctionWrapper``, else None.

    The function cache compares them by identity on every map, so that
    ``sampler.log_prob_fn.args = new`` reaches the engines (changing the
    args' contents in place cannot be seen cheaply: ``pool.clear_cache()``).
    """
    ensemble = sys.modules.get("emcee.ensemble")
    wrapper = getattr(ensemble, "_FunctionWrapper", None)
    if wrapper is None or type(func) is not wrapper:
        return None
    try:
        return func.f, func.args, func.kwargs
    except AttributeError:  # an emcee whose wrapper changed shape: send it as it is
        log.debug("emcee_ipp: emcee's _FunctionWrapper has no f/args/kwargs; sending it as is")
        return None
