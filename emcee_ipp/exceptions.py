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
    "EngineCrashError",
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
        return f'\n"""\n{self.tb}"""'


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


class EngineCrashError(RemoteLogProbError):
    """An engine died while it evaluated these walkers (an ``os._exit``, a
    segfault in a C extension, the out-of-memory killer), and died again
    when they were retried alone on another engine.

    A :class:`RemoteLogProbError`, so code that handles a log-prob that
    raised handles this too; like dask's ``KilledWorker``, it is raised
    only once the retries have isolated the cause.

    Attributes
    ----------
    engine_id : int or None
        The engine that died last.
    params : object
        The parameters (map item) of the walker that kills its engine; for
        ``run_split``, None.
    exitcode : int or None
        The dead engine's exit code; ``-N`` for signal ``N``, as
        ``multiprocessing.Process.exitcode``; None where the pool does not
        own the engine's process.
    stderr : str
        The last lines the engine wrote to stderr (a faulthandler stack
        after a segfault), where the pool started it; else "".
    ensemble : int or None
        For ``run_split``: the ensemble whose engine kept dying.
    """

    def __init__(
        self,
        engine_id: int | None,
        params,
        exitcode: int | None = None,
        stderr: str = "",
        ensemble: int | None = None,
    ):
        self.exitcode = exitcode
        self.stderr = stderr
        self.ensemble = ensemble
        how = describe_exit(exitcode)
        if ensemble is None:
            what = (
                f"the walker with parameters {params!r} killed its engine ({how}), "
                "on a retry alone too"
            )
            after = ""
        else:
            what = f"ensemble {ensemble} killed its engine ({how}) on every attempt"
            after = (
                " The other ensembles were stopped; with backend_dir, their files "
                "hold every saved step and initial_state=None resumes them."
            )
        tail = "\n".join(stderr.rstrip().splitlines()[-15:])
        RuntimeError.__init__(  # the message is not RemoteLogProbError's
            self,
            f"{what}. Make the log-prob return -np.inf for these parameters, or "
            f"fix the C code it calls.{after}"
            + (f" The engine's last stderr lines:\n{tail}" if tail else ""),
        )
        self.engine_id = engine_id
        self.params = params
        self.type_name = "EngineCrash"
        self.remote_message = how


def describe_exit(exitcode: int | None) -> str:
    """How a process ended, in words (``-N``: killed by signal ``N``)."""
    if exitcode is None:
        return "it stopped answering; its exit code is unknown"
    if exitcode < 0:
        import signal

        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"killed by {name}"
    return f"exit code {exitcode}"
