"""The client's caches of objects already serialized for the engines.

Runs on the client. emcee hands ``pool.map`` the same ``_FunctionWrapper`` on
every call; the function cache pickles it once (as ``_logprob.LogProb``, so
that engines need not import emcee), gives it a random token that no other
entry, pool or client process will use, and remembers which engines
already hold it. A second cache of the same kind holds the functions and
classes found inside map items (``_shipping``): dynesty's prior transform
and likelihood, in every item, travel once per engine too.

Entries are keyed by the identity of what makes the call (``_logprob.identity``:
the function; emcee's wrapper's ``f``, ``args`` and ``kwargs``; a bound
method's function and instance) and hold a strong reference to each, so an
``id()`` can never be recycled while its entry lives. A wrapper whose ``f``,
``args`` or ``kwargs`` were replaced since (``sampler.log_prob_fn.args =
...``) is pickled again; args changed in place are not seen (the README's
"Known limits": ``pool.clear_cache()``).
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from dataclasses import dataclass, field

from ._logprob import identity, portable
from ._shipping import Shipper

# A few samplers alive at once is the common case (e.g. a notebook re-running
# a cell); each entry may hold large data arrays, so keep the bound small.
MAX_ENTRIES = 4
# Functions and classes found in map items: small, and a sampler such as
# dynesty puts two or three in every item.
MAX_OBJECTS = 64


@dataclass
class CacheEntry:
    func: object
    token: str  # unique across client processes sharing a cluster
    payload: bytes
    engines: set = field(default_factory=set)  # engine ids that hold it
    made_of: tuple = ()  # identity(func): kept alive, so their ids stay theirs


class FunctionCache:
    """LRU of :class:`CacheEntry`, keyed by the identity of what makes the call.

    ``dumps(obj)`` pickles a new entry's object (the pool's
    ``_shipping.Shipper.dumps``; plain cloudpickle by default).
    """

    def __init__(self, max_entries: int = MAX_ENTRIES, dumps=None):
        self.max_entries = max_entries
        self._dumps = dumps or Shipper(False, lambda names: ()).dumps
        self._entries: OrderedDict[tuple, CacheEntry] = OrderedDict()
        self._last: CacheEntry | None = None  # the entry the last get returned

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, func) -> CacheEntry:
        """Return the entry for ``func``, pickling it if it is new."""
        last = self._last
        if last is not None and last.func is func and len(last.made_of) == 1:
            return last  # a plain function, as in the last call (no parts to compare)
        made_of = identity(func)
        key = tuple(map(id, made_of))
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
            self._last = entry
            return entry
        entry = CacheEntry(func, uuid.uuid4().hex, self._dumps(portable(func)), made_of=made_of)
        self._entries[key] = entry
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        self._last = entry
        return entry

    def entries(self) -> list[CacheEntry]:
        return list(self._entries.values())

    def forget_engine(self, engine_id: int) -> None:
        """An engine lost its state (restart, eviction): refill it lazily."""
        for entry in self._entries.values():
            entry.engines.discard(engine_id)

    def clear(self) -> None:
        self._entries.clear()
        self._last = None
