"""``/v1/batches``: many chat completions at once, in OpenAI's Batch input and output formats.

The input is JSONL (the request body, e.g. ``curl --data-binary @in.jsonl``) or a JSON list of the same
lines. Every line is validated before anything is written: a bad line rejects the batch with its line number.
Batch generations run on their own Celery queue (``REASONQ_BATCH_QUEUE_NAME``), served by their own workers,
so a long batch never holds the slots interactive requests need.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import ValidationError

from api import idempotency
from api.deps import CeleryDep, SettingsDep, StoreDep
from api.errors import ApiError
from api.idempotency import IdempotencyKey
from api.routes.openai_compat import ChatCompletionRequest
from api.sse import StreamResponse
from api.submission import dispatch_many, new_generation_id
from shared.batches import BatchStore
from shared.schemas import GenerationCreate
from shared.settings import Settings

router = APIRouter(prefix="/v1/batches", tags=["batches"])
BatchId = Annotated[str, Path(pattern=r"^batch_[A-Za-z0-9_-]{22}$", description="The batch id.")]
_MAX_BODY_BYTES = 200 * 1024 * 1024


def _lines(raw: bytes, content_type: str) -> list[Any]:
    if "json" in content_type and "jsonl" not in content_type and "ndjson" not in content_type:
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            raise ApiError(422, "invalid_request", f"body: not valid JSON ({e})") from e
        if isinstance(data, dict):
            data = data.get("requests", data.get("input"))
        if not isinstance(data, list):
            raise ApiError(422, "invalid_request", 'body: a JSON list of batch lines (or {"requests": [...]})')
        return data
    out = []
    for number, line in enumerate(raw.splitlines(), start=1):
        if line.strip():
            try:
                out.append(orjson.loads(line))
            except orjson.JSONDecodeError as e:
                raise ApiError(422, "invalid_request", f"line {number}: not valid JSON ({e})") from e
    return out


def _validate(lines: list[Any], settings: Settings) -> list[tuple[str, GenerationCreate]]:
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
        generation.model = generation.model or settings.default_model
        out.append((custom_id, generation))
    return out


@router.post("", status_code=200)
async def create_batch(
    request: Request, store: StoreDep, celery: CeleryDep, settings: SettingsDep, idempotency_key: IdempotencyKey = None
) -> JSONResponse:
    """Validate every line, then create one generation per line on the batch queue."""
    raw = await request.body()
    if len(raw) > _MAX_BODY_BYTES:
        raise ApiError(413, "too_large", "the batch body is too large")
    items = _validate(_lines(raw, request.headers.get("content-type", "")), settings)
    batches = BatchStore(store)
    batch_id = "batch_" + secrets.token_urlsafe(16)
    if idempotency_key is not None:
        digest = idempotency.body_hash(raw)
        earlier = await idempotency.claim(
            store.redis, "batches", idempotency_key, digest, batch_id, settings.retention_s
        )
        if earlier is not None:
            return JSONResponse((await idempotency.wait_for(lambda: batches.get(earlier))).to_dict())
    try:
        await _create(batches, batch_id, items, celery, settings)
    except BaseException:
        if idempotency_key is not None:
            await idempotency.release(store.redis, "batches", idempotency_key)
        raise
    state = await batches.get(batch_id)
    assert state is not None
    return JSONResponse(state.to_dict())


async def _create(
    batches: BatchStore, batch_id: str, items: list[tuple[str, GenerationCreate]], celery: Any, settings: Settings
) -> None:
    with_ids = [(custom_id, new_generation_id(), generation) for custom_id, generation in items]
    await batches.create(batch_id, with_ids, settings.batch_queue_name, settings.retention_s, None)
    await dispatch_many(celery, [gid for _, gid, _ in with_ids], settings.batch_queue_name)


async def _batch(store: Any, batch_id: str) -> Any:
    state = await BatchStore(store).get(batch_id)
    if state is None:
        raise ApiError(404, "not_found", "no batch with this id")
    return state


@router.get("/{batch_id}")
async def get_batch(batch_id: BatchId, store: StoreDep) -> JSONResponse:
    """The batch, with request counts as of now."""
    return JSONResponse((await _batch(store, batch_id)).to_dict())


@router.get("/{batch_id}/results")
async def batch_results(batch_id: BatchId, store: StoreDep) -> StreamingResponse:
    """JSONL, one line per finished request (in input order); lines appear as requests finish."""
    await _batch(store, batch_id)
    return StreamingResponse(BatchStore(store).results(batch_id), media_type="application/jsonl")


@router.post("/{batch_id}/cancel")
async def cancel_batch(batch_id: BatchId, store: StoreDep, settings: SettingsDep) -> JSONResponse:
    """Cancel every request of the batch that has not finished."""
    await _batch(store, batch_id)
    await BatchStore(store).cancel(batch_id, settings.retention_s)
    return JSONResponse((await _batch(store, batch_id)).to_dict())


@router.get("/{batch_id}/events")
async def batch_events(batch_id: BatchId, store: StoreDep) -> StreamResponse:
    """SSE: a ``progress`` event whenever the counts change, then ``done`` with the final batch."""
    await _batch(store, batch_id)

    async def progress() -> AsyncIterator[bytes]:
        last = None
        n = 0
        while True:
            state = await _batch(store, batch_id)
            data = orjson.dumps(state.to_dict())
            final = state.status in ("completed", "cancelled")
            if data != last or final:
                n += 1
                kind = b"done" if final else b"progress"
                yield b"id: %d\nevent: %s\ndata: %s\n\n" % (n, kind, data)
                last = data
            if final:
                return
            await asyncio.sleep(1.0)

    return StreamResponse(progress(), sep="\n")
