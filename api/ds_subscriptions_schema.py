"""Bodies of the Durable Streams subscription APIs (PROTOCOL.md 6-7) and the webhook URL rule (6.2, 12.8)."""

from __future__ import annotations

import hashlib
import ipaddress
from typing import Any, Literal
from urllib.parse import urlsplit

import orjson
from pydantic import BaseModel, ConfigDict, Field, model_validator

_PATH = Field(min_length=1, max_length=1024)
MAX_STREAMS = 1_000


def normalize_path(path: str) -> str:
    """A stream-root-relative path as the protocol compares them: no leading or trailing slashes."""
    return path.strip("/")


class WebhookTarget(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=1, max_length=2048)


class SubscriptionIn(BaseModel):
    """PUT ``__ds/subscriptions/{id}`` (6.2)."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["webhook", "pull-wake"]
    pattern: str | None = Field(None, min_length=1, max_length=1024)
    streams: list[str] = Field(default_factory=list, max_length=MAX_STREAMS)
    webhook: WebhookTarget | None = None
    wake_stream: str | None = Field(None, min_length=1, max_length=1024)
    lease_ttl_ms: int = Field(30_000, ge=1_000, le=600_000, description="1 second to 10 minutes")
    description: str | None = Field(None, max_length=1024)

    @model_validator(mode="after")
    def _consistent(self) -> SubscriptionIn:
        if not self.pattern and not self.streams:
            raise ValueError("give a pattern, streams, or both")
        if any(not normalize_path(s) or len(s) > 1024 for s in self.streams):
            raise ValueError("streams: each is a stream path of 1 to 1024 characters")
        if self.type == "webhook" and (self.webhook is None or self.wake_stream is not None):
            raise ValueError("a webhook subscription needs webhook.url (and no wake_stream)")
        if self.type == "pull-wake" and (not self.wake_stream or self.webhook is not None):
            raise ValueError("a pull-wake subscription needs wake_stream (and no webhook)")
        if self.wake_stream and normalize_path(self.wake_stream) in {normalize_path(s) for s in self.streams}:
            raise ValueError("streams: the wake stream cannot be one of its streams (each wake would wake it again)")
        return self

    def config(self) -> dict[str, Any]:
        """The normalized configuration (stored, and hashed for idempotent re-confirmation)."""
        return {
            "type": self.type,
            "pattern": normalize_path(self.pattern) if self.pattern else None,
            "streams": sorted({normalize_path(s) for s in self.streams}),
            "webhook": {"url": self.webhook.url} if self.webhook else None,
            "wake_stream": normalize_path(self.wake_stream) if self.wake_stream else None,
            "lease_ttl_ms": self.lease_ttl_ms,
            "description": self.description,
        }


def config_hash(config: dict[str, Any]) -> str:
    return hashlib.sha256(orjson.dumps(config, option=orjson.OPT_SORT_KEYS)).hexdigest()


class StreamsIn(BaseModel):
    """POST ``__ds/subscriptions/{id}/streams`` (6.4)."""

    model_config = ConfigDict(extra="forbid")

    streams: list[str] = Field(min_length=1, max_length=MAX_STREAMS)


class AckIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stream: str | None = Field(None, min_length=1, max_length=1024)
    path: str | None = Field(None, min_length=1, max_length=1024)  # an alias the reference server accepts
    offset: str = Field(min_length=1, max_length=64)

    @property
    def target(self) -> str:
        return normalize_path(self.stream or self.path or "")


class WakeIn(BaseModel):
    """POST ``callback``, ``ack`` (7.1, 7.2) and ``release`` (no acks, no done)."""

    model_config = ConfigDict(extra="forbid")

    wake_id: str = Field(min_length=1, max_length=128)
    generation: int = Field(ge=0)
    acks: list[AckIn] = Field(default_factory=list, max_length=MAX_STREAMS)
    done: bool = False

    @model_validator(mode="after")
    def _targets(self) -> WakeIn:
        if any(not a.target for a in self.acks):
            raise ValueError("acks: each names its stream")
        return self


class ClaimIn(BaseModel):
    """POST ``claim`` (7.2)."""

    model_config = ConfigDict(extra="forbid")

    worker: str = Field(min_length=1, max_length=256)


def is_local_dev_host(host: str) -> bool:
    """The protocol's development exception: ``localhost`` or ``127.0.0.x``."""
    if host == "localhost":
        return True
    try:
        address = ipaddress.IPv4Address(host)
    except ValueError:
        return False
    return address in ipaddress.IPv4Network("127.0.0.0/24")


def is_public_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether a webhook may go to this address: not private (RFC 1918, ULA), loopback, link-local (cloud
    metadata), multicast, reserved or unspecified."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def webhook_url_problem(url: str, *, loopback: bool) -> str | None:
    """Why ``url`` may not receive webhooks (PROTOCOL.md 6.2, 12.8), or ``None``."""
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        _ = parts.port
    except ValueError:
        return "webhook.url: not a valid URL"
    if not host:
        return "webhook.url: not a valid URL"
    if parts.username or parts.password:
        return "webhook.url: credentials in the URL are not accepted"
    if parts.scheme == "http":
        if is_local_dev_host(host):
            return None if loopback else "webhook.url: loopback webhooks are turned off here (https only)"
        return "webhook.url: http is only accepted for localhost or 127.0.0.x; use https"
    if parts.scheme != "https":
        return "webhook.url: must use https"
    if host == "localhost" or host.endswith(".localhost"):
        return "webhook.url: localhost is only accepted over http (development)"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None  # a name: its addresses are checked at each delivery
    if not is_public_address(address):
        return "webhook.url: private, loopback and link-local addresses are not accepted"
    return None


WakeMode = Literal["callback", "ack", "release"]
