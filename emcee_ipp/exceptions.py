"""Every exception emcee_ipp raises, in one place.

Each message says what was wrong, the value, and what to do next.
"""
from __future__ import annotations

__all__ = [
    "EmceeIppError",
    "PoolClosedError",
    "NoEnginesError",
    "ClusterNotFoundError",
    "SerializationError",
    "RemoteLogProbError",
    "RemoteTraceback",
    "EngineSetupError",
    "MapTimeoutError",
]


class EmceeIppError(Exception):
    """Base class of every error raised by emcee_ipp."""


class PoolClosedError(EmceeIppError, RuntimeError):
    """Work was submitted to a pool after ``close()`` or ``terminate()``."""


class NoEnginesError(EmceeIppError, RuntimeError):
    """No ipyparallel engine registered within the allowed time."""


class ClusterNotFoundError(EmceeIppError, OSError):
    """The profile or cluster id given does not name a running cluster."""


class SerializationError(EmceeIppError, TypeError):
    """The log-prob function (or its args) could not be pickled for the engines."""


class EngineSetupError(EmceeIppError, RuntimeError):
    """The initializer, or the import of emcee_ipp, failed on an engine."""


class MapTimeoutError(EmceeIppError, TimeoutError):
    """A single ``map`` call ran longer than the pool's ``timeout``."""


class RemoteTraceback(Exception):
    """Carries the text of a traceback raised on an engine.

    Attached as ``__cause__`` of :class:`RemoteLogProbError`, the way
    ``concurrent.futures.process`` attaches its ``_RemoteTraceback``.
    """

    def __init__(self, type_name: str, message: str, tb: str):
        super().__init__(tb)
        self.type_name = type_name
        self.message = message
        self.tb = tb

    def __str__(self) -> str:
        return f"\n\"\"\"\n{self.tb}\"\"\""


class RemoteLogProbError(EmceeIppError, RuntimeError):
    """The log-prob function raised on an engine.

    Attributes
    ----------
    engine_id : int or None
        The ipyparallel engine id on which the call failed; None for the
        client's own share (``client_computes=True``).
    params : object
        The walker's parameters (the item of the map's iterable) that failed.
    type_name, remote_message : str
        The original exception's type name and message.
    """

    def __init__(self, engine_id: int | None, params, type_name: str, message: str):
        self.engine_id = engine_id
        self.params = params
        self.type_name = type_name
        self.remote_message = message
        where = "in the client's share" if engine_id is None else f"on engine {engine_id}"
        super().__init__(
            f"log-prob raised {type_name}: {message!s} {where} "
            f"for walker parameters {params!r}. The remote traceback is "
            "attached as __cause__; fix the log-prob, or make it return -np.inf "
            "for parameters it cannot evaluate."
        )
