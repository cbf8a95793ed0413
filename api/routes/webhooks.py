"""``/v1/webhook_events``: the delivery log of a webhook event (issue 15).

An object's event id is ``evt_`` + its id (``evt_`` + a response, generation or batch id), the ``webhook-id``
its receivers saw. The log answers once the event has been taken from the outbox (within a poll of the end, while
a worker runs); before that, and for another key's object, it is a 404.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from reasonq.api.auth import PrincipalDep
from reasonq.api.deps import SettingsDep, StoreDep
from reasonq.api.errors import ApiError, error_responses
from reasonq.api.webhooks_schema import WebhookAttempt, WebhookDelivery, WebhookEventPublic
from reasonq.shared.store.webhooks import PENDING, Delivery

router = APIRouter(prefix="/v1/webhook_events", tags=["webhooks"])
EventId = Annotated[str, Path(description="evt_ + the id of the response, generation or batch that ended.")]


@router.get("/{event_id}", response_model=WebhookEventPublic, responses=error_responses(401, 404))
async def get_webhook_event(
    event_id: EventId, principal: PrincipalDep, store: StoreDep, settings: SettingsDep
) -> WebhookEventPublic:
    """The event, its state at each endpoint subscribed to its type, and every try (newest last)."""
    event = await store.webhooks.load(event_id)
    if event is None or event.owner != principal.name:
        raise ApiError(
            404,
            "not_found",
            f"no webhook event {event_id!r} (an event is evt_ + the id of a response, generation or batch that "
            "ended while webhooks were configured; it appears once a worker has taken it from the outbox)",
        )
    deliveries = []
    for endpoint in settings.webhook_endpoints:
        if not endpoint.wants(event.type):
            continue
        d = event.deliveries.get(endpoint.key, Delivery())
        deliveries.append(
            WebhookDelivery(
                endpoint=endpoint.shown,
                status=d.state,
                attempts=d.tries,
                next_attempt_at=d.next_ms // 1000 if d.state == PENDING and d.tries else None,
            )
        )
    return WebhookEventPublic(
        id=event.id,
        type=event.type,
        created_at=event.created_at,
        data={"id": event.object_id},
        deliveries=deliveries,
        attempts=[WebhookAttempt.model_validate(a) for a in await store.webhooks.attempts(event)],
    )
