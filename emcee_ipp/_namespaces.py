"""One namespace per client module whose functions travel by value.

Runs on the engines (the functions below are what ``_shipping`` pickles by
reference inside each function it sends by value) and, for the versions,
on the client.

cloudpickle gives every function it pickles by value (``__main__``'s, a
notebook's, a shipped module's) a fresh copy of the globals it uses, one per
pickle. So an initializer that sets a global (``global DATA; DATA = d``, the
way ``multiprocessing.Pool``'s initializers hand data to the mapped function)
would set it in its own copy, and the mapped function, pickled later, would
never see it. Under multiprocessing's spawn start method the child imports
``__main__`` once and every function shares it. So do these::

    client (_shipping)                          engine (this module)
    function by value from module M       ->    shared(client, M): one dict per client
      globals it uses, each with a version      set_state: a global whose version the
      (a new version when the client's          engine already holds is left as the
       value is another object)                 engine has it (an initializer may have
                                                set it); a new version replaces it
"""

from __future__ import annotations

import itertools

from cloudpickle.cloudpickle import _function_setstate

VERSIONS_KEY = "_emcee_ipp_versions"  # in a function's pickled state, popped on load

# (client token, module name) -> the namespace its functions share here
_SHARED: dict = {}
# id(namespace) -> {global name: version this engine holds}
_HELD: dict = {}


def shared(client: str, module: str, base: dict) -> dict:
    """The namespace of ``module``'s functions from client process ``client``
    (``base``: the module attributes cloudpickle keeps, ``__name__`` ...)."""
    namespace = _SHARED.get((client, module))
    if namespace is None:
        namespace = _SHARED[(client, module)] = dict(base)
        _HELD[id(namespace)] = {}
    return namespace


def set_state(func, state) -> None:
    """cloudpickle's ``_function_setstate``, but a global already held here
    at the same version keeps this engine's value."""
    attributes, slots = state
    versions = slots.pop(VERSIONS_KEY, {})
    held = _HELD.setdefault(id(func.__globals__), {})
    used = slots["__globals__"]
    for name, version in versions.items():
        if held.get(name) == version and name in func.__globals__:
            used.pop(name, None)
        else:
            held[name] = version
    _function_setstate(func, (attributes, slots))


class Versions:
    """Client side: a version for each global of each module, new whenever
    the client's value is another object than the one last stamped."""

    def __init__(self):
        self._stamped: dict = {}  # (module, name) -> (value, version); holds the value
        self._counter = itertools.count(1)

    def stamp(self, module: str, used: dict) -> dict:
        versions = {}
        for name, value in used.items():
            last = self._stamped.get((module, name))
            if last is None or last[0] is not value:
                last = self._stamped[(module, name)] = (value, next(self._counter))
            versions[name] = last[1]
        return versions
