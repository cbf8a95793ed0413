"""The OpenAI-compatible front door: ``POST /v1/chat/completions`` and ``GET /v1/models``.

An unchanged ``openai`` client (``OpenAI(base_url=".../v1")``) runs its chat completions as durable
generations: the request becomes a generation, and the answer is read from its event stream. If the caller's
connection drops, the generation goes on; its id is in the ``X-Reasonq-Generation-Id`` header and in every
chunk's ``id``, so it can be re-joined at ``/v1/generations/{id}/events``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from fastapi import APIRouter
from fastapi.responses import JSONResponse

from reasonq.api.auth import PrincipalDep
from reasonq.api.deps import HubDep, SettingsDep, StoreDep, SubmitterDep
from reasonq.api.errors import ApiError, error_responses
from reasonq.api.hub import Hub
from reasonq.api.idempotency import IdempotencyKey
from reasonq.api.schemas import ChatCompletion, ChatCompletionRequest, ModelCard, ModelList
from reasonq.api.sse import StreamResponse
from reasonq.shared.events import StoredEvent, sse_frame

router = APIRouter(prefix="/v1", tags=["openai-compatible"])
ID_HEADER = "X-Reasonq-Generation-Id"


def _chunk(head: dict[str, Any], delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
    body = {**head, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]}
    return sse_frame(orjson.dumps(body))


def _error(message: str, kind: str) -> bytes:
    return sse_frame(orjson.dumps({"error": {"message": message, "type": kind}}))


def _chat_frames(
    event: StoredEvent, head: dict[str, Any], include_usage: bool, started: bool, generation_id: str
) -> tuple[list[bytes], bool]:
    """One event as OpenAI chunk frames, and whether the chunk stream ends with it."""
    if event.type == "reasoning":
        return [_chunk(head, {"reasoning_content": orjson.loads(event.data)["delta"]})], False
    if event.type == "content":
        return [_chunk(head, {"content": orjson.loads(event.data)["delta"]})], False
    if event.type == "restart" and started:
        # A chunk stream cannot take text back: end it, and point at the stream that can.
        data = orjson.loads(event.data)
        message = (
            f"generation {generation_id} restarted (attempt {data['attempt']}, {data['reason']}); "
            f"read it at /v1/generations/{generation_id}/events"
        )
        return [_error(message, "generation_restarted")], True
    if event.type == "done":
        data = orjson.loads(event.data)
        if data["status"] == "failed":
            error = data.get("error") or {}
            return [_error(error.get("message", "the generation failed"), error.get("type", "failed"))], True
        out = [_chunk(head, {}, data["finish_reason"] or data["status"])]
        if include_usage and data.get("usage"):
            out.append(sse_frame(orjson.dumps({**head, "choices": [], "usage": data["usage"]})))
        out.append(sse_frame(b"[DONE]"))
        return out, True
    return [], False  # status events, and kinds a chat chunk has no field for


async def _openai_chunks(
    hub: Hub, generation_id: str, head: dict[str, Any], include_usage: bool
) -> AsyncIterator[bytes]:
    """The generation's events as OpenAI chunks, ending with ``data: [DONE]`` (the chat edge's encoder: it keeps
    one piece of state per viewer, whether text was sent, so it follows the hub's typed events)."""
    yield _chunk(head, {"role": "assistant", "content": ""})
    started = False
    async for events in hub.follow_events(generation_id, 0):
        out: list[bytes] = []
        for event in events:
            frames, last = _chat_frames(event, head, include_usage, started, generation_id)
            out += frames
            started = started or event.type in ("reasoning", "content")
            if last:
                yield b"".join(out)
                return
        if out:
            yield b"".join(out)
    yield _error(f"the event stream ended early; read it at /v1/generations/{generation_id}/events", "unavailable")


@router.post(
    "/chat/completions",
    responses={
        200: {
            "model": ChatCompletion,
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
    async for _ in hub.follow_events(generation_id, 0):
        pass  # wait for the end; the generation does not depend on this request
    record = await store.records.get(generation_id)
    if record is None or record.status not in ("completed", "cancelled"):
        error = (record.error if record else None) or {"type": "unavailable", "message": "the generation did not end"}
        raise ApiError(502, str(error.get("type", "failed")), str(error.get("message", "failed")), headers)
    return JSONResponse(record.to_chat_completion(), headers=headers)


@router.get("/models", response_model=ModelList, responses=error_responses(401))
async def list_models(settings: SettingsDep, principal: PrincipalDep) -> ModelList:
    """The models this deployment serves (``REASONQ_MODELS``, else the default model) that the caller's key may
    use."""
    now = int(time.time())
    allowed = principal.limits.models
    models = [m for m in settings.model_list if allowed is None or m in allowed]
    return ModelList(data=[ModelCard(id=m, created=now, owned_by="reasonq") for m in models])
