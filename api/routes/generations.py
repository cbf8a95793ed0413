"""``/v1/generations``: submit, read, and tail generations."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Response
from fastapi.responses import JSONResponse

from reasonq.api.access import OwnedId, ReadableId, SignerDep
from reasonq.api.auth import PrincipalDep
from reasonq.api.deps import HubDep, SettingsDep, StoreDep, SubmitterDep
from reasonq.api.errors import ApiError, error_responses, not_found
from reasonq.api.idempotency import IdempotencyKey
from reasonq.api.sse import StreamResponse
from reasonq.shared.schemas import (
    GenerationAccepted,
    GenerationCancel,
    GenerationCreate,
    GenerationList,
    GenerationPublic,
    GenerationShare,
    GenerationSummary,
    GenerationViewers,
    ShareCreate,
)

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/generations", tags=["generations"])

_ERRORS = error_responses(401, 404, 410, 422, 503)


@router.post(
    "",
    status_code=202,
    response_model=GenerationAccepted,
    responses=error_responses(401, 403, 404, 409, 413, 415, 422, 429, 503),
)
async def create_generation(
    body: GenerationCreate,
    response: Response,
    principal: PrincipalDep,
    submitter: SubmitterDep,
    idempotency_key: IdempotencyKey = None,
) -> GenerationAccepted:
    """Queue a generation and answer at once with its id and URLs.

    With an ``Idempotency-Key`` header, retrying the same request returns the original generation.
    """
    generation_id, created_at = await submitter.submit(body, principal, idempotency_key, "generations")
    url = f"/v1/generations/{generation_id}"
    response.headers["Location"] = url
    return GenerationAccepted(
        id=generation_id, status="queued", created_at=created_at, url=url, events_url=f"{url}/events"
    )


@router.get("", response_model=GenerationList, responses=error_responses(401, 422, 503))
async def list_generations(
    store: StoreDep,
    principal: PrincipalDep,
    limit: Annotated[int, Query(ge=1, le=100, description="How many, newest first.")] = 20,
) -> GenerationList:
    """The caller's most recent generations (newest first) that are still readable."""
    return GenerationList(
        data=[GenerationSummary(**row) for row in await store.records.list_recent(principal.name, limit)]
    )


@router.get("/{generation_id}/viewers", response_model=GenerationViewers, responses=_ERRORS)
async def count_viewers(generation_id: ReadableId, store: StoreDep) -> GenerationViewers:
    """How many viewers watch this generation right now, across every API process."""
    return GenerationViewers(id=generation_id, viewers=await store.presence.count_viewers(generation_id))


@router.get("/{generation_id}", response_model=GenerationPublic, responses=_ERRORS)
async def get_generation(generation_id: ReadableId, store: StoreDep) -> GenerationPublic:
    """The generation's state and its text so far (with its owner's key, or a share link as ``?token=``)."""
    generation = await store.records.get(generation_id)
    if generation is None:
        raise not_found()
    return generation


@router.post("/{generation_id}/share", response_model=GenerationShare, responses=_ERRORS)
async def share_generation(
    generation_id: OwnedId,
    store: StoreDep,
    signer: SignerDep,
    settings: SettingsDep,
    body: ShareCreate | None = None,
) -> GenerationShare:
    """A read-only link to this one generation (its record, events, viewer count and viewer page), valid for
    ``ttl_s`` seconds or until the owner revokes its links."""
    ttl_s = body.ttl_s if body is not None and body.ttl_s is not None else settings.share_ttl_s
    access = await store.records.access_of(generation_id)
    if access is None:
        raise not_found()
    expires_at = int(time.time()) + ttl_s
    token = await signer.sign(generation_id, expires_at, access.share_epoch)
    url = f"/v1/generations/{generation_id}"
    return GenerationShare(
        id=generation_id,
        token=token,
        expires_at=expires_at,
        page_url=f"/g/{generation_id}?token={token}",
        url=f"{url}?token={token}",
        events_url=f"{url}/events?token={token}",
    )


@router.delete("/{generation_id}/share", status_code=204, responses=_ERRORS)
async def revoke_shares(generation_id: OwnedId, store: StoreDep) -> Response:
    """Revoke every share link of this generation made so far."""
    await store.records.revoke_shares(generation_id)
    return Response(status_code=204)


@router.post(
    "/{generation_id}/cancel",
    response_model=GenerationCancel,
    responses={**_ERRORS, 202: {"model": GenerationCancel, "description": "Cancel requested; stopping"}},
)
async def cancel_generation(generation_id: OwnedId, store: StoreDep, settings: SettingsDep) -> JSONResponse:
    """Cancel a generation (idempotent).

    Queued: it ends ``cancelled`` now and never starts (200). Running: its worker stops the upstream stream
    and ends it ``cancelled`` with the text so far (202; the ``done`` event follows). Ended: nothing changes (200).
    """
    outcome, status = await store.records.cancel(generation_id, settings.retention_s)
    if outcome == "missing":
        raise not_found()
    if outcome == "requested":
        body = GenerationCancel(id=generation_id, status="running", cancel_requested=True)
        logger.info("generation %s: cancel requested", generation_id)
        return JSONResponse(body.model_dump(), status_code=202)
    final = "cancelled" if outcome == "cancelled" else status
    body = GenerationCancel(id=generation_id, status=final, cancel_requested=final == "cancelled")
    return JSONResponse(body.model_dump(), status_code=200)


_EVENT_ID = r"^\s*[0-9]{1,18}\s*$"


def _string_schema(pattern: str) -> Callable[[dict[str, Any]], None]:
    """An optional parameter documented as a plain string with ``pattern`` (not ``string | null``: a client that
    sends the text "null" sends no event id)."""

    def apply(schema: dict[str, Any]) -> None:
        schema.pop("anyOf", None)
        schema.update(type="string", pattern=pattern)

    return apply


def _event_id(value: str, where: str) -> int:
    """One rule for a resume point, header or query: ASCII digits only, at most 18 (``+5``, ``٣`` or ``1e3`` are
    not event ids; ``?after=+5`` was accepted while the header refused it, issue 12)."""
    value = value.strip()
    if not (value.isascii() and value.isdigit()) or len(value) > 18:
        raise ApiError(422, "invalid_request", f"{where}: must be a non-negative integer event id")
    return int(value)


def _resume_point(after: str | None, last_event_id: str | None) -> int:
    # EventSource reconnects with the original URL plus Last-Event-ID, so the header wins over ?after=.
    if last_event_id is not None and last_event_id.strip() != "":
        return _event_id(last_event_id, "header Last-Event-ID")
    return _event_id(after, "query after") if after is not None else 0


@router.get(
    "/{generation_id}/events",
    responses={
        **_ERRORS,
        200: {"content": {"text/event-stream": {}}, "description": "The event stream"},
        204: {"description": "The resume point is this ended generation's last event: nothing more will come"},
    },
)
async def stream_events(
    generation_id: ReadableId,
    store: StoreDep,
    hub: HubDep,
    settings: SettingsDep,
    # The pattern is documented, not enforced by the framework: _resume_point checks both with one rule and one
    # message (issue 12: the OpenAPI document said any string).
    after: Annotated[
        str | None,
        Query(description="Replay events strictly after this event id.", json_schema_extra=_string_schema(_EVENT_ID)),
    ] = None,
    last_event_id: Annotated[
        str | None,
        Header(
            alias="Last-Event-ID",
            description="Resume after this event id (EventSource sends it); wins over ?after=; empty is absent.",
            json_schema_extra=_string_schema(r"^\s*([0-9]{1,18})?\s*$"),
        ),
    ] = None,
) -> Response:
    """Server-Sent Events: every event after the resume point, then live ones, ending with ``done``; ``204`` when
    the resume point is the last event of an ended generation.

    With its owner's key, or a share link as ``?token=`` (``EventSource`` cannot send headers)."""
    cursor = _resume_point(after, last_event_id)
    if cursor > 0:
        # Past the end of a running generation the stream waits for the events to come; past the end of an
        # ended one it would only ever be empty (and EventSource would reconnect forever): say so instead.
        last, ended = await store.records.last_seq(generation_id)
        if ended and cursor == last:
            return Response(status_code=204)  # EventSource stops on 204 (it reconnected every 3 s on an empty 200)
        if ended and cursor > last:
            raise ApiError(
                422, "invalid_request", f"resume point {cursor} is past this ended generation's last event ({last})"
            )
    return StreamResponse(
        hub.follow(generation_id, cursor),
        ping_s=settings.sse_ping_s,
    )
