"""Who is there: viewers per generation across API processes, worker beats, and the deployment's shared state
that health checks and metrics read (Redis itself, the deployment counters, queue depth, the share secret)."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Sequence
from typing import cast

from redis.asyncio import Redis

from reasonq.shared import keys
from reasonq.shared.scripts import load_script
from reasonq.shared.stats import read_stats

# Generations per call of the viewers script (each call runs in Redis at once: bounded).
VIEWERS_CHUNK = 1_000


class Presence:
    """Viewer counts, worker liveness and deployment-wide state.

    Args:
        redis: an asyncio Redis client with ``decode_responses=False``.
    """

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._viewers = load_script(redis, "viewers")

    async def publish_viewers(self, counts: dict[str, int], process_id: str) -> None:
        """Record how many viewers this API process has per generation (0 removes the entry): one script call per
        shard (``shared/lua/viewers.lua``), at most ``VIEWERS_CHUNK`` generations each."""
        if not counts:
            return
        expiry_ms = int(time.time() * 1000) + keys.VIEWERS_TTL_MS // 2
        calls = []
        for group in keys.by_shard(list(counts.items())).values():
            for i in range(0, len(group), VIEWERS_CHUNK):
                chunk = group[i : i + VIEWERS_CHUNK]
                calls.append(
                    self._viewers(
                        keys=[keys.viewers_key(gid) for gid, _ in chunk],
                        args=[process_id, expiry_ms, keys.VIEWERS_TTL_MS, *(count for _, count in chunk)],
                    )
                )
        await asyncio.gather(*calls)

    async def count_viewers(self, generation_id: str) -> int:
        """Viewers of a generation across every API process (entries of processes that stopped updating are
        ignored)."""
        now_ms = time.time() * 1000
        entries = cast(dict[bytes, bytes], await self._redis.hgetall(keys.viewers_key(generation_id)))
        total = 0
        for value in entries.values():
            count, _, expiry = value.decode().partition(" ")
            if float(expiry or 0) > now_ms:
                total += int(count)
        return total

    async def beat(self, worker_id: str, queues: Sequence[str] = ()) -> None:
        """A worker process is alive, consuming ``queues`` (readiness checks look for a recent beat)."""
        now_ms = int(time.time() * 1000)
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in (keys.workers_key(), *(keys.queue_workers_key(q) for q in queues)):
                pipe.zadd(key, {worker_id: now_ms})
                pipe.zremrangebyscore(key, "-inf", now_ms - keys.WORKERS_KEPT_MS)
            await pipe.execute()

    async def live_workers(self, within_ms: int = keys.LIVE_WORKER_MS) -> int:
        """Worker processes that beat within ``within_ms``."""
        now_ms = int(time.time() * 1000)
        return int(await self._redis.zcount(keys.workers_key(), now_ms - within_ms, "+inf"))

    async def live_workers_by_queue(
        self, queues: Sequence[str], within_ms: int = keys.LIVE_WORKER_MS
    ) -> dict[str, int]:
        """Per queue, the worker processes consuming it that beat within ``within_ms``."""
        now_ms = int(time.time() * 1000)
        async with self._redis.pipeline(transaction=False) as pipe:
            for queue in queues:
                pipe.zcount(keys.queue_workers_key(queue), now_ms - within_ms, "+inf")
            counts = await pipe.execute()
        return {queue: int(n) for queue, n in zip(queues, counts, strict=True)}

    async def ping(self) -> bool:
        """Redis answers."""
        return bool(await self._redis.ping())

    async def deployment_stats(self) -> dict[str, float]:
        """The deployment-wide counters and histograms the workers flush (``shared/stats.py``)."""
        return await read_stats(self._redis)

    async def queue_depth(self, queue: str) -> int:
        """Messages waiting in a Celery queue, when the broker is this Redis (a list named after the queue)."""
        return int(await self._redis.llen(queue))

    async def share_secret(self) -> bytes:
        """The deployment's share-link secret: the first API process to ask makes it, every other reads it."""
        await self._redis.set(keys.share_secret_key(), secrets.token_hex(32), nx=True)
        return cast(bytes, await self._redis.get(keys.share_secret_key()))
