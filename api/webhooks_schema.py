"""The body of ``GET /v1/webhook_events/{id}``: an event, where it goes and every try (``api/routes/webhooks.py``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class WebhookAttempt(BaseModel):
    """One POST of the event to one endpoint."""

    endpoint: str = Field(description="The endpoint's URL without user, password or query.")
    attempt: int = Field(description="1 for the first try of this endpoint.")
    at: int = Field(description="When it was sent (Unix seconds).")
    duration_ms: int
    status_code: int | None = Field(None, description="The endpoint's answer; absent when none came.")
    error: str | None = Field(None, description="Why no answer came (e.g. ReadTimeout, ConnectError).")
    next_attempt_in_s: float | None = Field(None, description="After a failed try: the wait before the next.")


class WebhookDelivery(BaseModel):
    """The event's state at one endpoint that subscribed to its type."""

    endpoint: str
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    next_attempt_at: int | None = Field(None, description="Pending after a failure: when it is tried again.")


class WebhookEventPublic(BaseModel):
    """A webhook event as sent (``id`` is the ``webhook-id`` header), with its deliveries and tries."""

    id: str
    object: Literal["webhook_event"] = "webhook_event"
    type: str
    created_at: int
    data: dict[str, str]
    deliveries: list[WebhookDelivery]
    attempts: list[WebhookAttempt]
