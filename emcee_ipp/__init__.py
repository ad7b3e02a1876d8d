"""emcee_ipp: fast emcee sampling on IPython parallel engines.

The log-prob function and its data are sent to each engine once; each emcee
step then moves only walker positions.
"""
from .exceptions import (
    ClusterNotFoundError,
    EmceeIppError,
    EngineSetupError,
    MapTimeoutError,
    NoEnginesError,
    PoolClosedError,
    RemoteLogProbError,
    SerializationError,
)
from .pool import IPyParallelPool
from .result import EnsembleResult, SplitResult
from .split import run_split

__version__ = "0.1.0"

__all__ = [
    "IPyParallelPool",
    "run_split",
    "SplitResult",
    "EnsembleResult",
    "EmceeIppError",
    "PoolClosedError",
    "NoEnginesError",
    "ClusterNotFoundError",
    "SerializationError",
    "RemoteLogProbError",
    "EngineSetupError",
    "MapTimeoutError",
]
