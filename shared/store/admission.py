"""Per-key admission counts: creating requests in the last minute and generations queued or running at once,
counted atomically (``shared/lua/admit.lua``). The policy (which limits, what a refusal says) is
``api/limits.py``."""

from __future__ import annotations

from typing import Any, Literal, cast

from redis.asyncio import Redis

from reasonq.shared import keys
from reasonq.shared.events import TERMINAL_STATUSES
from reasonq.shared.scripts import load_script
from reasonq.shared.store._values import server_now_ms

AdmitOutcome = Literal["ok", "rpm", "full"]


class AdmissionCounts:
    """Counts creating requests per key.

    Args:
        redis: an asyncio Redis client with ``decode_responses=False``.
    """

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._admit = load_script(redis, "admit")

    async def admit(
        self, owner: str, member: str, *, rpm: int, concurrent: int, interactive: bool, active_ttl_s: int
    ) -> tuple[AdmitOutcome, int]:
        """Count one creating request (``member`` is the id it will create) unless over a limit; the key's set
        of active generations lives ``active_ttl_s`` after its last admission.

        Returns ``("ok", 0)``, ``("rpm", ms until a slot frees)`` or ``("full", 0)``. A full concurrency set is
        first pruned of generations that ended, then asked again.
        """
        args: list[Any] = [rpm, concurrent, member, int(interactive), active_ttl_s, keys.RATE_WINDOW_MS]
        outcome, value = await self._admit(keys=self._keys(owner), args=args)
        if outcome == b"full" and await self._prune_ended(owner):
            outcome, value = await self._admit(keys=self._keys(owner), args=args)
        return cast(AdmitOutcome, outcome.decode()), int(value)

    async def _prune_ended(self, owner: str) -> int:
        """Drop from the key's active set the generations that ended (or whose creation never happened, after
        ``keys.PENDING_CREATE_MS``); how many were dropped. Safe beside concurrent admissions: the script re-checks
        the set's size atomically, and removing an ended member twice is harmless."""
        active_key = keys.key_active_key(owner)
        members = cast(list[tuple[bytes, float]], await self._redis.zrange(active_key, 0, -1, withscores=True))
        async with self._redis.pipeline(transaction=False) as pipe:
            for member, _ in members:
                pipe.hget(keys.record_key(member.decode()), "status")
            statuses = cast(list[bytes | None], await pipe.execute())
        now_ms = await server_now_ms(self._redis)
        ended = [
            member
            for (member, score), status in zip(members, statuses, strict=True)
            if (status is not None and status.decode() in TERMINAL_STATUSES)
            or (status is None and score < now_ms - keys.PENDING_CREATE_MS)
        ]
        if ended:
            await self._redis.zrem(active_key, *ended)
        return len(ended)

    async def release(self, owner: str, member: str) -> None:
        """Un-count a request whose creation failed (so a failure costs the key nothing)."""
        rate_key, active_key = self._keys(owner)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zrem(rate_key, member)
            pipe.zrem(active_key, member)
            await pipe.execute()

    @staticmethod
    def _keys(owner: str) -> list[str]:
        return [keys.key_rate_key(owner), keys.key_active_key(owner)]
