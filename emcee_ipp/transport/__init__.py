"""How a map's chunks reach the engines and how their results come back.

Runs on the client. The pool decides *what* to send (a token, maybe the
function's bytes, a chunk of positions); a transport decides *how*. Every
transport runs the same engine code, :func:`emcee_ipp._engine.evaluate`,
and passes the same contract tests.
"""

from typing import TYPE_CHECKING

from .base import EngineLost, Transport
from .direct import DirectTransport, DirectUnavailable

__all__ = ["Transport", "EngineLost", "IppTransport", "DirectTransport", "DirectUnavailable"]

TRANSPORTS = ("auto", "direct", "ipp")

if TYPE_CHECKING:
    from .ipp import IppTransport


def __getattr__(name: str):
    # ipp imports ipyparallel: loaded when a pool needs it, so that a pool
    # that starts its own cluster first starts its zygote (see _cluster).
    if name == "IppTransport":
        from .ipp import IppTransport

        return IppTransport
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
