"""``/v1/batches``: many chat completions at once, in OpenAI's Batch input and output formats.

The input is JSONL (the request body, e.g. ``curl --data-binary @in.jsonl``) or a JSON list of the same
lines. Every line is validated before anything is written: a bad line rejects the batch with its line number.
Batch generations run on their own Celery queue (``REASONQ_BATCH_QUEUE_NAME``), served by their own workers,
so a long batch never holds the slots interactive requests need.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from reasonq.api import idempotency
from reasonq.api.auth import Principal, PrincipalDep
from reasonq.api.deps import SettingsDep, StoreDep, SubmitterDep
from reasonq.api.errors import ApiError, error_responses
from reasonq.api.idempotency import IdempotencyKey
from reasonq.api.limits import check_request
from reasonq.api.schemas import BatchList, BatchPublic, ChatCompletionRequest
from reasonq.api.sse import StreamResponse
from reasonq.shared.events import sse_frame
from reasonq.shared.schemas import GenerationCreate, Metadata
from reasonq.shared.settings import Settings
from reasonq.shared.store import BatchOptions, BatchState, GenerationStore
from reasonq.shared.store.batches import ENDED

router = APIRouter(prefix="/v1/batches", tags=["batches"])
# No pattern: an id that cannot exist is a 404 like any unknown id, not a 422 about a regex (issue 11).
BatchId = Annotated[str, Path(description="The id returned by POST /v1/batches.")]


def _lines(raw: bytes, content_type: str) -> list[Any] | dict[str, Any]:
    """The batch lines of a body, or the OpenAI-style request that names an uploaded input file."""
    if "json" in content_type and "jsonl" not in content_type and "ndjson" not in content_type:
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            raise ApiError(422, "invalid_request", f"body: not valid JSON ({e})") from e
        if isinstance(data, dict) and "input_file_id" in data:
            return data
        if isinstance(data, dict):
            data = data.get("requests", data.get("input"))
        if not isinstance(data, list):
            raise ApiError(
                422,
                "invalid_request",
                'body: a JSON list of batch lines, {"requests": [...]} or {"input_file_id": ...}',
            )
        return data
    return _jsonl(raw)


def _jsonl(raw: bytes) -> list[Any]:
    out = []
    for number, line in enumerate(raw.splitlines(), start=1):
        if line.strip():
            try:
                out.append(orjson.loads(line))
            except orjson.JSONDecodeError as e:
                raise ApiError(422, "invalid_request", f"line {number}: not valid JSON ({e})") from e
    return out


def _validate(lines: list[Any], settings: Settings, principal: Principal) -> list[tuple[str, GenerationCreate]]:
    if not lines:
        raise ApiError(422, "invalid_request", "body: the batch has no lines")
    if len(lines) > settings.batch_max_lines:
        raise ApiError(422, "invalid_request", f"body: at most {settings.batch_max_lines} lines per batch")
    seen: set[str] = set()
    out = []
    for number, line in enumerate(lines, start=1):
        where = f"line {number}"
        if not isinstance(line, dict):
            raise ApiError(422, "invalid_request", f"{where}: must be a JSON object")
        custom_id = line.get("custom_id")
        if not isinstance(custom_id, str) or not custom_id or len(custom_id) > 512 or "\t" in custom_id:
            raise ApiError(422, "invalid_request", f"{where}: custom_id must be a non-empty string (no tabs)")
        if custom_id in seen:
            raise ApiError(422, "invalid_request", f"{where}: custom_id {custom_id!r} appears twice")
        seen.add(custom_id)
        if line.get("method", "POST") != "POST" or line.get("url", "/v1/chat/completions") != "/v1/chat/completions":
            raise ApiError(422, "invalid_request", f"{where}: only POST /v1/chat/completions is supported")
        try:
            request = ChatCompletionRequest.model_validate(line.get("body"))
        except ValidationError as e:
            first = e.errors()[0]
            field = ".".join(str(p) for p in first["loc"])
            raise ApiError(422, "invalid_request", f"{where}: body.{field}: {first['msg']}") from e
        if request.stream:
            raise ApiError(422, "invalid_request", f"{where}: body.stream: batch lines cannot stream")
        generation = request.to_generation()
        check_request(generation, settings, principal, where)
        out.append((custom_id, generation))
    return out


_BATCH_LINE_SCHEMA = {
    "type": "object",
    "required": ["custom_id", "body"],
    "properties": {
        "custom_id": {"type": "string", "minLength": 1, "maxLength": 512},
        "method": {"type": "string", "enum": ["POST"]},
        "url": {"type": "string", "enum": ["/v1/chat/completions"]},
        # A chat-completions request that does not stream (the stateful fuzz phase found the document allowing
        # `stream: true`, which _validate refuses; issue 12).
        "body": {
            "allOf": [
                {"$ref": "#/components/schemas/ChatCompletionRequest"},
                {"properties": {"stream": {"enum": [False]}}},
            ]
        },
    },
}
_FROM_FILE_SCHEMA = {
    "type": "object",
    "required": ["input_file_id", "endpoint", "completion_window"],
    "properties": {
        "input_file_id": {"type": "string", "description": "A file uploaded with purpose=batch (POST /v1/files)."},
        "endpoint": {"type": "string", "enum": ["/v1/chat/completions"]},
        "completion_window": {"type": "string", "enum": ["24h"]},
        "metadata": {
            "type": "object",
            "maxProperties": 16,
            "additionalProperties": {"type": "string", "maxLength": 512},
        },
    },
    "additionalProperties": False,
}
_BATCH_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/jsonl": {"schema": {"type": "string", "description": "One batch line (JSON) per line"}},
            "application/json": {
                "schema": {"oneOf": [{"type": "array", "minItems": 1, "items": _BATCH_LINE_SCHEMA}, _FROM_FILE_SCHEMA]}
            },
        },
    }
}


class BatchFromFile(BaseModel):
    """OpenAI's ``batches.create`` body: the lines are an uploaded file's."""

    model_config = ConfigDict(extra="forbid")

    input_file_id: Annotated[str, Field(min_length=1, max_length=200)]
    endpoint: Literal["/v1/chat/completions"]
    completion_window: Literal["24h"]
    metadata: Metadata | None = None


async def _from_file(
    body: dict[str, Any], store: GenerationStore, principal: Principal
) -> tuple[list[Any], BatchFromFile]:
    try:
        request = BatchFromFile.model_validate(body)
    except ValidationError as e:
        first = e.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise ApiError(422, "invalid_request", f"body {field}: {first['msg']}") from e
    meta = await store.files.get(request.input_file_id, principal.name)
    content = await store.files.content(request.input_file_id, principal.name) if meta is not None else None
    if meta is None or content is None:
        raise ApiError(
            404, "not_found", f"body input_file_id: no file {request.input_file_id!r} (upload it to /v1/files)"
        )
    if meta.purpose != "batch":
        raise ApiError(
            422, "invalid_request", f"body input_file_id: the file's purpose is {meta.purpose!r}, not 'batch'"
        )
    return _jsonl(content), request


@router.post(
    "",
    status_code=200,
    response_model=BatchPublic,
    responses=error_responses(401, 403, 404, 409, 413, 415, 422, 429, 503),
    openapi_extra=_BATCH_BODY,
)
async def create_batch(
    request: Request,
    principal: PrincipalDep,
    submitter: SubmitterDep,
    store: StoreDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKey = None,
) -> BatchPublic:
    """Validate every line, then create one generation per line on the batch queue. The lines are the body
    (JSONL or a JSON list) or, as OpenAI's SDK sends it, ``{"input_file_id", "endpoint", "completion_window"}``
    naming a file uploaded with ``purpose=batch``.

    A batch counts as one request against the key's per-minute limit; its generations run on the batch queue's
    own workers and do not count against the key's concurrency limit.
    """
    raw = await request.body()
    lines = _lines(raw, request.headers.get("content-type", ""))
    options = BatchOptions(window_s=settings.batch_window_s)
    if isinstance(lines, dict):
        lines, from_file = await _from_file(lines, store, principal)
        options = BatchOptions(settings.batch_window_s, from_file.input_file_id, metadata=from_file.metadata)
    items = _validate(lines, settings, principal)
    state = await submitter.submit_batch(items, principal, idempotency_key, idempotency.body_hash(raw), options)
    return BatchPublic.model_validate(state.to_dict())


@router.get("", response_model=BatchList, responses=error_responses(401, 422, 503))
async def list_batches(
    store: StoreDep,
    principal: PrincipalDep,
    settings: SettingsDep,
    limit: Annotated[int, Query(ge=1, le=100, description="How many, newest first.")] = 20,
    after: Annotated[str | None, Query(max_length=200, description="The last id of the previous page.")] = None,
) -> BatchList:
    """The caller's batches, newest first (OpenAI's cursor page: ``has_more``, then ``after=<last_id>``)."""
    states, more = await store.batches.list(principal.name, limit, after)
    data = [
        BatchPublic.model_validate(
            (await _batch(store, s.id, settings.retention_s) if s.status not in ENDED else s).to_dict()
        )
        for s in states
    ]
    return BatchList(
        data=data, first_id=data[0].id if data else None, last_id=data[-1].id if data else None, has_more=more
    )


def _no_batch() -> ApiError:
    return ApiError(404, "not_found", "no batch with this id")


async def _batch(store: GenerationStore, batch_id: str, retention_s: int) -> BatchState:
    await store.batches.expire_if_due(batch_id, retention_s)
    state = await store.batches.get(batch_id)
    if state is None:
        raise _no_batch()
    return state


async def owned_batch(batch_id: BatchId, store: StoreDep, principal: PrincipalDep) -> str:
    """The id of a batch the caller's key created; any other key gets the 404 an unknown id gets."""
    if await store.batches.owner(batch_id) != principal.name:
        raise _no_batch()
    return batch_id


OwnedBatchId = Annotated[str, Depends(owned_batch)]


@router.get("/{batch_id}", response_model=BatchPublic, responses=error_responses(401, 404, 422, 503))
async def get_batch(batch_id: OwnedBatchId, store: StoreDep, settings: SettingsDep) -> BatchPublic:
    """The batch, with request counts as of now."""
    return BatchPublic.model_validate((await _batch(store, batch_id, settings.retention_s)).to_dict())


@router.get(
    "/{batch_id}/results",
    responses={
        200: {"content": {"application/jsonl": {}}, "description": "One JSON line per finished request"},
        **error_responses(401, 404, 422, 503),
    },
)
async def batch_results(batch_id: OwnedBatchId, store: StoreDep) -> StreamingResponse:
    """JSONL, one line per finished request (in input order); lines appear as requests finish."""
    return StreamingResponse(store.batches.results(batch_id), media_type="application/jsonl")


@router.post("/{batch_id}/cancel", response_model=BatchPublic, responses=error_responses(401, 404, 422, 503))
async def cancel_batch(batch_id: OwnedBatchId, store: StoreDep, settings: SettingsDep) -> BatchPublic:
    """Cancel every request of the batch that has not finished."""
    await store.batches.cancel(batch_id, settings.retention_s)
    return BatchPublic.model_validate((await _batch(store, batch_id, settings.retention_s)).to_dict())


@router.get(
    "/{batch_id}/events",
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "progress events, then done"},
        **error_responses(401, 404, 422, 503),
    },
)
async def batch_events(batch_id: OwnedBatchId, store: StoreDep, settings: SettingsDep) -> StreamResponse:
    """SSE: a ``progress`` event whenever the counts change, then ``done`` with the final batch."""

    async def progress() -> AsyncIterator[bytes]:
        last = None
        n = 0
        while True:
            state = await _batch(store, batch_id, settings.retention_s)
            data = orjson.dumps(state.to_dict())
            final = state.status in ENDED
            if data != last or final:
                n += 1
                yield sse_frame(data, "done" if final else "progress", n)
                last = data
            if final:
                return
            await asyncio.sleep(1.0)

    return StreamResponse(progress(), ping_s=settings.sse_ping_s)
