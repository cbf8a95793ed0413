"""``Idempotency-Key``: one mechanism for every POST that creates something (generations, chat completions,
batches). The key maps to the request body's hash and the id of what the first request created; a retry with
the same body gets that id back (waiting briefly while the first is still creating it); another body is a 409.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar, cast

from fastapi import Header
from redis.asyncio import Redis

from reasonq.api.errors import ApiError
from reasonq.shared import keys

T = TypeVar("T")
MAX_LENGTH = 255
# A claim lives this long unless the creation completes (then it lives for the retention time). A request that
# died between its claim and its create left the key answering 409 for 24 h (issue 18); creating takes well
# under a second (the broker send retries for at most ~1 s), and a 50,000-line batch a few seconds.
CLAIM_TTL_S = 30
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=MAX_LENGTH,
        description="Retry-safe creation: same key and body, same object.",
    ),
]


def body_hash(body: bytes) -> str:
    """What two requests must share to be the same request."""
    return hashlib.sha256(body).hexdigest()[:32]


async def claim(
    redis: Redis, scope: str, client_key: str, digest: str, new_id: str, ttl_s: int = CLAIM_TTL_S
) -> str | None:
    """``None`` when this request now owns the key for ``new_id`` for ``ttl_s`` (it must create it and
    ``complete`` the key, or ``release`` it on failure); else the id an earlier request with the same key and
    body created.

    Raises:
        ApiError: 422 for a malformed key, 409 when the key was used with another body.
    """
    if not 0 < len(client_key) <= MAX_LENGTH:
        raise ApiError(422, "invalid_request", f"header Idempotency-Key: must be 1 to {MAX_LENGTH} characters")
    key = keys.idempotency_key(scope, client_key)
    if await redis.set(key, f"{digest} {new_id}", nx=True, ex=ttl_s):
        return None
    seen = cast(bytes | None, await redis.get(key))
    if seen is None:  # expired between the two calls: take it now
        return await claim(redis, scope, client_key, digest, new_id, ttl_s)
    seen_digest, _, seen_id = seen.decode().partition(" ")
    if seen_digest != digest:
        raise ApiError(409, "conflict", "this Idempotency-Key was used with a different request body")
    return seen_id


async def complete(redis: Redis, scope: str, client_key: str, retention_s: int) -> None:
    """The creation succeeded: the key now answers with its id for the retention time."""
    await redis.expire(keys.idempotency_key(scope, client_key), retention_s)


async def release(redis: Redis, scope: str, client_key: str) -> None:
    """Free the key after a failed creation, so a retry can create."""
    await redis.delete(keys.idempotency_key(scope, client_key))


async def wait_for(fetch: Callable[[], Awaitable[T | None]], timeout_s: float = 5.0) -> T:
    """The object an earlier request with the same key is creating, once it exists."""
    for _ in range(int(timeout_s / 0.05)):
        found = await fetch()
        if found is not None:
            return found
        await asyncio.sleep(0.05)
    raise ApiError(409, "conflict", "a request with this Idempotency-Key is still being processed; retry")
