"""The client's cache of functions already serialized for the engines.

Runs on the client. emcee hands ``pool.map`` the same ``_FunctionWrapper`` on
every call; this cache pickles it once (as ``_logprob.LogProb``, so that
engines need not import emcee), gives it a random token that no
other entry, pool or client process will use, and remembers which engines
already hold it. Entries hold a strong reference
to their function, so an ``id()`` can never be recycled while its entry lives,
and lookups compare identity, never ``id()`` alone. A wrapper whose ``f``,
``args`` or ``kwargs`` were replaced since (``sampler.log_prob_fn.args =
...``) is pickled again; args changed in place are not seen (the README's
"Known limits": ``pool.clear_cache()``).
"""
from __future__ import annotations

import uuid
from collections import OrderedDict
from dataclasses import dataclass, field

import cloudpickle

from ._logprob import parts, portable
from .exceptions import SerializationError

# A few samplers alive at once is the common case (e.g. a notebook re-running
# a cell); each entry may hold large data arrays, so keep the bound small.
MAX_ENTRIES = 4

@dataclass
class CacheEntry:
    func: object
    token: str  # unique across client processes sharing a cluster
    payload: bytes
    engines: set = field(default_factory=set)  # engine ids that hold it
    parts: tuple | None = None  # emcee's wrapper's (f, args, kwargs) when pickled


class FunctionCache:
    """LRU of :class:`CacheEntry`, keyed by the identity of the function."""

    def __init__(self, max_entries: int = MAX_ENTRIES):
        self.max_entries = max_entries
        self._entries: "OrderedDict[str, CacheEntry]" = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, func) -> CacheEntry:
        """Return the entry for ``func``, pickling it if it is new."""
        for token, entry in self._entries.items():
            if entry.func is func:
                if entry.parts is not None and not _same(entry.parts, parts(func)):
                    del self._entries[token]  # its args were replaced: pickle it again
                    break
                self._entries.move_to_end(token)
                return entry
        made_of = parts(func)
        entry = CacheEntry(func, uuid.uuid4().hex, _dumps(portable(func)), parts=made_of)
        self._entries[entry.token] = entry
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return entry

    def forget_engine(self, engine_id: int) -> None:
        """An engine lost its state (restart, eviction): refill it lazily."""
        for entry in self._entries.values():
            entry.engines.discard(engine_id)

    def clear(self) -> None:
        self._entries.clear()


def _same(a: tuple, b: tuple | None) -> bool:
    return b is not None and all(x is y for x, y in zip(a, b))


def _dumps(obj) -> bytes:
    try:
        return cloudpickle.dumps(obj)
    except Exception as exc:
        raise SerializationError(
            f"could not pickle {obj!r} to send it to the engines: "
            f"{type(exc).__name__}: {exc}. Every object the log-prob uses "
            "(the function, its args and kwargs) must be picklable by "
            "cloudpickle; move open files, locks or sockets out of them, or "
            "create them on the engines with IPyParallelPool(initializer=...)."
        ) from exc
