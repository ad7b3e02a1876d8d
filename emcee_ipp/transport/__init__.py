"""How a map's chunks reach the engines and how their results come back.

Runs on the client. The pool decides *what* to send (a token, maybe the
function's bytes, a chunk of positions); a transport decides *how*. Every
transport runs the same engine code, :func:`emcee_ipp._engine.evaluate`,
and passes the same contract tests.
"""

from .base import EngineLost, Transport
from .direct import DirectTransport, DirectUnavailable
from .ipp import IppTransport

__all__ = ["Transport", "EngineLost", "IppTransport", "DirectTransport", "DirectUnavailable"]

TRANSPORTS = ("auto", "direct", "ipp")
