"""The OpenAI-compatible front door: ``POST /v1/chat/completions`` and ``GET /v1/models``.

An unchanged ``openai`` client (``OpenAI(base_url=".../v1")``) runs its chat completions as durable
generations: the request becomes a generation, and the answer is read from its event stream. If the caller's
connection drops, the generation goes on; its id is in the ``X-Reasonq-Generation-Id`` header and in every
chunk's ``id``, so it can be re-joined at ``/v1/generations/{id}/events``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any, Literal

import orjson
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator

from reasonq.api.auth import PrincipalDep
from reasonq.api.deps import HubDep, SettingsDep, StoreDep, SubmitterDep
from reasonq.api.errors import ApiError, error_responses
from reasonq.api.hub import Hub
from reasonq.api.idempotency import IdempotencyKey
from reasonq.api.sse import StreamResponse
from reasonq.shared.events import parse_sse
from reasonq.shared.schemas import CHAT_OPTIONS, ChatOptions, GenerationCreate, MaxTokens, Message, Text

router = APIRouter(prefix="/v1", tags=["openai-compatible"])
ID_HEADER = "X-Reasonq-Generation-Id"


class TextPart(BaseModel):
    """A text content part (the only kind of part reasonq passes on)."""

    model_config = ConfigDict(strict=True)

    type: Literal["text"]
    text: Text


class ChatMessage(BaseModel):
    """A chat message as the OpenAI API takes it: text or a list of text parts."""

    model_config = ConfigDict(strict=True)

    role: Literal["system", "developer", "user", "assistant"]
    content: Text | list[TextPart]
    name: str | None = None

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class StreamOptions(BaseModel):
    model_config = ConfigDict(strict=True)

    include_usage: bool = False


class ChatCompletionRequest(ChatOptions):
    """The chat-completions request the ``openai`` SDK sends. Options that would change what comes back in ways
    reasonq does not do (several choices, tools, structured output, log probabilities) are refused by name;
    other unknown options are ignored, as OpenAI-compatible servers do."""

    model_config = ConfigDict(extra="ignore")

    # metadata: OpenAI allows 16 pairs; more would be cut silently, so more are refused (ChatOptions).
    messages: list[ChatMessage] = Field(min_length=1)
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    max_completion_tokens: MaxTokens | None = None
    n: Literal[1] | None = None
    tools: None = None
    tool_choice: None = None
    functions: None = None
    response_format: None = None
    logprobs: Literal[False] | None = None

    @field_validator("tools", "tool_choice", "functions", "response_format", mode="before")
    @classmethod
    def _unsupported(cls, value: Any) -> None:
        if value is not None:
            raise ValueError("is not supported by reasonq")
        return None

    def to_generation(self) -> GenerationCreate:
        """The native request this becomes."""
        options = {name: getattr(self, name) for name in CHAT_OPTIONS}
        options["max_tokens"] = self.max_tokens or self.max_completion_tokens
        return GenerationCreate(messages=[Message(role=m.role, content=m.text()) for m in self.messages], **options)


def _chunk(head: dict[str, Any], delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
    body = {**head, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]}
    return b"data: " + orjson.dumps(body) + b"\n\n"


def _error(message: str, kind: str) -> bytes:
    return b"data: " + orjson.dumps({"error": {"message": message, "type": kind}}) + b"\n\n"


async def _openai_chunks(
    hub: Hub, generation_id: str, head: dict[str, Any], include_usage: bool
) -> AsyncIterator[bytes]:
    """The generation's events as OpenAI chunks, ending with ``data: [DONE]``."""
    yield _chunk(head, {"role": "assistant", "content": ""})
    started = False
    async for frames in hub.follow(generation_id, 0):
        out = []
        for event in parse_sse(frames):
            data = orjson.loads(event.data)
            if event.type == "reasoning":
                out.append(_chunk(head, {"reasoning_content": data["delta"]}))
                started = True
            elif event.type == "content":
                out.append(_chunk(head, {"content": data["delta"]}))
                started = True
            elif event.type == "restart" and started:
                # A chunk stream cannot take text back: end it, and point at the stream that can.
                out.append(
                    _error(
                        f"generation {generation_id} restarted (attempt {data['attempt']}, {data['reason']}); "
                        f"read it at /v1/generations/{generation_id}/events",
                        "generation_restarted",
                    )
                )
                yield b"".join(out)
                return
            elif event.type == "done":
                if data["status"] == "failed":
                    error = data.get("error") or {}
                    out.append(_error(error.get("message", "the generation failed"), error.get("type", "failed")))
                    yield b"".join(out)
                    return
                out.append(_chunk(head, {}, data["finish_reason"] or data["status"]))
                if include_usage and data.get("usage"):
                    out.append(b"data: " + orjson.dumps({**head, "choices": [], "usage": data["usage"]}) + b"\n\n")
                out.append(b"data: [DONE]\n\n")
                yield b"".join(out)
                return
        if out:
            yield b"".join(out)
    yield _error(f"the event stream ended early; read it at /v1/generations/{generation_id}/events", "unavailable")


@router.post(
    "/chat/completions",
    responses={
        200: {
            "description": "A chat.completion, or with stream=true chat.completion.chunk events",
            "content": {"application/json": {}, "text/event-stream": {}},
        },
        **error_responses(401, 403, 404, 409, 413, 415, 422, 429, 502, 503),
    },
)
async def chat_completions(
    body: ChatCompletionRequest,
    principal: PrincipalDep,
    submitter: SubmitterDep,
    store: StoreDep,
    hub: HubDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    """Run an OpenAI chat-completions request as a durable generation (streaming or not).

    With an ``Idempotency-Key`` header, a retried request answers from the original generation.
    """
    generation = body.to_generation()
    generation_id, created_at = await submitter.submit(generation, principal, idempotency_key, "chat.completions")
    model = generation.model or settings.default_model
    head = {"id": generation_id, "object": "chat.completion.chunk", "created": int(created_at), "model": model}
    headers = {ID_HEADER: generation_id}
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return StreamResponse(
            _openai_chunks(hub, generation_id, head, include_usage), headers=headers, ping=settings.sse_ping_s
        )
    async for _ in hub.follow(generation_id, 0):
        pass  # wait for the end; the generation does not depend on this request
    record = await store.get(generation_id)
    if record is None or record.status not in ("completed", "cancelled"):
        error = (record.error if record else None) or {"type": "unavailable", "message": "the generation did not end"}
        raise ApiError(502, str(error.get("type", "failed")), str(error.get("message", "failed")), headers)
    return JSONResponse(record.to_chat_completion(), headers=headers)


@router.get("/models", responses=error_responses(401))
async def list_models(settings: SettingsDep, principal: PrincipalDep) -> dict[str, Any]:
    """The models this deployment serves (``REASONQ_MODELS``, else the default model) that the caller's key may
    use."""
    now = int(time.time())
    allowed = principal.limits.models
    models = [m for m in settings.model_list if allowed is None or m in allowed]
    return {
        "object": "list",
        "data": [{"id": m, "object": "model", "created": now, "owned_by": "reasonq"} for m in models],
    }
