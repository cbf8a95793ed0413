"""Group commit across callers: concurrent script calls of one process go to Redis as one pipeline.

redis-py's asyncio client spends about 80 µs of CPU on one EVALSHA round trip and about 18 µs per command
inside a pipeline (measured on this machine with 200 concurrent writers). A worker process running hundreds
of generations therefore sends their writes together: the first call after a quiet moment goes at once (one
round trip, no added latency); calls made while a pipeline is in flight wait for it and leave together in the
next one. Each caller still gets its own result or error.

On a Redis Cluster redis-py refuses scripts in a pipeline (a pipeline spans nodes), so there each call of the
batch is sent on its own, concurrently: the writes still leave together, one round trip per call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from reasonq.shared.redis import is_cluster

logger = logging.getLogger(__name__)

_Call = tuple[AsyncScript, list[str], list[Any], "asyncio.Future[Any]"]


class ScriptBatcher:
    """Pipelines the script calls of many concurrent callers, one pipeline in flight at a time.

    Args:
        redis: the client whose connection pool carries the pipelines.
    """

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._queue: list[_Call] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.pipelines = 0
        self.calls = 0
        self._cluster = is_cluster(redis)

    async def call(self, script: AsyncScript, keys: list[str], args: list[Any]) -> Any:
        """Run ``script`` with ``keys`` and ``args`` in the next pipeline; returns its reply."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="script-batcher")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((script, keys, args, future))
        self._wakeup.set()
        return await future

    async def close(self) -> None:
        """Stop the background task."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            batch, self._queue = self._queue, []
            if batch:
                await self._send(batch)

    async def _send(self, batch: list[_Call]) -> None:
        self.pipelines += 1
        self.calls += len(batch)
        if self._cluster:
            await asyncio.gather(*(self._send_one(call) for call in batch))
            return
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for script, keys, args, _ in batch:
                    pipe.evalsha(script.sha, len(keys), *keys, *args)
                replies = await pipe.execute(raise_on_error=False)
        except Exception as e:  # the whole pipeline failed (Redis unreachable): every caller sees it
            for *_, future in batch:
                if not future.done():
                    future.set_exception(e)
            return
        for (script, keys, args, future), reply in zip(batch, replies, strict=True):
            if future.done():
                continue
            if isinstance(reply, NoScriptError):  # Redis restarted and forgot its scripts: load and run again
                try:
                    reply = await script(keys=keys, args=args)
                except Exception as e:
                    future.set_exception(e)
                    continue
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    @staticmethod
    async def _send_one(call: _Call) -> None:
        script, keys, args, future = call
        try:
            reply = await script(keys=keys, args=args)
        except Exception as e:
            if not future.done():
                future.set_exception(e)
            return
        if not future.done():
            future.set_result(reply)
