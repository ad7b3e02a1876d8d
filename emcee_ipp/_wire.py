"""What a map call looks like on the wire, for both sides.

Runs in both processes: :func:`split_items` and :func:`unpack_results` on the
client, :func:`pack_results` on the engine.

Positions travel as one contiguous float64 array per engine (the rows of
emcee's ``(nwalkers // 2, ndim)`` array); any other items travel as a
:class:`Packed` chunk, pickled by ``_shipping`` and read back item by item
by ``_engine.load_items``.
Results come back as a float64 array when every result is a float of one type,
otherwise as a list, so that the client rebuilds exactly what the built-in
``map`` would have returned.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from typing import Any

import numpy as np

# Result kinds: every result a Python float, every result a numpy float64, or
# anything else (tuples with blobs, ints, ...): a list on the client's own
# chunk, pickled bytes from an engine (:func:`pickle_results`).
PY_FLOAT = "f"
NP_FLOAT64 = "d"
OBJECTS = "o"
PICKLED = "p"
_PY_FLOAT, _NP_FLOAT64 = {float}, {np.float64}


class Packed:
    """A chunk of items that are not a float64 array: ``count`` pickles, one
    after another in ``data`` (one pickler, so they share its memo), or with
    ``whole``, one pickled list of plain data (numbers, strings)."""

    __slots__ = ("count", "data", "whole")

    def __init__(self, count: int, data, whole: bool = False):
        self.count = count
        self.data = data
        self.whole = whole

    def __reduce__(self):
        return Packed, (self.count, self.data, self.whole)

    def __len__(self) -> int:
        return self.count


def as_items(iterable) -> np.ndarray | list:
    """Return the map's input as a float64 array of rows, or as a list."""
    if isinstance(iterable, np.ndarray) and iterable.ndim >= 1 and iterable.dtype == np.float64:
        return iterable
    return list(iterable)


def chunk_bounds(n_items: int, n_chunks: int) -> list[tuple[int, int]]:
    """Split ``range(n_items)`` into at most ``n_chunks`` contiguous, near-equal parts."""
    n_chunks = max(1, min(n_chunks, n_items))
    size, extra = divmod(n_items, n_chunks)
    bounds, start = [], 0
    for i in range(n_chunks):  # the first ``extra`` chunks take one more item
        stop = start + size + (i < extra)
        bounds.append((start, stop))
        start = stop
    return bounds


def pack_results(results: list) -> tuple[str, Any]:
    """Engine side: turn a chunk's results into (kind, data)."""
    types = set(map(type, results))  # (a third quicker than all() over a generator)
    if types == _PY_FLOAT:
        return PY_FLOAT, np.array(results, dtype=np.float64)
    if types == _NP_FLOAT64:
        return NP_FLOAT64, np.array(results, dtype=np.float64)
    return OBJECTS, results


def pickle_results(results: list) -> bytes:
    """Engine side: results that are not floats, pickled for the trip back.

    Plain pickle first (C, fast); cloudpickle where that fails: instances of
    a class the engine got by value (``__main__``'s), which cloudpickle
    sends back as the client's own class.
    """
    try:
        return pickle.dumps(results, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        import cloudpickle

        return cloudpickle.dumps(results, protocol=pickle.HIGHEST_PROTOCOL)


def unpack_results(kind: str, data) -> Sequence:
    """Client side: rebuild the list the built-in ``map`` would have given."""
    if kind == PY_FLOAT:
        return data.tolist()
    if kind == NP_FLOAT64:
        return list(data)
    if kind == PICKLED:
        return pickle.loads(data)
    return data
