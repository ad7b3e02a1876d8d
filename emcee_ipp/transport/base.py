"""The seam between the pool and the way its messages travel."""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Callable


class Transport(ABC):
    """Send calls to single engines and wait for their replies.

    Runs on the client. ``submit`` must not block on the engine; ``wait``
    returns the replies in the order of the handles given.
    """

    name: str

    @abstractmethod
    def submit(self, engine_id: int, fn: Callable, *args: Any) -> Any:
        """Start ``fn(*args)`` on one engine; return a handle."""

    @abstractmethod
    def wait(self, handles: list, timeout: float | None) -> list:
        """Return each handle's reply, in order, raising on failure or timeout."""

    def close(self) -> None:
        """Release what the transport holds (sockets, views)."""
