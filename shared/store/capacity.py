"""Provider capacity across every worker: concurrent-stream slots and a start rate per provider, taken in
submission order (``shared/lua/capacity.lua``), and the note a waiting generation leaves for its viewers.

A generation takes a slot before its first upstream request and gives it back when its run in this worker ends;
its worker's heartbeat extends the slot, so a killed worker's slot frees itself within one lease. A release is
published on ``keys.capacity_channel()`` so waiting workers try again at once instead of at their next poll.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from redis.asyncio import Redis

from reasonq.shared import keys
from reasonq.shared.events import StatusEvent, encode_event
from reasonq.shared.providers import ProviderConfig
from reasonq.shared.scripts import load_script


@dataclass(frozen=True, slots=True)
class Grant:
    """The answer to one try for a slot."""

    granted: bool
    retry_after_ms: int  # > 0 when the start rate, not the slots, holds it back
    held: int  # slots held (after this try)
    place: int  # place in line, 0-based; -1 when granted


class ProviderCapacity:
    """Slots, rate and waiting lines of every provider.

    Args:
        redis: an asyncio Redis client with ``decode_responses=False``.
    """

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._acquire = load_script(redis, "capacity")
        self._wait = load_script(redis, "wait")

    async def try_acquire(
        self,
        provider: ProviderConfig,
        generation_id: str,
        *,
        batch: bool,
        order_ms: int,
        slot_ttl_ms: int,
        alive_ttl_ms: int,
    ) -> Grant:
        """Take a slot of ``provider`` for ``generation_id`` if it is this one's turn and the rate allows; otherwise
        keep its place in line (for ``alive_ttl_ms``)."""
        args = [
            generation_id,
            "b" if batch else "i",
            order_ms,
            provider.max_concurrent,
            provider.reserved_slots,
            provider.rpm,
            slot_ttl_ms,
            alive_ttl_ms,
        ]
        granted, retry_ms, held, place = cast(
            list[int], await self._acquire(keys=keys.provider_keys(provider.name), args=args)
        )
        return Grant(bool(granted), int(retry_ms), int(held), int(place))

    async def release(self, provider_name: str, generation_id: str) -> None:
        """Give the slot back (or leave the line) and wake the workers waiting for this provider."""
        slots, waiting_i, waiting_b, alive, _ = keys.provider_keys(provider_name)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zrem(slots, generation_id)
            pipe.zrem(waiting_i, generation_id)
            pipe.zrem(waiting_b, generation_id)
            pipe.zrem(alive, generation_id)
            await pipe.execute()
        await self._redis.publish(keys.capacity_channel(), provider_name)

    async def renew(self, held: dict[str, list[str]], slot_ttl_ms: int) -> None:
        """Extend the slots this worker holds (provider name → generation ids) by ``slot_ttl_ms`` from now."""
        for provider_name, generation_ids in held.items():
            if not generation_ids:
                continue
            now_ms = int((await self._redis.time())[0]) * 1000
            slots = keys.provider_keys(provider_name)[0]
            await self._redis.zadd(slots, dict.fromkeys(generation_ids, now_ms + slot_ttl_ms), xx=True)

    async def held(self, provider_name: str) -> int:
        """Slots of a provider held now (expired ones included until the next try purges them)."""
        return int(await self._redis.zcard(keys.provider_keys(provider_name)[0]))

    async def note_waiting(self, generation_id: str, reason: str, first: bool) -> bool:
        """Keep a waiting generation's place in the queued index and, when ``first``, append a ``status queued``
        event that says why it waits. Returns ``False`` once it no longer waits (claimed, cancelled, ended)."""
        _, data = encode_event(StatusEvent(status="queued", attempt=0, reason=reason))
        reply = await self._wait(keys=keys.wait_keys(generation_id), args=[generation_id, data, "1" if first else "0"])
        return bool(reply)
