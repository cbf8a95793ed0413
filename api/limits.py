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

from reasonq.api.auth import Principal
from reasonq.api.errors import ApiError
from reasonq.shared.schemas import GenerationCreate
from reasonq.shared.settings import Settings
from reasonq.shared.store.admission import AdmissionCounts


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
    chars = sum(len(m.content or "") + len(getattr(m, "thinking", None) or "") for m in body.messages)
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
    """Applies a key's per-minute and concurrency limits to creating requests (counted atomically in Redis).

    Args:
        counts: the store's admission counters.
        retention_s: how long an idle key's set of active generations lives.
    """

    def __init__(self, counts: AdmissionCounts, retention_s: int) -> None:
        self._counts = counts
        self._retention_s = retention_s

    async def admit(self, principal: Principal, member: str, *, interactive: bool) -> None:
        """Count one creating request (``member`` is the id it will create) or refuse it.

        Raises:
            ApiError: 429 with ``Retry-After`` over the per-minute or the concurrency limit.
        """
        limits = principal.limits
        if not limits.rpm and not (limits.concurrent and interactive):
            return
        outcome, value = await self._counts.admit(
            principal.name,
            member,
            rpm=limits.rpm,
            concurrent=limits.concurrent,
            interactive=interactive,
            active_ttl_s=self._retention_s,
        )
        if outcome == "rpm":
            retry_s = max(1, math.ceil(value / 1000))
            raise ApiError(
                429,
                "rate_limited",
                f"this key may create {limits.rpm} requests per minute; retry in {retry_s} s",
                {"Retry-After": str(retry_s)},
            )
        if outcome == "full":
            raise ApiError(
                429,
                "too_many_running",
                f"this key may have {limits.concurrent} generations queued or running at once; retry when one ends",
                {"Retry-After": "1"},
            )

    async def release(self, principal: Principal, member: str) -> None:
        """Un-count a request whose creation failed (so a failure costs the key nothing)."""
        await self._counts.release(principal.name, member)
