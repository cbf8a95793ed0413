"""Per-owner indexes by time (an owner's files, batches): add the newest, walk them newest first with a cursor."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import cast

from redis.asyncio import Redis

from reasonq.shared import keys


async def add_newest(redis: Redis, index: str, member: str, score: float) -> None:
    """Add ``member`` to a sorted set by time and keep its newest ``keys.RECENT_KEPT``."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zadd(index, {member: score})
        pipe.zremrangebyrank(index, 0, -keys.RECENT_KEPT - 1)
        await pipe.execute()


async def newest_first(redis: Redis, index: str, after: str | None) -> AsyncIterator[str]:
    """The members of a sorted set by time, newest first, from just after ``after`` (a cursor: nothing when
    ``after`` is not in it), read 200 at a time."""
    start = 0
    if after is not None:
        rank = cast(int | None, await redis.zrevrank(index, after))
        if rank is None:
            return
        start = int(rank) + 1
    while True:
        ids = cast(list[bytes], await redis.zrevrange(index, start, start + 199))
        if not ids:
            return
        start += len(ids)
        for raw in ids:
            yield raw.decode()
