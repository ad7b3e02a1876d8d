"""The callables a map sends: emcee's log-prob wrapper without emcee, and
the wrappers of ``starmap`` and ``apply``.

Runs on the client (:func:`portable` and :func:`identity`, when the
function cache pickles a function) and on the engines (the classes, called
for every item).

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
import types

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


class Starred:
    """``f(*item)``: what ``pool.starmap(f, items)`` maps."""

    def __init__(self, f):
        self.f = f

    def __call__(self, args):
        return self.f(*args)

    def __repr__(self) -> str:
        return f"Starred({self.f!r})"


class Applied:
    """``f(*args, **kwargs)`` for an item ``(args, kwargs)``: ``pool.apply``'s call."""

    def __init__(self, f):
        self.f = f

    def __call__(self, item):
        args, kwargs = item
        return self.f(*args, **kwargs)

    def __repr__(self) -> str:
        return f"Applied({self.f!r})"


def identity(func) -> tuple:
    """The objects that make ``func`` the call it is, compared by identity
    in the function cache: a new but equal wrapper (emcee's, a bound
    method fetched again, starmap's) finds the same entry, and a wrapper
    whose parts were replaced (``sampler.log_prob_fn.args = new``) does not."""
    if type(func) in (Starred, Applied):
        return (type(func), *identity(func.f))
    if isinstance(func, types.MethodType):
        return (types.MethodType, func.__func__, func.__self__)
    made_of = parts(func)
    if made_of is not None:
        return (LogProb, *made_of)
    return (func,)


def portable(func):
    """``func``, or for emcee's ``_FunctionWrapper`` the same call as a
    :class:`LogProb` (emcee is then already imported here: never imported
    by this check)."""
    made_of = parts(func)
    return func if made_of is None else LogProb(*made_of)


def parts(func) -> tuple | None:
    """``(f, args, kwargs)`` of emcee's ``_FunctionWrapper``, else None.

    The function cache compares them by identity on every map (:func:`identity`),
    so that ``sampler.log_prob_fn.args = new`` reaches the engines (changing
    the args' contents in place cannot be seen cheaply: ``pool.clear_cache()``).
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
