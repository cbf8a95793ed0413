"""``Idempotency-Key`` claims: the key maps to the request body's hash and the id of what the first request
created. The HTTP side (the header, 409s, waiting for a creation in progress) is ``api/idempotency.py``."""

from __future__ import annotations

from typing import Literal, cast

from redis.asyncio import Redis

from reasonq.shared import keys

# A claim lives this long unless the creation completes (then it lives for the retention time). A request that
# died between its claim and its create left the key answering 409 for 24 h (issue 18); creating takes well
# under a second (the broker send retries for at most ~1 s), and a 50,000-line batch a few seconds.
CLAIM_TTL_S = 30
ClaimOutcome = Literal["new", "same", "conflict"]


class IdempotencyKeys:
    """Claims, completes and releases idempotency keys.

    Args:
        redis: an asyncio Redis client with ``decode_responses=False``.
    """

    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def claim(
        self, scope: str, client_key: str, digest: str, new_id: str, ttl_s: int = CLAIM_TTL_S
    ) -> tuple[ClaimOutcome, str]:
        """``("new", new_id)`` when this request now owns the key for ``ttl_s`` (it must create ``new_id`` and
        ``complete`` the key, or ``release`` it on failure); ``("same", id)`` with the id an earlier request with
        the same body created; ``("conflict", "")`` when the key was used with another body."""
        key = keys.idempotency_key(scope, client_key)
        while True:
            if await self._redis.set(key, f"{digest} {new_id}", nx=True, ex=ttl_s):
                return "new", new_id
            seen = cast(bytes | None, await self._redis.get(key))
            if seen is not None:  # else it expired between the two calls: take it now
                break
        seen_digest, _, seen_id = seen.decode().partition(" ")
        if seen_digest != digest:
            return "conflict", ""
        return "same", seen_id

    async def complete(self, scope: str, client_key: str, retention_s: int) -> None:
        """The creation succeeded: the key now answers with its id for the retention time."""
        await self._redis.expire(keys.idempotency_key(scope, client_key), retention_s)

    async def release(self, scope: str, client_key: str) -> None:
        """Free the key after a failed creation, so a retry can create."""
        await self._redis.delete(keys.idempotency_key(scope, client_key))
