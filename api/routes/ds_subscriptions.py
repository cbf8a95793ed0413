"""The Durable Streams protocol's reserved subscription APIs (PROTOCOL.md 6-7) under ``/v1/stream/__ds/``:
subscriptions (PUT, GET, DELETE), explicit stream links, webhook callbacks, pull-wake claim / ack / release, and
the webhook signing keys (``jwks.json``).

A subscription belongs to the key that created it, as streams do; its stream paths are that key's. Callback, ack
and release carry a wake's token instead of a key (a webhook receiver holds no API key): the token names the
subscription and is checked, with the wake's generation and id, in one script (``dss_settle.lua``). Errors are
``{"error": {"code", "message"}}`` with the protocol's codes.
"""

from __future__ import annotations

import re
import secrets
from typing import Any, TypeVar

import orjson
from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ValidationError
from redis.exceptions import RedisError

from reasonq.api.auth import PrincipalDep
from reasonq.api.deps import StoreDep
from reasonq.api.ds_signing import WebhookSigner, published_jwks
from reasonq.api.ds_subscriptions_schema import (
    ClaimIn,
    StreamsIn,
    SubscriptionIn,
    WakeIn,
    WakeMode,
    config_hash,
    normalize_path,
    webhook_url_problem,
)
from reasonq.api.ds_wakes import Waker, now_ms, stream_infos
from reasonq.api.durable_protocol import issued_offset
from reasonq.api.durable_reads import headers
from reasonq.api.errors import _validation_message
from reasonq.shared import keys
from reasonq.shared.store import GenerationStore
from reasonq.shared.store.subscriptions import Subscription

router = APIRouter(tags=["durable streams"], include_in_schema=False)
_BASE = "/v1/stream/__ds"
_SUB = _BASE + "/subscriptions/{sub}"
_TOKEN_RE = re.compile(r"^([0-9a-f]{32})\.(\d{1,18})\.([A-Za-z0-9_-]{16,64})$")
_Model = TypeVar("_Model", bound=BaseModel)


class SubscriptionError(Exception):
    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra


def _json(body: Any, status: int = 200, content_type: str = "application/json") -> Response:
    return Response(orjson.dumps(body), status_code=status, headers=headers(content_type=content_type))


async def _answer(work: Any) -> Response:
    try:
        response: Response = await work
        return response
    except SubscriptionError as e:
        return _json({"error": {"code": e.code, "message": e.message, **e.extra}}, e.status)
    except (RedisError, OSError):
        return _json({"error": {"code": "UNAVAILABLE", "message": "storage unavailable; retry"}}, 503)


async def _body(request: Request, model: type[_Model]) -> _Model:
    raw = await request.body()
    try:
        return model.model_validate_json(raw or b"{}")
    except ValidationError as e:
        message, _ = _validation_message(e.errors(include_url=False), raw)
        raise SubscriptionError(400, "INVALID_REQUEST", message) from e


def _waker(request: Request) -> Waker:
    waker: Waker = request.app.state.waker
    return waker


def _jwks_url(request: Request) -> str:
    return f"{str(request.base_url).rstrip('/')}{_BASE}/jwks.json"


async def _load(store: GenerationStore, owner: str, client_id: str) -> Subscription:
    sub = await store.subscriptions.load(keys.ds_subscription_id(owner, client_id))
    if sub is None:
        raise SubscriptionError(404, "SUBSCRIPTION_NOT_FOUND", "no such subscription")
    return sub


def _public(sub: Subscription, request: Request) -> dict[str, Any]:
    config = sub.config
    webhook = config.get("webhook")
    signer: WebhookSigner = request.app.state.webhook_signer
    return {
        "id": config.get("id"),
        "subscription_id": config.get("id"),
        "type": sub.type,
        "pattern": config.get("pattern"),
        "streams": stream_infos(sub, {}, with_tails=False),
        "webhook": {
            "url": webhook["url"],
            "signing": {"alg": "ed25519", "kid": signer.kid, "jwks_url": _jwks_url(request)},
        }
        if webhook
        else None,
        "wake_stream": config.get("wake_stream"),
        "lease_ttl_ms": config.get("lease_ttl_ms"),
        "created_at": sub.fields.get("created_at"),
        "status": sub.fields.get("status", "active"),
        "description": config.get("description"),
    }


@router.get(_BASE + "/jwks.json")
async def jwks(request: Request, store: StoreDep) -> Response:
    """The webhook signing keys (6.5)."""

    async def work() -> Response:
        body = await published_jwks(store.subscriptions, request.app.state.webhook_signer)
        response = _json(body, content_type="application/jwk-set+json")
        response.headers["cache-control"] = "public, max-age=300"
        return response

    return await _answer(work())


@router.put(_SUB)
async def put_subscription(sub: str, request: Request, principal: PrincipalDep, store: StoreDep) -> Response:
    """Create (201) or re-confirm (200) a subscription; 409 when the id has another configuration."""

    async def work() -> Response:
        spec = await _body(request, SubscriptionIn)
        waker = _waker(request)
        if spec.webhook is not None:
            problem = webhook_url_problem(spec.webhook.url, loopback=waker.loopback)
            if problem:
                raise SubscriptionError(400, "WEBHOOK_URL_REJECTED", problem)
        config = spec.config()
        digest = config_hash(config)
        owner, sub_id = principal.name, keys.ds_subscription_id(principal.name, sub)
        tails = await store.subscriptions.tails(owner, config["streams"])
        links = [(path, tails.get(path, 0), "e") for path in config["streams"]]
        stored = {**config, "id": sub, "base_url": str(request.base_url)}
        outcome = await store.subscriptions.create(owner, sub_id, stored, digest, links)
        if outcome == "conflict":
            raise SubscriptionError(
                409, "SUBSCRIPTION_ALREADY_EXISTS", "a subscription with this id exists with another configuration"
            )
        if outcome == "created" and config["pattern"]:
            await waker.backfill(owner, sub_id, config["pattern"], config["wake_stream"])
        return _json(_public(await _load(store, owner, sub), request), 201 if outcome == "created" else 200)

    return await _answer(work())


@router.get(_SUB)
async def get_subscription(sub: str, request: Request, principal: PrincipalDep, store: StoreDep) -> Response:
    async def work() -> Response:
        return _json(_public(await _load(store, principal.name, sub), request))

    return await _answer(work())


@router.delete(_SUB)
async def delete_subscription(sub: str, principal: PrincipalDep, store: StoreDep) -> Response:
    """Tombstone the subscription: its wake's callbacks, acks and releases fail from now on."""

    async def work() -> Response:
        await store.subscriptions.delete(await _load(store, principal.name, sub))
        return Response(status_code=204, headers=headers())

    return await _answer(work())


@router.post(_SUB + "/streams")
async def add_streams(sub: str, request: Request, principal: PrincipalDep, store: StoreDep) -> Response:
    """Link streams explicitly, at their current tails (idempotent)."""

    async def work() -> Response:
        spec = await _body(request, StreamsIn)
        found = await _load(store, principal.name, sub)
        paths = sorted({normalize_path(p) for p in spec.streams if normalize_path(p)})
        if found.config.get("wake_stream") in paths:
            raise SubscriptionError(400, "INVALID_REQUEST", "streams: the wake stream cannot be one of its streams")
        tails = await store.subscriptions.tails(principal.name, paths)
        await store.subscriptions.link(principal.name, found.sub_id, "e", [(p, tails.get(p, 0)) for p in paths])
        return Response(status_code=204, headers=headers())

    return await _answer(work())


@router.delete(_SUB + "/streams/{path:path}")
async def remove_stream(sub: str, path: str, principal: PrincipalDep, store: StoreDep) -> Response:
    """Remove an explicit link (a matching pattern's link stays; absent links are fine)."""

    async def work() -> Response:
        found = await _load(store, principal.name, sub)
        await store.subscriptions.unlink(principal.name, found.sub_id, "e", normalize_path(path))
        return Response(status_code=204, headers=headers())

    return await _answer(work())


@router.post(_SUB + "/claim")
async def claim(sub: str, request: Request, principal: PrincipalDep, store: StoreDep) -> Response:
    """A pull-wake worker takes the subscription's wake (409 ``ALREADY_CLAIMED`` while another holds it)."""

    async def work() -> Response:
        spec = await _body(request, ClaimIn)
        found = await _load(store, principal.name, sub)
        tails = await store.subscriptions.tails(principal.name, list(found.links))
        snapshot = orjson.dumps({p: tails.get(p, 0) for p in found.links})
        rand = secrets.token_urlsafe(24)
        reply = await store.subscriptions.claim(
            found.sub_id, spec.worker, rand, bool(found.pending(tails)), "w_" + secrets.token_hex(8), snapshot
        )
        match reply[0]:
            case "missing":
                raise SubscriptionError(404, "SUBSCRIPTION_NOT_FOUND", "no such subscription")
            case "type":
                raise SubscriptionError(400, "INVALID_REQUEST", "only a pull-wake subscription is claimed")
            case "claimed":
                raise SubscriptionError(
                    409,
                    "ALREADY_CLAIMED",
                    "another worker holds this subscription's lease",
                    current_holder=reply[1],
                    generation=int(reply[2]),
                )
            case "none":
                raise SubscriptionError(409, "NO_PENDING_WORK", "no linked stream has data past its cursor")
        generation, wake_id = int(reply[1]), reply[2]
        ttl_ms = int(found.config.get("lease_ttl_ms", 30_000))
        await _waker(request).wake_now([found.sub_id], now_ms() + ttl_ms)  # the lease's end is looked at
        return _json(
            {
                "wake_id": wake_id,
                "generation": generation,
                "token": f"{found.sub_id}.{generation}.{rand}",
                "streams": stream_infos(found, tails),
                "lease_ttl_ms": ttl_ms,
            }
        )

    return await _answer(work())


def _token(request: Request) -> tuple[str, str, str]:
    """The wake token of ``Authorization: Bearer`` as (subscription id, generation, secret part)."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    match = _TOKEN_RE.match(value.strip()) if scheme.lower() == "bearer" else None
    if match is None:
        raise SubscriptionError(401, "TOKEN_INVALID", "Authorization: Bearer <the wake's token> is required")
    return match.group(1), match.group(2), match.group(3)


async def _settle(sub: str, request: Request, store: GenerationStore, mode: WakeMode) -> Response:
    sub_id, token_generation, secret = _token(request)
    spec = await _body(request, WakeIn)
    found = await store.subscriptions.load(sub_id)
    if found is None or found.config.get("id") != sub:
        raise SubscriptionError(404, "SUBSCRIPTION_NOT_FOUND", "no such subscription")
    if mode != "callback" and found.type != "pull-wake":
        raise SubscriptionError(400, "INVALID_REQUEST", f"{mode}: only for a pull-wake subscription")
    owner = found.fields["owner"]
    acks: list[tuple[str, int, int]] = []
    if mode != "release":
        targets = [a.target for a in spec.acks]
        tails = await store.subscriptions.tails(owner, targets)
        for ack in spec.acks:
            if ack.offset == "-1":
                raise SubscriptionError(409, "INVALID_OFFSET", f"acks: {ack.target}: an ack's offset is never -1")
            entry = issued_offset(ack.offset)
            if entry is None:
                raise SubscriptionError(400, "INVALID_REQUEST", f"acks: {ack.offset[:64]!r} is not an offset")
            acks.append((ack.target, entry, tails.get(ack.target, 0)))  # no stream (yet): its tail is the start
    reply = await store.subscriptions.settle(
        sub_id, mode, (token_generation, secret), str(spec.generation), spec.wake_id, spec.done, acks
    )
    match reply[0]:
        case "missing":
            raise SubscriptionError(404, "SUBSCRIPTION_NOT_FOUND", "no such subscription")
        case "token":
            raise SubscriptionError(401, "TOKEN_INVALID", "this token is not one of this subscription's wakes")
        case "fenced":
            raise SubscriptionError(409, "FENCED", "this wake is over (a newer generation or wake took its place)")
        case "offset":
            raise SubscriptionError(409, "INVALID_OFFSET", f"acks: {reply[2]}: {reply[1]}")
    next_wake = False
    if spec.done or mode == "release":
        after = await store.subscriptions.load(sub_id)
        if after is not None and after.pending(await store.subscriptions.tails(owner, list(after.links))):
            next_wake = True
            await _waker(request).wake_now([sub_id])
    if mode == "release":
        return Response(status_code=204, headers=headers())
    return _json({"ok": True, "next_wake": next_wake})


@router.post(_SUB + "/callback")
async def callback(sub: str, request: Request, store: StoreDep) -> Response:
    """A webhook receiver acks (and extends its lease, or ends the wake with ``done``), with the wake's token."""
    return await _answer(_settle(sub, request, store, "callback"))


@router.post(_SUB + "/ack")
async def ack(sub: str, request: Request, store: StoreDep) -> Response:
    """A pull-wake worker acks with its claim token (a heartbeat without ``done``)."""
    return await _answer(_settle(sub, request, store, "ack"))


@router.post(_SUB + "/release")
async def release(sub: str, request: Request, store: StoreDep) -> Response:
    """A pull-wake worker gives its claim back without acking."""
    return await _answer(_settle(sub, request, store, "release"))
