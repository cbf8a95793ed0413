"""This API process's viewers per generation, kept in Redis so that every process reads the deployment's total.

Joins and leaves are published within ``CHANGE_S`` (those within it in one write). Every count is also rewritten
once per ``PUBLISH_S``, since the entries expire unless refreshed (``keys.VIEWERS_TTL_MS``). That rewrite goes in
pieces of at most ``REFRESH_PIECE`` generations spread evenly over the period: rewriting all of them at once, a
process watching 10,000 generations spent 50-170 ms every 2 s packing 16 script calls while Redis ran their
20,000 writes, and every stream's events waited behind both (the tail of ``bench --scenario manystreams``,
issue 14). A piece the period's end overtakes goes out with the rest of the period at once, so no count waits
more than a period and its publish for its rewrite.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from typing import Protocol

from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

# How often every count is rewritten (the entries expire unless refreshed).
PUBLISH_S = 2.0
# A join or a leave is published this soon (joins within it go in one write): with only the 2 s refresh, a page
# showed a second viewer up to 3 s late (publish plus the page's 1 s poll), and a CI run timed out on it.
CHANGE_S = 0.25
# Generations per piece of the periodic rewrite (see the module's docstring).
REFRESH_PIECE = 500


class Publisher(Protocol):
    async def publish_viewers(self, counts: dict[str, int], process_id: str) -> None: ...


class ViewerCounts:
    """The counts of one process (``process_id``) and the task that publishes them through ``presence``."""

    def __init__(self, presence: Publisher, process_id: str) -> None:
        self._presence = presence
        self._process_id = process_id
        self._watching: dict[str, int] = {}  # generation id -> viewers of this process (replaying or live)
        self._changed: set[str] = set()
        self._change = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def total(self) -> int:
        return sum(self._watching.values())

    def of(self, generation_id: str) -> int:
        return self._watching.get(generation_id, 0)

    def watch(self, generation_id: str, delta: int) -> None:
        """``delta`` viewers joined (or, negative, left) ``generation_id``."""
        count = self._watching.get(generation_id, 0) + delta
        if count > 0:
            self._watching[generation_id] = count
        else:
            self._watching.pop(generation_id, None)
        self._changed.add(generation_id)
        self._change.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="hub-viewers")

    async def stop(self) -> None:
        """Stop publishing and remove this process's entries."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(RedisError, OSError):
            await self._presence.publish_viewers(dict.fromkeys(self._watching, 0), self._process_id)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        refresh: list[str] = []  # this period's generations whose counts are still to be rewritten
        period_end = next_piece = step = 0.0
        while True:
            if not refresh and loop.time() >= period_end:
                refresh = [gid for gid, n in self._watching.items() if n > 0]
                step = PUBLISH_S / max(1, math.ceil(len(refresh) / REFRESH_PIECE))  # evenly over the period
                next_piece, period_end = loop.time(), loop.time() + PUBLISH_S
            with contextlib.suppress(TimeoutError):
                wake_at = next_piece if refresh else period_end
                await asyncio.wait_for(self._change.wait(), max(0.0, wake_at - loop.time()))
            counts: dict[str, int] = {}
            if self._change.is_set():
                await asyncio.sleep(CHANGE_S)
                counts = {gid: self._watching.get(gid, 0) for gid in self._changed}
                self._changed = set()
                self._change.clear()
            now = loop.time()
            if refresh and now >= next_piece:
                size = len(refresh) if now >= period_end else REFRESH_PIECE
                piece, refresh = refresh[:size], refresh[size:]
                counts |= {gid: self._watching.get(gid, 0) for gid in piece if gid not in counts}
                next_piece += step
            if counts:
                try:
                    await self._presence.publish_viewers(counts, self._process_id)
                except (RedisError, OSError) as e:
                    logger.warning("hub: could not publish viewer counts: %s", e)
