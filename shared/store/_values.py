"""Small decoders the store's parts share."""

from __future__ import annotations

from redis.asyncio import Redis


def text_or_none(value: bytes | None) -> str | None:
    """A hash field as text, ``None`` when absent or empty."""
    return value.decode() if value else None


async def server_now_ms(redis: Redis) -> int:
    """Redis's clock in milliseconds (every process compares against the same clock)."""
    now_s, now_us = await redis.time()
    return int(now_s) * 1000 + int(now_us) // 1000
