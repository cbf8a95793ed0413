"""The OpenAI-compatible front door: ``POST /v1/chat/completions``, ``GET /v1/models`` and ``GET /v1/models/{id}``,
also without the ``/v1`` prefix (DeepSeek-style base URLs: LiteLLM's ``deepseek/`` provider, ``@ai-sdk/deepseek``).

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
from reasonq.shared.schemas import openai_finish

router = APIRouter(tags=["openai-compatible"])  # mounted at /v1 and, out of the OpenAPI document, at /
ID_HEADER = "X-Reasonq-Generation-Id"
# A provider's refusal the caller can act on is answered with the provider's status (issue 15: a 502 made the SDK's
# retries run one refused request as three generations). Its key, permissions and model names are the operator's
# (reasonq checked the caller's model already), so those, and a provider's own timeouts, stay 502.
_OPERATORS_STATUS = frozenset({401, 403, 404, 407, 408})


def _chunk(head: dict[str, Any], delta: dict[str, Any]) -> bytes:
    body = {**head, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}]}
    return sse_frame(orjson.dumps(body))


def _error(message: str, kind: str, status_code: object = None) -> bytes:
    error: dict[str, Any] = {"message": message, "type": kind}
    if isinstance(status_code, int):
        error["status_code"] = status_code
    return sse_frame(orjson.dumps({"error": error}))


def _failure_status(error: dict[str, Any]) -> int:
    """The HTTP status of a non-streamed answer whose generation failed with ``error``."""
    status = error.get("status_code")
    if isinstance(status, int) and 400 <= status < 500 and status not in _OPERATORS_STATUS:
        return status
    return 502


def _tool_call_delta(data: dict[str, Any]) -> dict[str, Any]:
    """A ``tool_call`` event as OpenAI's ``delta.tool_calls[]`` entry (id, type and name on a call's first one)."""
    function: dict[str, Any] = {"arguments": data.get("arguments", "")}
    call: dict[str, Any] = {"index": data["index"]}
    if "id" in data:
        call |= {"id": data["id"], "type": "function"}
        function = {"name": data.get("name", ""), **function}
    return {**call, "function": function}


def _chat_frames(
    event: StoredEvent, head: dict[str, Any], include_usage: bool, started: bool, generation_id: str
) -> tuple[list[bytes], bool]:
    """One event as OpenAI chunk frames, and whether the chunk stream ends with it."""
    if event.type == "reasoning":
        return [_chunk(head, {"reasoning_content": orjson.loads(event.data)["delta"]})], False
    if event.type == "content":
        return [_chunk(head, {"content": orjson.loads(event.data)["delta"]})], False
    if event.type == "tool_call":
        return [_chunk(head, {"tool_calls": [_tool_call_delta(orjson.loads(event.data))]})], False
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
            message, kind = error.get("message", "the generation failed"), error.get("type", "failed")
            return [_error(message, kind, error.get("status_code"))], True
        finish_reason, marker = openai_finish(generation_id, data["status"], data["finish_reason"])
        if data.get("system_fingerprint"):
            head = {**head, "system_fingerprint": data["system_fingerprint"]}
        last = {**head, "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": finish_reason}]}
        out = [sse_frame(orjson.dumps(last | {"reasonq": marker} if marker else last))]
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
            started = started or event.type in ("reasoning", "content", "tool_call")
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
        **error_responses(400, 401, 403, 404, 409, 413, 415, 422, 429, 502, 503),
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

    With an ``Idempotency-Key`` header, a retried request answers from the original generation. A provider's
    refusal (4xx) is answered with its status, other failures with 502.
    """
    generation = body.to_generation()
    generation_id, created_at = await submitter.submit(generation, principal, idempotency_key, "chat.completions")
    model = generation.model or settings.default_model
    head = {"id": generation_id, "object": "chat.completion.chunk", "created": int(created_at), "model": model}
    headers = {ID_HEADER: generation_id}
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return StreamResponse(
            _openai_chunks(hub, generation_id, head, include_usage), headers=headers, ping_s=settings.sse_ping_s
        )
    async for _ in hub.follow_events(generation_id, 0):
        pass  # wait for the end; the generation does not depend on this request
    record = await store.records.get(generation_id)
    if record is None or record.status not in ("completed", "cancelled"):
        error = (record.error if record else None) or {"type": "unavailable", "message": "the generation did not end"}
        status = _failure_status(error)
        raise ApiError(status, str(error.get("type", "failed")), str(error.get("message", "failed")), headers)
    return JSONResponse(record.to_chat_completion(), headers=headers)


@router.get("/models", response_model=ModelList, responses=error_responses(401))
async def list_models(settings: SettingsDep, principal: PrincipalDep) -> ModelList:
    """The models this deployment serves (``REASONQ_MODELS``, else the default model) that the caller's key may
    use."""
    now = int(time.time())
    allowed = principal.limits.models
    models = [m for m in settings.model_list if allowed is None or m in allowed]
    return ModelList(data=[ModelCard(id=m, created=now, owned_by="reasonq") for m in models])


@router.get("/models/{model}", response_model=ModelCard, responses=error_responses(401, 404))
async def get_model(model: str, settings: SettingsDep, principal: PrincipalDep) -> ModelCard:
    """One model of ``GET /v1/models`` (404 for one this deployment or the caller's key does not offer)."""
    allowed = principal.limits.models
    if model not in settings.model_list or (allowed is not None and model not in allowed):
        raise ApiError(404, "model_not_found", f"model {model!r} does not exist or is not offered to this key")
    return ModelCard(id=model, created=int(time.time()), owned_by="reasonq")
