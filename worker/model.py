"""Streaming a chat completion from any OpenAI-compatible endpoint through the official ``openai`` SDK."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx2
import openai
import orjson
from openai import AsyncOpenAI

from reasonq.shared.errors import ModelError, redact
from reasonq.shared.events import CONTENT, REASONING, DeltaKind, tool_call_kind
from reasonq.shared.providers import ProviderConfig
from reasonq.shared.settings import Settings
from reasonq.worker.chunks import ProviderStreamError, iter_chunks

_RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 520, 522, 524, 529})


@dataclass(frozen=True, slots=True)
class StreamOutcome:
    """How the upstream stream ended."""

    finish_reason: str | None
    usage: dict[str, Any] | None
    system_fingerprint: str | None = None


@dataclass(frozen=True, slots=True)
class StreamLimits:
    """Time limits of one upstream stream, in the event loop's clock."""

    stall_timeout_s: float
    deadline: float


# A tool call's first fragment: (index, id, function name, arguments so far).
ToolCallStart = Callable[[int, str | None, str | None, str], None]


def create_model_client(settings: Settings, provider: ProviderConfig | None = None) -> AsyncOpenAI:
    """One client per provider per worker process (call it inside the process's event loop); ``provider``
    defaults to the settings' own (``model_base_url``).

    It pools connections to the provider (up to 1,000, the SDK's default) over the SDK's aiohttp transport:
    with hundreds of concurrent streams, each token is one small read, and aiohttp's C parser costs about half
    the CPU per read of the default transport (35 vs 77 µs per token for a lean client of 500 simulated streams
    at 30 tokens/s on this machine). The SDK's own retries are off: reasonq retries itself, visibly, and never
    after tokens were streamed.
    """
    timeout = openai.Timeout(settings.model_timeout_s, connect=settings.model_connect_timeout_s)
    base_url = provider.base_url if provider is not None else settings.model_base_url
    api_key = (provider.api_key if provider is not None else settings.model_api_key).get_secret_value()
    return AsyncOpenAI(
        base_url=base_url,
        api_key=api_key or "unset",
        max_retries=0,
        timeout=timeout,
        http_client=openai.DefaultAioHttpClient(timeout=timeout),
    )


def _retry_after_s(e: openai.APIStatusError) -> float | None:
    value = e.response.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _connection_failure(e: BaseException) -> BaseException | None:
    """The OS-level connection error under ``e``, if any (the aiohttp transport reports a refused connection
    as a connect *timeout*; the cause chain tells the truth)."""
    seen: BaseException | None = e
    while seen is not None:
        if isinstance(seen, OSError) and not isinstance(seen, TimeoutError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _model_error(e: Exception, secrets: list[str]) -> ModelError:
    refused = _connection_failure(e)
    if refused is not None and not isinstance(e, openai.APIStatusError):
        message = redact(f"connection to provider failed: {type(refused).__name__}: {refused}", secrets)
        return ModelError("provider_connection", message, retryable=True)
    if isinstance(e, openai.APIStatusError):
        return ModelError(
            "provider_http_error",
            redact(f"provider answered HTTP {e.status_code}: {e.message}", secrets),
            e.status_code,
            retryable=e.status_code in _RETRYABLE_STATUS,
            retry_after_s=_retry_after_s(e),
        )
    if isinstance(e, openai.APITimeoutError):
        return ModelError("provider_timeout", "provider timed out", retryable=True)
    if isinstance(e, openai.APIConnectionError):
        cause = e.__cause__ or e
        message = redact(f"connection to provider failed: {type(cause).__name__}: {cause}", secrets)
        return ModelError("provider_connection", message, retryable=True)
    if isinstance(e, httpx2.TimeoutException):
        return ModelError("provider_timeout", "provider timed out", retryable=True)
    if isinstance(e, httpx2.TransportError):
        message = redact(f"connection to provider failed: {type(e).__name__}: {e}", secrets)
        return ModelError("provider_connection", message, retryable=True)
    if isinstance(e, ProviderStreamError):
        return ModelError("provider_stream_error", redact(f"provider sent an error: {e}", secrets), retryable=True)
    if isinstance(e, orjson.JSONDecodeError):
        return ModelError("provider_bad_chunk", "provider sent a chunk that is not JSON", retryable=True)
    return ModelError("provider_error", redact(f"{type(e).__name__}: {e}", secrets))


@contextlib.asynccontextmanager
async def _open_stream(client: AsyncOpenAI, params: dict[str, Any]) -> AsyncIterator[httpx2.Response]:
    """POST ``params`` to the provider's chat completions through the SDK (its auth, headers, timeouts and error
    statuses) and yield the unread streaming response, closed on the way out.

    Not ``client.chat.completions.create``: it first runs the SDK's request transform, a walk of the body against
    the SDK's TypedDict unions that hashes typing aliases at every level. For chat completions it changes nothing
    (no renamed keys, no formatted values), yet it costs about 0.25 ms per request for one message and grows with
    the conversation, and it was 18 % of a worker loop's busy time while 500 generations started at once (py-spy,
    ``bench --scenario burst``). ``client.post`` is the SDK's documented way to send a body of one's own; what
    ``extra_body`` adds is merged in as the SDK merges it. LiteLLM skips the transform the same way
    (BerriAI/litellm#29769); ``tests/worker/test_model_request.py`` pins the body to ``create()``'s.
    """
    body = {name: value for name, value in params.items() if name != "extra_body"} | params.get("extra_body", {})
    response = await client.post("/chat/completions", cast_to=httpx2.Response, body=body, stream=True)
    try:
        yield response
    finally:
        await response.aclose()


async def stream_completion(
    client: AsyncOpenAI,
    params: dict[str, Any],
    on_delta: Callable[[DeltaKind, str], None],
    secrets: list[str],
    limits: StreamLimits,
    on_tool_call: ToolCallStart | None = None,
) -> StreamOutcome:
    """Stream one completion, calling ``on_delta(kind, text)`` for each reasoning or content delta.

    A tool call's first fragment goes to ``on_tool_call(index, id, name, arguments)``; its later argument fragments
    to ``on_delta(tool_call_kind(index), text)`` (a provider that repeats the id or name on later fragments is
    read the same way).

    The SDK builds, authenticates and sends the request and raises for an error status; the body is read by
    ``worker.chunks`` (40x less CPU per token than the SDK's per-chunk models). DeepSeek sends the reasoning
    trace as ``delta.reasoning_content``, vLLM (newer) as ``delta.reasoning``; both are read. Usage comes from
    the final chunk (``choices == []``). Leaving early (a cancelled task) closes the upstream HTTP response, so
    the provider stops generating.

    Raises:
        ModelError: the provider failed (HTTP error, timeout, broken stream), no token came for
            ``stall_timeout_s``, or the deadline passed; the message is redacted.
    """
    loop = asyncio.get_running_loop()
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None
    fingerprint: str | None = None
    calls_started: set[int] = set()
    try:
        async with asyncio.timeout(min(limits.deadline, loop.time() + limits.stall_timeout_s)) as budget:
            async with _open_stream(client, params) as response:
                async for chunk in iter_chunks(response.aiter_bytes()):
                    budget.reschedule(min(limits.deadline, loop.time() + limits.stall_timeout_s))
                    if chunk.get("usage"):
                        usage = chunk["usage"]
                    if fingerprint is None and isinstance(chunk.get("system_fingerprint"), str):
                        fingerprint = chunk["system_fingerprint"][:200]
                    for choice in chunk.get("choices") or ():
                        delta = choice.get("delta") or {}
                        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
                        if reasoning:
                            on_delta(REASONING, reasoning)
                        content = delta.get("content")
                        if content:
                            on_delta(CONTENT, content)
                        for position, call in enumerate(delta.get("tool_calls") or ()):
                            index = call.get("index", position)
                            if not isinstance(index, int) or isinstance(index, bool) or index < 0:
                                index = position
                            function = call.get("function") or {}
                            arguments = function.get("arguments") or ""
                            if index not in calls_started:
                                calls_started.add(index)
                                if on_tool_call is not None:
                                    on_tool_call(index, call.get("id"), function.get("name"), arguments)
                            elif arguments:
                                on_delta(tool_call_kind(index), arguments)
                        if choice.get("finish_reason") is not None:
                            finish_reason = choice["finish_reason"]
    except TimeoutError as e:
        if loop.time() >= limits.deadline:
            raise ModelError("generation_timeout", "the generation ran past its deadline") from e
        raise ModelError("stall_timeout", f"no token from the provider for {limits.stall_timeout_s:g} s") from e
    except (openai.OpenAIError, httpx2.HTTPError, ProviderStreamError, orjson.JSONDecodeError) as e:
        raise _model_error(e, secrets) from e
    if finish_reason is None:
        raise ModelError("provider_stream_incomplete", "provider stream ended without a finish reason", retryable=True)
    return StreamOutcome(finish_reason=finish_reason, usage=usage, system_fingerprint=fingerprint)


def retry_delay_s(settings: Settings, retry: int, error: ModelError) -> float:
    """The wait before retry ``retry`` (from 0) of a request that failed before its first token: backoff with
    jitter, at least the provider's ``Retry-After``."""
    delay = min(settings.provider_backoff_max_s, settings.provider_backoff_s * 2**retry)
    delay *= 0.5 + random.random() / 2  # jitter: retries from many generations do not arrive together
    if error.retry_after_s is not None:
        delay = max(delay, min(error.retry_after_s, settings.provider_backoff_max_s))
    return float(round(delay, 3))


def falls_back(e: ModelError) -> bool:
    """Whether a failure before the first token sends the generation to the provider's fallback: the provider is
    down or unreachable (5xx, connection error, timeout), not refusing this request."""
    if e.kind in ("provider_connection", "provider_timeout"):
        return True
    return e.kind == "provider_http_error" and (e.status_code or 0) >= 500
