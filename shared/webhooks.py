"""Webhooks as OpenAI sends them (Standard Webhooks): the endpoints an operator configures, the event types, the
event body and its signature. Delivery lives in ``worker/webhooks.py``; the outbox in ``shared/store/webhooks.py``.

Endpoints come from ``REASONQ_WEBHOOKS`` only (a JSON list): reasonq never sends to a URL a client named, and
follows no redirect. Each endpoint has a signing secret (``whsec_`` + base64, as OpenAI issues them, or any text),
given inline or by the name of an environment variable, and the event types it wants (all when omitted).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from typing import Any, Final
from urllib.parse import urlsplit

import orjson
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from reasonq.shared.errors import ConfigurationError

RESPONSE_TYPES: Final = ("response.completed", "response.failed", "response.cancelled", "response.incomplete")
# batch.failed is OpenAI's for a batch whose input failed validation: reasonq refuses such a batch at creation
# (a 4xx), so none is ever sent; it is accepted in a subscription for configurations written for OpenAI.
BATCH_TYPES: Final = ("batch.completed", "batch.failed", "batch.cancelled", "batch.expired")
GENERATION_TYPES: Final = ("generation.completed", "generation.failed", "generation.cancelled")
EVENT_TYPES: Final = frozenset((*RESPONSE_TYPES, *BATCH_TYPES, *GENERATION_TYPES))
EVENT_PREFIX: Final = "evt_"


class WebhookEndpoint(BaseModel):
    """One entry of ``REASONQ_WEBHOOKS``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(min_length=1)
    secret: SecretStr = SecretStr("")
    secret_env: str | None = None
    events: frozenset[str] | None = None

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL")
        return url

    @field_validator("events")
    @classmethod
    def _known_types(cls, events: frozenset[str] | None) -> frozenset[str] | None:
        unknown = sorted((events or frozenset()) - EVENT_TYPES)
        if unknown:
            raise ValueError(f"unknown event types {unknown}; known: {sorted(EVENT_TYPES)}")
        return events

    @model_validator(mode="after")
    def _secret_from_environment(self) -> WebhookEndpoint:
        if self.secret_env and not self.secret.get_secret_value():
            object.__setattr__(self, "secret", SecretStr(os.environ.get(self.secret_env, "")))
        if not self.secret.get_secret_value():
            raise ValueError("needs a signing secret (secret, or secret_env naming a set environment variable)")
        return self

    @property
    def key(self) -> str:
        """A stable short name for this endpoint in delivery records (its URL's hash: no secret in it)."""
        return hashlib.sha256(self.url.encode()).hexdigest()[:12]

    @property
    def shown(self) -> str:
        """The URL as logs and the delivery log show it: no user, password or query (where tokens hide)."""
        parts = urlsplit(self.url)
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{parts.hostname}{port}{parts.path}"

    def wants(self, event_type: str) -> bool:
        """Whether this endpoint subscribed to ``event_type``."""
        return self.events is None or event_type in self.events


def parse_webhooks(text: str) -> tuple[WebhookEndpoint, ...]:
    """``REASONQ_WEBHOOKS``: a JSON list of ``{"url", "secret" | "secret_env", "events"}``.

    Raises:
        ConfigurationError: malformed JSON or a wrong entry; the message names the entry and field, never a secret.
    """
    if not text.strip():
        return ()
    try:
        raw: Any = orjson.loads(text)
    except orjson.JSONDecodeError as e:
        raise ConfigurationError(f"REASONQ_WEBHOOKS is not valid JSON ({e})") from None
    if not isinstance(raw, list):
        raise ConfigurationError('REASONQ_WEBHOOKS must be a JSON list: [{"url": ..., "secret": ...}, ...]')
    endpoints = []
    for i, body in enumerate(raw):
        try:
            endpoints.append(WebhookEndpoint.model_validate(body))
        except ValidationError as e:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'entry'}: {err['msg']}" for err in e.errors()
            )
            raise ConfigurationError(f"REASONQ_WEBHOOKS[{i}]: {problems}") from None
    if len({e.url for e in endpoints}) != len(endpoints):
        raise ConfigurationError("REASONQ_WEBHOOKS names one URL twice")
    return tuple(endpoints)


def event_id(object_id: str) -> str:
    """The id of the event an object's end sends (an object ends once, so one id; receivers dedupe on it)."""
    return EVENT_PREFIX + object_id


def object_of(event_id_: str) -> str:
    """The id of the object (response, generation, batch) an event is about."""
    return event_id_.removeprefix(EVENT_PREFIX)


def generation_event_type(status: str, finish_reason: str | None, is_response: bool) -> str:
    """The event an ended generation sends: ``response.*`` for one created through ``/v1/responses`` (cut at
    ``max_output_tokens`` is ``incomplete``, as OpenAI says it), ``generation.*`` otherwise."""
    if not is_response:
        return f"generation.{status}"
    if status == "completed" and finish_reason == "length":
        return "response.incomplete"
    return f"response.{status}"


def event_body(event_id_: str, event_type: str, created_at: int) -> bytes:
    """The body OpenAI sends: ``{id, object, created_at, type, data: {id}}``."""
    return orjson.dumps(
        {
            "id": event_id_,
            "object": "event",
            "created_at": created_at,
            "type": event_type,
            "data": {"id": object_of(event_id_)},
        }
    )


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix("whsec_")) if secret.startswith("whsec_") else secret.encode()


def signature_headers(secret: str, event_id_: str, timestamp_s: int, body: bytes) -> dict[str, str]:
    """Standard Webhooks headers: ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature``
    (``v1,`` + base64 HMAC-SHA256 of ``id.timestamp.body``), which the openai SDK's ``webhooks.unwrap`` checks."""
    signed = f"{event_id_}.{timestamp_s}.".encode() + body
    digest = base64.b64encode(hmac.new(_key(secret), signed, hashlib.sha256).digest()).decode()
    return {
        "webhook-id": event_id_,
        "webhook-timestamp": str(timestamp_s),
        "webhook-signature": f"v1,{digest}",
        "content-type": "application/json",
    }
