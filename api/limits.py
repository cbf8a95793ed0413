"""Limits on what one request and one key may ask for, all checked before anything is written.

Request limits (every caller): how many messages, how many characters in all. Per-key limits: the models it may
use and the highest ``max_tokens`` (a request without ``max_tokens`` gets the cap), then, atomically in Redis,
creating requests per minute and interactive generations queued or running at once (``shared/lua/admit.lua``).

Only the rate and concurrency limits answer 429 with ``Retry-After``: they pass with time. A model the key may
not use (403) or a ``max_tokens`` above its cap (422) would fail again on every retry, and the openai SDK retries
429s by itself, so a 429 there would only spend the caller's retries.
"""

from __future__ import annotations

import math
from typing import Any, cast

from redis.asyncio import Redis

from reasonq.api.auth import Principal
from reasonq.api.errors import ApiError
from reasonq.shared import keys
from reasonq.shared.events import TERMINAL_STATUSES
from reasonq.shared.schemas import GenerationCreate
from reasonq.shared.scripts import load_script
from reasonq.shared.settings import Settings


def check_request(body: GenerationCreate, settings: Settings, principal: Principal, where: str = "") -> None:
    """Apply the request limits and the key's model and ``max_tokens`` limits (filling in the default model and
    the key's ``max_tokens`` cap).

    Raises:
        ApiError: 422 naming the field over its limit, 403 for a model the key may not use, 404 for a model this
            deployment does not offer (OpenAI's answer, ``model_not_found``; 422 in a batch line).
    """
    prefix = f"{where}: " if where else ""
    if len(body.messages) > settings.max_messages:
        raise ApiError(
            422, "invalid_request", f"{prefix}messages: {len(body.messages)} messages; at most {settings.max_messages}"
        )
    chars = sum(len(m.content) for m in body.messages)
    if chars > settings.max_prompt_chars:
        raise ApiError(
            422,
            "invalid_request",
            f"{prefix}messages: {chars} characters in all; at most {settings.max_prompt_chars}",
        )
    body.model = body.model or settings.default_model
    limits = principal.limits
    if limits.models is not None and body.model not in limits.models:
        allowed = ", ".join(sorted(limits.models))
        raise ApiError(
            403, "model_not_allowed", f"{prefix}model: {body.model!r} is not allowed for this key (allowed: {allowed})"
        )
    if not settings.offers_model(body.model):
        offered = ", ".join(settings.model_list)
        raise ApiError(
            422 if where else 404,  # a batch line: rejected with its line number, like any bad line
            "model_not_found",
            f"{prefix}model: {body.model!r} is not offered here (offered: {offered}; GET /v1/models lists them)",
        )
    if limits.max_tokens:
        if body.max_tokens is None:
            body.max_tokens = limits.max_tokens
        elif body.max_tokens > limits.max_tokens:
            raise ApiError(422, "invalid_request", f"{prefix}max_tokens: at most {limits.max_tokens} for this key")


class Admission:
    """Counts creating requests against a key's per-minute and concurrency limits, atomically."""

    def __init__(self, redis: Redis, retention_s: int) -> None:
        self._redis = redis
        self._retention_s = retention_s
        self._admit = load_script(redis, "admit")

    async def admit(self, principal: Principal, member: str, *, interactive: bool) -> None:
        """Count one creating request (``member`` is the id it will create) or refuse it.

        Raises:
            ApiError: 429 with ``Retry-After`` over the per-minute or the concurrency limit.
        """
        limits = principal.limits
        if not limits.rpm and not (limits.concurrent and interactive):
            return
        args: list[Any] = [
            limits.rpm,
            limits.concurrent,
            member,
            int(interactive),
            self._retention_s,
            keys.RATE_WINDOW_MS,
        ]
        outcome, value = await self._admit(keys=self._keys(principal), args=args)
        if outcome == b"full" and await self._prune_ended(principal):
            outcome, value = await self._admit(keys=self._keys(principal), args=args)
        if outcome == b"rpm":
            retry_s = max(1, math.ceil(int(value) / 1000))
            raise ApiError(
                429,
                "rate_limited",
                f"this key may create {limits.rpm} requests per minute; retry in {retry_s} s",
                {"Retry-After": str(retry_s)},
            )
        if outcome == b"full":
            raise ApiError(
                429,
                "too_many_running",
                f"this key may have {limits.concurrent} generations queued or running at once; retry when one ends",
                {"Retry-After": "1"},
            )

    async def _prune_ended(self, principal: Principal) -> int:
        """Drop from the key's active set the generations that ended (or whose creation never happened, after
        ``keys.PENDING_CREATE_MS``); how many were dropped. Safe beside concurrent admissions: the script re-checks
        the set's size atomically, and removing an ended member twice is harmless."""
        active_key = keys.key_active_key(principal.name)
        members = cast(list[tuple[bytes, float]], await self._redis.zrange(active_key, 0, -1, withscores=True))
        async with self._redis.pipeline(transaction=False) as pipe:
            for member, _ in members:
                pipe.hget(keys.record_key(member.decode()), "status")
            statuses = cast(list[bytes | None], await pipe.execute())
        now_s, now_us = await self._redis.time()
        now_ms = int(now_s) * 1000 + int(now_us) // 1000
        ended = [
            member
            for (member, score), status in zip(members, statuses, strict=True)
            if (status is not None and status.decode() in TERMINAL_STATUSES)
            or (status is None and score < now_ms - keys.PENDING_CREATE_MS)
        ]
        if ended:
            await self._redis.zrem(active_key, *ended)
        return len(ended)

    async def release(self, principal: Principal, member: str) -> None:
        """Un-count a request whose creation failed (so a failure costs the key nothing)."""
        rate_key, active_key = self._keys(principal)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zrem(rate_key, member)
            pipe.zrem(active_key, member)
            await pipe.execute()

    @staticmethod
    def _keys(principal: Principal) -> list[str]:
        return [keys.key_rate_key(principal.name), keys.key_active_key(principal.name)]
