"""emcee_ipp: fast emcee sampling on IPython parallel engines.

The log-prob function and its data are sent to each engine once; each emcee
step then moves only walker positions.

Public names load on first use (PEP 562), so an engine that imports
``emcee_ipp._engine`` for its first map pays only for what it runs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_WHERE = {
    "IPyParallelPool": ".pool",
    "run_split": ".split",
    "SplitResult": ".result",
    "EnsembleResult": ".result",
    "EmceeIppError": ".exceptions",
    "PoolClosedError": ".exceptions",
    "NoEnginesError": ".exceptions",
    "ClusterNotFoundError": ".exceptions",
    "SerializationError": ".exceptions",
    "RemoteLogProbError": ".exceptions",
    "EngineCrashError": ".exceptions",
    "EngineSetupError": ".exceptions",
    "MapTimeoutError": ".exceptions",
}

__all__ = list(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'emcee_ipp' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)


if TYPE_CHECKING:
    from .exceptions import (  # noqa: F401
        ClusterNotFoundError,
        EmceeIppError,
        EngineCrashError,
        EngineSetupError,
        MapTimeoutError,
        NoEnginesError,
        PoolClosedError,
        RemoteLogProbError,
        SerializationError,
    )
    from .pool import IPyParallelPool  # noqa: F401
    from .result import EnsembleResult, SplitResult  # noqa: F401
    from .split import run_split  # noqa: F401
