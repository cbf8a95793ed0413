"""The one reconnect backoff of reasonq's loops that wait out Redis (the writer, the hub, the cancel listener)."""

from __future__ import annotations

import asyncio


class Backoff:
    """Delays that double from ``first_s`` up to ``max_s``, back to ``first_s`` after a success.

    Args:
        first_s: the first delay.
        max_s: the longest delay.
    """

    def __init__(self, first_s: float = 0.1, max_s: float = 2.0) -> None:
        self.first_s = first_s
        self.max_s = max_s
        self._next_s = first_s

    def next_s(self) -> float:
        """The delay to wait now (the following one doubles)."""
        delay_s = self._next_s
        self._next_s = min(delay_s * 2, self.max_s)
        return delay_s

    def reset(self) -> None:
        """The operation succeeded: the next failure waits ``first_s`` again."""
        self._next_s = self.first_s

    async def sleep(self) -> None:
        """Wait the next delay."""
        await asyncio.sleep(self.next_s())
