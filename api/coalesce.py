"""Concurrent reads of one key share one Redis round trip, each as fresh as a read of its own.

A join storm is thousands of viewers opening one generation within a second: each checked its access and opened
the topic with its own round trip, so 5,000 joins queued 10,000 Redis calls behind a pool of 64, and 37 viewers
got ``No connection available`` (issue 14). Here a caller that finds a read of its key in flight does not take
that read's result (it started before the caller asked, and may predate a write the caller has seen, such as a
revoked share link): it waits for the next read, which starts when the one in flight ends and serves everyone
who asked meanwhile. So there are at most two reads per key at any time, however many callers, and no caller
gets an answer older than its own call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Coalescer(Generic[K, V]):
    """``await coalescer.get(key)`` is ``await fetch(key)``, shared with the callers of the same key at once."""

    def __init__(self, fetch: Callable[[K], Awaitable[V]]) -> None:
        self._fetch = fetch
        self._running: dict[K, asyncio.Future[V]] = {}
        self._next: dict[K, asyncio.Future[V]] = {}

    async def get(self, key: K) -> V:
        """The value of ``key`` from a read that started at or after this call."""
        future = self._next.get(key)
        if future is None:
            if key in self._running:
                # A read in flight started before this call: wait for the next one (started when it ends).
                future = self._next[key] = asyncio.get_running_loop().create_future()
            else:
                future = self._start(key)
        # Shielded: a caller that gives up (a viewer that disconnected) does not cancel the others' read.
        return await asyncio.shield(future)

    def _start(self, key: K) -> asyncio.Future[V]:
        task = asyncio.ensure_future(self._fetch(key))
        self._running[key] = task
        task.add_done_callback(lambda done: self._finished(key, done))
        return task

    def _finished(self, key: K, done: asyncio.Future[V]) -> None:
        del self._running[key]
        if not done.cancelled():
            done.exception()  # retrieved here: every caller may have left; each that stayed gets it from await
        waiting = self._next.pop(key, None)
        if waiting is not None:
            self._start(key).add_done_callback(lambda read: _settle(waiting, read))


def _settle(target: asyncio.Future[V], source: asyncio.Future[V]) -> None:
    if target.done():
        return
    if source.cancelled():
        target.cancel()
    elif (error := source.exception()) is not None:
        target.set_exception(error)
        target.exception()  # mark retrieved: the callers that stayed raise it from their await
    else:
        target.set_result(source.result())
