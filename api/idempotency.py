"""``Idempotency-Key``: one mechanism for every POST that creates something (generations, chat completions,
batches). The key maps to the request body's hash and the id of what the first request created; a retry with
the same body gets that id back (waiting briefly while the first is still creating it); another body is a 409.
The keys themselves are ``shared/store/idempotency.py``.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

from fastapi import Header

from reasonq.api.errors import ApiError
from reasonq.shared.store.idempotency import CLAIM_TTL_S, IdempotencyKeys

T = TypeVar("T")
MAX_LENGTH = 255
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
    store: IdempotencyKeys, scope: str, client_key: str, digest: str, new_id: str, ttl_s: int = CLAIM_TTL_S
) -> str | None:
    """``None`` when this request now owns the key for ``new_id`` for ``ttl_s`` (it must create it and
    ``complete`` the key, or ``release`` it on failure); else the id an earlier request with the same key and
    body created.

    Raises:
        ApiError: 422 for a malformed key, 409 when the key was used with another body.
    """
    if not 0 < len(client_key) <= MAX_LENGTH:
        raise ApiError(422, "invalid_request", f"header Idempotency-Key: must be 1 to {MAX_LENGTH} characters")
    outcome, seen_id = await store.claim(scope, client_key, digest, new_id, ttl_s)
    if outcome == "conflict":
        raise ApiError(409, "conflict", "this Idempotency-Key was used with a different request body")
    return None if outcome == "new" else seen_id


async def wait_for(fetch: Callable[[], Awaitable[T | None]], timeout_s: float = 5.0) -> T:
    """The object an earlier request with the same key is creating, once it exists."""
    for _ in range(int(timeout_s / 0.05)):
        found = await fetch()
        if found is not None:
            return found
        await asyncio.sleep(0.05)
    raise ApiError(409, "conflict", "a request with this Idempotency-Key is still being processed; retry")
