"""Streaming a chat completion from any OpenAI-compatible endpoint through the official ``openai`` SDK."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import openai
from openai import AsyncOpenAI, AsyncStream
from openai.types.chat import ChatCompletionChunk

from shared.errors import ModelError, redact
from shared.schemas import GenerationCreate
from shared.settings import Settings

# Request fields passed to the provider when the client set them.
_OPTIONAL_PARAMS = ("max_tokens", "temperature", "top_p", "reasoning_effort", "stop", "seed")


@dataclass(frozen=True, slots=True)
class StreamOutcome:
    """How the upstream stream ended."""

    finish_reason: str | None
    usage: dict[str, Any] | None


def create_model_client(settings: Settings) -> AsyncOpenAI:
    """One client per worker process: it pools connections to the provider (up to 1,000 by the SDK's default).

    The SDK's own retries are off: a retry after tokens were streamed would duplicate them.
    """
    return AsyncOpenAI(
        base_url=settings.model_base_url,
        api_key=settings.model_api_key.get_secret_value() or "unset",
        max_retries=0,
        timeout=openai.Timeout(settings.model_timeout_s, connect=settings.model_connect_timeout_s),
    )


def _model_error(e: Exception, secrets: list[str]) -> ModelError:
    if isinstance(e, openai.APIStatusError):
        return ModelError(
            "provider_http_error",
            redact(f"provider answered HTTP {e.status_code}: {e.message}", secrets),
            e.status_code,
        )
    if isinstance(e, openai.APITimeoutError):
        return ModelError("provider_timeout", "provider timed out")
    if isinstance(e, openai.APIConnectionError):
        cause = e.__cause__ or e
        return ModelError("provider_connection", redact(f"connection to provider failed: {cause!r}", secrets))
    return ModelError("provider_error", redact(f"{type(e).__name__}: {e}", secrets))


async def stream_completion(
    client: AsyncOpenAI,
    request: GenerationCreate,
    model: str,
    on_delta: Callable[[str, str], None],
    secrets: list[str],
) -> StreamOutcome:
    """Stream one completion, calling ``on_delta(kind, text)`` for each reasoning or content delta.

    DeepSeek sends the reasoning trace as ``delta.reasoning_content``, vLLM (newer) as ``delta.reasoning``; the
    SDK keeps both as extra attributes. Usage comes from the final chunk (``choices == []``).

    Raises:
        ModelError: the provider failed (HTTP error, timeout, broken stream); its message is redacted.
    """
    params: dict[str, Any] = {
        name: getattr(request, name) for name in _OPTIONAL_PARAMS if getattr(request, name) is not None
    }
    params |= {
        "model": model,
        "messages": [m.model_dump() for m in request.messages],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None
    try:
        stream = cast(AsyncStream[ChatCompletionChunk], await client.chat.completions.create(**params))
        async with stream:
            async for chunk in stream:
                if chunk.usage is not None:
                    usage = chunk.usage.model_dump(exclude_none=True)
                for choice in chunk.choices:
                    delta = choice.delta
                    extra = delta.model_extra or {}
                    reasoning = extra.get("reasoning_content") or extra.get("reasoning")
                    if reasoning:
                        on_delta("reasoning", reasoning)
                    if delta.content:
                        on_delta("content", delta.content)
                    if choice.finish_reason is not None:
                        finish_reason = choice.finish_reason
    except openai.OpenAIError as e:
        raise _model_error(e, secrets) from e
    if finish_reason is None:
        raise ModelError("provider_stream_incomplete", "provider stream ended without a finish reason")
    return StreamOutcome(finish_reason=finish_reason, usage=usage)
