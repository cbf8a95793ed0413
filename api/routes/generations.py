"""``/v1/generations``: submit, read, and tail generations."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Response
from fastapi.responses import JSONResponse
from sse_starlette import ServerSentEvent

from api.deps import CeleryDep, HubDep, SettingsDep, StoreDep
from api.errors import ApiError
from api.idempotency import IdempotencyKey
from api.sse import StreamResponse
from api.submission import checked_id, submit_once
from shared.schemas import (
    GenerationAccepted,
    GenerationCancel,
    GenerationCreate,
    GenerationList,
    GenerationPublic,
    GenerationSummary,
    GenerationViewers,
)

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/generations", tags=["generations"])

_ERRORS: dict[int | str, dict[str, Any]] = {404: {"description": "No such generation (or it expired)"}}


GenerationId = Annotated[str, Path(description="The id returned by POST /v1/generations.")]


@router.post("", status_code=202, response_model=GenerationAccepted)
async def create_generation(
    body: GenerationCreate,
    response: Response,
    store: StoreDep,
    celery: CeleryDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKey = None,
) -> GenerationAccepted:
    """Queue a generation and answer at once with its id and URLs.

    With an ``Idempotency-Key`` header, retrying the same request returns the original generation.
    """
    generation_id, created_at = await submit_once(body, store, celery, settings, idempotency_key, "generations")
    url = f"/v1/generations/{generation_id}"
    response.headers["Location"] = url
    return GenerationAccepted(
        id=generation_id, status="queued", created_at=created_at, url=url, events_url=f"{url}/events"
    )


@router.get("", response_model=GenerationList)
async def list_generations(
    store: StoreDep, limit: Annotated[int, Query(ge=1, le=100, description="How many, newest first.")] = 20
) -> GenerationList:
    """The most recent generations (newest first) that are still readable."""
    return GenerationList(data=[GenerationSummary(**row) for row in await store.list_recent(limit)])


@router.get("/{generation_id}/viewers", response_model=GenerationViewers, responses=_ERRORS)
async def count_viewers(generation_id: GenerationId, store: StoreDep) -> GenerationViewers:
    """How many viewers watch this generation right now, across every API process."""
    if not await store.exists(checked_id(generation_id)):
        raise ApiError(404, "not_found", "no generation with this id")
    return GenerationViewers(id=generation_id, viewers=await store.count_viewers(generation_id))


@router.get("/{generation_id}", response_model=GenerationPublic, responses=_ERRORS)
async def get_generation(generation_id: GenerationId, store: StoreDep) -> GenerationPublic:
    """The generation's state and its text so far."""
    generation = await store.get(checked_id(generation_id))
    if generation is None:
        raise ApiError(404, "not_found", "no generation with this id")
    return generation


@router.post(
    "/{generation_id}/cancel",
    response_model=GenerationCancel,
    responses={**_ERRORS, 202: {"model": GenerationCancel, "description": "Cancel requested; stopping"}},
)
async def cancel_generation(generation_id: GenerationId, store: StoreDep, settings: SettingsDep) -> JSONResponse:
    """Cancel a generation (idempotent).

    Queued: it ends ``cancelled`` now and never starts (200). Running: its worker stops the upstream stream
    and ends it ``cancelled`` with the text so far (202; the ``done`` event follows). Ended: nothing changes (200).
    """
    outcome, status = await store.cancel(checked_id(generation_id), settings.retention_s)
    if outcome == "missing":
        raise ApiError(404, "not_found", "no generation with this id")
    if outcome == "requested":
        body = GenerationCancel(id=generation_id, status="running", cancel_requested=True)
        logger.info("generation %s: cancel requested", generation_id)
        return JSONResponse(body.model_dump(), status_code=202)
    final = "cancelled" if outcome == "cancelled" else status
    body = GenerationCancel(id=generation_id, status=final, cancel_requested=final == "cancelled")
    return JSONResponse(body.model_dump(), status_code=200)


def _resume_point(after: int | None, last_event_id: str | None) -> int:
    # EventSource reconnects with the original URL plus Last-Event-ID, so the header wins over ?after=.
    if last_event_id is not None and last_event_id.strip() != "":
        value = last_event_id.strip()
        if not value.isdigit() or len(value) > 18:
            raise ApiError(422, "invalid_request", "header Last-Event-ID: must be a non-negative integer event id")
        return int(value)
    return after or 0


def _ping() -> ServerSentEvent:
    return ServerSentEvent(comment="keep-alive")


@router.get(
    "/{generation_id}/events",
    responses={**_ERRORS, 200: {"content": {"text/event-stream": {}}, "description": "The event stream"}},
)
async def stream_events(
    generation_id: GenerationId,
    store: StoreDep,
    hub: HubDep,
    settings: SettingsDep,
    after: Annotated[int | None, Query(ge=0, le=10**18, description="Replay events strictly after this id.")] = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> StreamResponse:
    """Server-Sent Events: every event after the resume point, then live ones, ending with ``done``."""
    generation_id = checked_id(generation_id)
    cursor = _resume_point(after, last_event_id)
    if not await store.exists(generation_id):
        raise ApiError(404, "not_found", "no generation with this id")
    return StreamResponse(
        hub.follow(generation_id, cursor),
        ping=settings.sse_ping_s,
        ping_message_factory=_ping,
        sep="\n",
    )
