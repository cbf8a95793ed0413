"""``/v1/responses``: OpenAI's Responses API over durable generations (issue 15).

``POST /v1/responses`` creates a generation (``background: true`` answers at once, ``stream: true`` streams
Responses events, neither waits for the end); ``GET /v1/responses/{id}`` is the response object, or with
``stream=true&starting_after=N`` its events after N, then live; ``POST …/cancel`` and ``DELETE`` as OpenAI's.
The response id is the generation id: a response is also readable at ``/v1/generations/{id}``, its events, page
and share links.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from reasonq.api.access import OwnedResponseId, ReadableResponseId
from reasonq.api.auth import PrincipalDep
from reasonq.api.deps import HubDep, SettingsDep, StoreDep, SubmitterDep
from reasonq.api.errors import ApiError, error_responses, not_found
from reasonq.api.hub import Hub
from reasonq.api.idempotency import IdempotencyKey
from reasonq.api.responses_schema import ResponseCreate
from reasonq.api.responses_stream import ResponseEvents, Shell, record_response
from reasonq.api.sse import StreamResponse
from reasonq.shared.events import sse_frame
from reasonq.shared.schemas import GenerationPublic
from reasonq.shared.store import GenerationStore

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/responses", tags=["responses"])

_ERRORS = error_responses(401, 404, 410, 422, 503)
_STREAM: dict[str, Any] = {"content": {"application/json": {}, "text/event-stream": {}}}
CANCEL_WAIT_S = 5.0  # how long cancel and delete wait for a running generation to end


async def _events(hub: Hub, shell: Shell, starting_after: int) -> AsyncIterator[bytes]:
    """The generation's Responses events after ``starting_after``, each as ``event: <type>`` + ``data:``."""
    made = ResponseEvents(shell)

    def frames(events: list[dict[str, Any]]) -> bytes:
        return b"".join(sse_frame(orjson.dumps(e), e["type"]) for e in events if e["sequence_number"] > starting_after)

    out = frames(made.start())
    async for batch in hub.follow_events(shell.id, 0):
        for event in batch:
            events, last = made.feed(event)
            out += frames(events)
            if last:
                yield out
                return
        if out:
            yield out
            out = b""
    message = f"the event stream ended early; read the response with GET /v1/responses/{shell.id}"
    yield sse_frame(
        orjson.dumps(
            {"type": "error", "sequence_number": made.seq + 1, "code": "unavailable", "message": message, "param": None}
        ),
        "error",
    )


async def _record(store: GenerationStore, generation_id: str) -> GenerationPublic:
    record = await store.records.get(generation_id)
    if record is None:
        raise not_found()
    return record


async def _wait_end(hub: Hub, generation_id: str, timeout_s: float) -> None:
    async def drain() -> None:
        async for _ in hub.follow_events(generation_id, 0):
            pass

    try:
        await asyncio.wait_for(drain(), timeout_s)
    except TimeoutError:
        pass


@router.post(
    "",
    responses={
        200: {"description": "A response object, or with stream=true its events", **_STREAM},
        **error_responses(401, 403, 404, 409, 413, 415, 422, 429, 503),
    },
)
async def create_response(
    body: ResponseCreate,
    principal: PrincipalDep,
    submitter: SubmitterDep,
    store: StoreDep,
    hub: HubDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    """Create a response: a durable generation. ``background: true`` answers the queued response at once;
    ``stream: true`` streams its events (the generation goes on if the connection drops: resume with
    ``GET /v1/responses/{id}?stream=true&starting_after=N``); otherwise the answer waits for the end."""
    try:
        generation = body.to_generation()
    except ValidationError as e:  # a conversation the items make that a chat request cannot hold
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ApiError(422, "invalid_request", f"body input: as a conversation, {where}: {first['msg']}") from e
    generation_id, _ = await submitter.submit(
        generation, principal, idempotency_key, "responses", surface=body.params()
    )
    if body.stream:
        record = await _record(store, generation_id)
        return StreamResponse(_events(hub, Shell.of(record), -1), ping_s=settings.sse_ping_s)
    if not body.background:
        await _wait_end(hub, generation_id, float("inf"))
    return JSONResponse(record_response(await _record(store, generation_id)))


@router.get(
    "/{response_id}", responses={200: {"description": "The response object, or its events", **_STREAM}, **_ERRORS}
)
async def get_response(
    generation_id: ReadableResponseId,
    store: StoreDep,
    hub: HubDep,
    settings: SettingsDep,
    stream: bool = False,
    starting_after: Annotated[
        int, Query(ge=-1, le=2**53, description="With stream=true: the events after this sequence number.")
    ] = -1,
) -> Any:
    """The response as it stands, or with ``stream=true`` its events after ``starting_after``, then live (for as
    long as the generation is retained)."""
    record = await _record(store, generation_id)
    if stream:
        return StreamResponse(_events(hub, Shell.of(record), starting_after), ping_s=settings.sse_ping_s)
    return JSONResponse(record_response(record))


@router.post("/{response_id}/cancel", responses={200: {"description": "The response object"}, **_ERRORS})
async def cancel_response(generation_id: OwnedResponseId, store: StoreDep, hub: HubDep, settings: SettingsDep) -> Any:
    """Cancel the response (idempotent): its answer so far is kept. Waits up to 5 s for a running one to stop,
    then answers the response as it stands."""
    outcome, _ = await store.records.cancel(generation_id, settings.retention_s)
    if outcome == "missing":
        raise not_found()
    if outcome == "requested":
        logger.info("response %s: cancel requested", generation_id)
        await _wait_end(hub, generation_id, CANCEL_WAIT_S)
    return JSONResponse(record_response(await _record(store, generation_id)))


@router.delete("/{response_id}", responses={200: {"description": "Deleted"}, **error_responses(401, 404, 409, 503)})
async def delete_response(
    generation_id: OwnedResponseId, store: StoreDep, hub: HubDep, settings: SettingsDep, principal: PrincipalDep
) -> Any:
    """Delete the response and every key of its generation (a running one is cancelled first)."""
    outcome, _ = await store.records.cancel(generation_id, settings.retention_s)
    if outcome == "missing":
        raise not_found()
    if outcome == "requested":
        await _wait_end(hub, generation_id, CANCEL_WAIT_S)
        record = await _record(store, generation_id)
        if record.status in ("queued", "running"):
            raise ApiError(409, "still_running", "the response is still stopping; delete it again in a moment")
    await store.records.delete([generation_id], principal.name)
    return JSONResponse({"id": generation_id, "object": "response", "deleted": True})
