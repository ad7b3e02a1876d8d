"""How the user's objects are pickled for the engines.

Runs on the client. Everything the pool sends that is not a float64 array
(the log-prob, its args, the initializer, ``run_split``'s sampler, map
items) is pickled here, with cloudpickle::

    Shipper.dumps(obj)                     the log-prob, initializer, sampler
      cloudpickle, recording every module it names by reference
      -> user modules the engines lack?    (asked once per module: _engine.missing_modules)
         register them by value, pickle again
    Shipper.pack_items(items, objects)     a map's items (dynesty's, named parameters...)
      one pickle stream, an item after another (_engine.load_items reads them
      back one by one, so a bad item is named by its index)
      functions and classes pickled by value (``__main__``'s, a notebook's)
      -> persistent ids: their bytes go once per engine (``objects``, a FunctionCache)

A *user module* is one the client loaded from a file outside the standard
library and site-packages: the user's own code (a model beside the script,
a folder on ``sys.path``). With ``ship_modules="auto"``, one the engines
cannot import is pickled by value (``cloudpickle.register_pickle_by_value``,
only while this module pickles), so engines on other hosts need no copy of
it; each such module is logged once. A module from site-packages is never
shipped: an engine that lacks it says so (``EngineSetupError``).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import pickle
import site
import sys
import sysconfig
import types
import uuid
from collections.abc import Iterable
from typing import Callable

import cloudpickle
from cloudpickle import cloudpickle as _cp

from . import _namespaces
from ._wire import Packed
from .exceptions import SerializationError

log = logging.getLogger("emcee_ipp")

PROTOCOL = 5
_HERE = os.path.dirname(os.path.abspath(__file__))


# Names this client process on the engines, for the namespaces its
# functions share there (``_namespaces``), and the versions of their globals.
CLIENT_TOKEN = uuid.uuid4().hex
_VERSIONS = _namespaces.Versions()


class _Pickler(cloudpickle.Pickler):
    """cloudpickle's pickler, noting the modules it pickles names of by
    reference, and giving the functions it pickles by value one namespace
    per module on each engine (``_namespaces``)."""

    def __init__(self, file, named: set):
        super().__init__(file, protocol=PROTOCOL)
        self._named = named

    def _dynamic_function_reduce(self, func):
        reduced = super()._dynamic_function_reduce(func)
        module = getattr(func, "__module__", None)
        if (
            not isinstance(module, str)
            or getattr(sys.modules.get(module), "__dict__", None) is not func.__globals__
        ):
            return reduced  # not a module's function (exec'd code, say): as cloudpickle does
        make, (code, base, *rest), (attributes, slots), *_ = reduced
        slots[_namespaces.VERSIONS_KEY] = _VERSIONS.stamp(module, slots["__globals__"])
        namespace = (_namespaces.shared, (CLIENT_TOKEN, module, base))
        return (
            make,
            (code, _Call(*namespace), *rest),
            (attributes, slots),
            None,
            None,
            _namespaces.set_state,
        )

    def reducer_override(self, obj):
        reduced = super().reducer_override(obj)
        if reduced is NotImplemented:
            if isinstance(obj, types.ModuleType):
                self._named.add(obj.__name__)
            elif isinstance(obj, (type, types.FunctionType)):
                module = getattr(obj, "__module__", None)
                if isinstance(module, str):
                    self._named.add(module)
        return reduced


class _Call:
    """Pickles as the call ``fn(*args)``: the engine's value of it."""

    def __init__(self, fn, args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


class _ItemPickler(_Pickler):
    """Items' functions and classes pickled by value become references to
    entries of the pool's object cache (sent once per engine)."""

    def __init__(self, file, named: set, objects, used: dict, by_value: dict):
        super().__init__(file, named)
        self._objects = objects
        self._used = used  # token -> CacheEntry, the entries this chunk names
        self._by_value = by_value  # the Shipper's memo: id -> (function or class, by value?)

    def persistent_id(self, obj):
        kind = type(obj)
        if kind in _ATOMS:
            return None
        if kind is types.FunctionType or isinstance(obj, type):
            known = self._by_value.get(id(obj))
            if known is None or known[0] is not obj:
                # __main__'s, a lambda, shipped modules': by value (cloudpickle's
                # own test; it has no public one)
                by_ref = _cp._should_pickle_by_reference(obj)  # noqa: SLF001
                known = self._by_value[id(obj)] = (obj, not by_ref)
            if known[1]:
                entry = self._objects.get(obj)
                self._used[entry.token] = entry
                return entry.token
        return None


class Shipper:
    """Pickles objects for one pool's engines (client side).

    Parameters
    ----------
    mode : "auto", False, or iterable of str or module
        ``ship_modules`` of :class:`~emcee_ipp.IPyParallelPool`.
    missing_on_engines : callable
        ``missing_on_engines(names)``: the names of those modules that the
        engines cannot import (asked through ipyparallel).
    """

    def __init__(self, mode, missing_on_engines: Callable[[list], Iterable[str]]):
        self.auto = mode == "auto"
        self._missing_on_engines = missing_on_engines
        self.by_value: set[str] = set() if mode in ("auto", False) else set(_names(mode))
        self._importable: set[str] = set()  # module names the engines import themselves
        # id -> (function or class, whether it goes by value), for items:
        # cloudpickle's check costs ~5 us, and dynesty's items hold the same
        # functions every map. Holds them; emptied when it grows, or when a
        # module starts going by value.
        self._by_value_memo: dict = {}

    def dumps(self, obj, what: str = "the log-prob") -> bytes:
        """``obj`` cloudpickled, with the user modules the engines lack by value."""
        for _ in range(_MAX_ROUNDS):
            named: set = set()
            data = self._pickle(lambda f, named=named: _Pickler(f, named).dump(obj), obj, what)
            if not self._ship_missing(named):
                return data
        return data

    def pack_items(self, items, objects) -> tuple[Packed, list]:
        """A chunk of items, and the object-cache entries it refers to."""
        try:  # numbers, strings, numpy, containers of them: C pickle, one list
            return Packed(len(items), _plain_pickle(items), whole=True), []
        except _NotPlain:
            pass
        for _ in range(_MAX_ROUNDS):
            named: set = set()
            used: dict = {}

            def dump(f, named=named, used=used):
                if len(self._by_value_memo) > _MAX_MEMO:
                    self._by_value_memo.clear()
                pickler = _ItemPickler(f, named, objects, used, self._by_value_memo)
                for item in items:
                    pickler.dump(item)

            data = self._pickle(dump, items, "a map item")
            if not self._ship_missing(named):
                break
        return Packed(len(items), data), list(used.values())

    def _pickle(self, dump, obj, what: str) -> bytes:
        buffer = io.BytesIO()
        try:
            with self._registered():
                dump(buffer)
        except Exception as exc:
            raise SerializationError(
                f"could not pickle {what} {_short(obj)} to send it to the engines: "
                f"{type(exc).__name__}: {exc}. Every object sent to the engines (the "
                "function, its args and kwargs, map items) must be picklable by "
                "cloudpickle; move open files, locks or sockets out of them, or "
                "create them on the engines with IPyParallelPool(initializer=...)."
            ) from exc
        return buffer.getvalue()

    @contextlib.contextmanager
    def _registered(self):
        """Register the pool's by-value modules with cloudpickle while it pickles
        (and only those not registered already, which stay registered)."""
        added = [
            sys.modules[name]
            for name in self.by_value
            # cloudpickle's registry: no public way to ask what is registered
            if name in sys.modules and name not in _cp._PICKLE_BY_VALUE_MODULES  # noqa: SLF001
        ]
        for module in added:
            cloudpickle.register_pickle_by_value(module)
        try:
            yield
        finally:
            for module in added:
                _cp._PICKLE_BY_VALUE_MODULES.discard(module.__name__)  # noqa: SLF001

    def _ship_missing(self, named: set) -> bool:
        """Decide, for the user modules a pickle named, whether the engines
        import them or get them by value; True if any is newly by value."""
        if not self.auto:
            return False
        unknown = sorted(
            name
            for name in named
            if name not in self._importable and name not in self.by_value and is_user_module(name)
        )
        if not unknown:
            return False
        missing = set(self._missing_on_engines(unknown))
        self._importable.update(set(unknown) - missing)
        for name in sorted(missing):
            log.info(
                "emcee_ipp: the engines cannot import %r (%s); its functions and classes "
                "are sent by value",
                name,
                getattr(sys.modules.get(name), "__file__", "?"),
            )
        self.by_value.update(missing)
        if missing:
            self._by_value_memo.clear()
        return bool(missing)


# A module shipped by value names others (its own imports) by reference:
# each round ships the ones found missing; a chain of imports this long is
# not a model's.
_MAX_ROUNDS = 16
_MAX_MEMO = 4096


def _names(modules) -> list[str]:
    names = []
    for m in modules:
        if isinstance(m, types.ModuleType):
            names.append(m.__name__)
        elif isinstance(m, str) and m:
            names.append(m)
        else:
            raise TypeError(
                f"ship_modules: {m!r} is neither a module nor a module name; give "
                "'auto', False, or a list of modules or their names."
            )
    return names


def check_mode(mode):
    """``ship_modules`` as given, or a ValueError naming the choices."""
    if mode == "auto" or mode is False:
        return mode
    if isinstance(mode, (list, tuple, set, frozenset)):
        _names(mode)
        return mode
    raise ValueError(
        f"ship_modules={mode!r}: give 'auto' (user modules the engines cannot import "
        "go by value), False (never), or a list of modules or module names."
    )


def _system_dirs() -> tuple[str, ...]:
    dirs = set()
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        path = sysconfig.get_paths().get(key)
        if path:
            dirs.add(path)
    with contextlib.suppress(Exception):
        dirs.update(site.getsitepackages())
    with contextlib.suppress(Exception):
        dirs.add(site.getusersitepackages())
    dirs.add(_HERE)  # emcee_ipp itself, wherever it is installed
    return tuple(os.path.realpath(d) + os.sep for d in dirs if d)


_SYSTEM_DIRS: tuple[str, ...] | None = None
_USER_FILES: dict = {}  # a module's file -> whether it is the user's (realpath is slow)


def is_user_module(name: str) -> bool:
    """Whether the client loaded module ``name`` from a file of the user's
    own (not the standard library, site-packages, or emcee_ipp)."""
    global _SYSTEM_DIRS
    if name == "__main__":  # cloudpickle sends __main__'s objects by value already
        return False
    module = sys.modules.get(name)
    path = getattr(module, "__file__", None)
    if not isinstance(path, str):
        return False  # built in, frozen, or a namespace package
    if _SYSTEM_DIRS is None:
        _SYSTEM_DIRS = _system_dirs()
    key = (path, _SYSTEM_DIRS)
    mine = _USER_FILES.get(key)
    if mine is None:
        mine = _USER_FILES[key] = not os.path.realpath(path).startswith(_SYSTEM_DIRS)
    return mine


class _NotPlain(Exception):
    pass


class _PlainPickler(pickle.Pickler):
    """The C pickler, stopped by anything but plain data: it calls
    ``reducer_override`` only for what it has no fast path for (not for
    floats, ints, strings, dicts, lists, tuples), and numpy's objects load
    on every engine. So emcee's dicts of named parameters pickle at C speed
    (16 dicts of 3 floats: 7.6 us against 5.1 for pickle.dumps;
    benchmarks/bench_items.py) with no risk of a ``__main__`` function
    going by reference."""

    def reducer_override(self, obj):
        module = type(obj).__module__
        if module == "builtins":  # a function or class: where it lives
            module = getattr(obj, "__module__", None) or ""
        if module.partition(".")[0] != "numpy":
            raise _NotPlain
        return NotImplemented


def _plain_pickle(items) -> bytes:
    buffer = io.BytesIO()
    _PlainPickler(buffer, PROTOCOL).dump(items)
    return buffer.getvalue()


# Types whose objects need no hook in persistent_id.
_ATOMS = frozenset({float, int, str, bool, type(None), bytes, complex})


def _short(obj) -> str:
    text = repr(obj)
    return text if len(text) <= 200 else text[:197] + "..."
