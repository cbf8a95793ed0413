"""The FastAPI app: state, error handlers, routers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline

from reasonq.api.access import AccessReader, ShareSigner
from reasonq.api.auth import KeyRing, announce_access
from reasonq.api.ds_signing import WebhookSigner
from reasonq.api.ds_wakes import Waker
from reasonq.api.errors import install_error_handlers
from reasonq.api.hub import Hub
from reasonq.api.limits import Admission
from reasonq.api.middleware import RequestLimitMiddleware
from reasonq.api.routes import (
    batches,
    ds_subscriptions,
    durable,
    files,
    generations,
    health,
    openai_compat,
    pages,
    responses,
    webhooks,
)
from reasonq.api.submission import Submitter
from reasonq.shared.batching import ScriptBatcher
from reasonq.shared.queue import create_celery
from reasonq.shared.redis import check_eviction_policy, create_blocking_redis, create_redis
from reasonq.shared.settings import get_settings
from reasonq.shared.store import GenerationStore
from reasonq.shared.tuning import pin_mmap_threshold, tune_gc


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = get_settings()
    check_eviction_policy(settings.redis_url, allow=settings.allow_evicting_redis)  # `uvicorn` run directly
    redis = create_redis(settings.redis_url, max_connections=settings.redis_max_connections)
    # Viewers' reads (access, replay, a topic's tail) pipelined across callers: a join storm over 10,000
    # generations queued ~40,000 round trips behind the pool of 64, and some waited out its 10 s (issue 14).
    batcher = ScriptBatcher(redis)
    app.state.store = store = GenerationStore(
        redis, batcher, simulated=settings.model_simulated, notify=bool(settings.webhook_endpoints)
    )
    app.state.hub = hub = Hub(
        lambda: create_blocking_redis(settings.redis_url, block_ms=settings.hub_block_ms),  # one per reader
        store,
        block_ms=settings.hub_block_ms,
        ring_events=settings.hub_ring_events,
        activity_topics=settings.hub_activity_topics,
    )
    app.state.celery = celery = create_celery(settings)
    app.state.keyring = keyring = KeyRing.from_settings(settings)
    app.state.signer = ShareSigner(store, settings)
    app.state.access = AccessReader(store.records.access_of)
    app.state.submitter = Submitter(store, celery, settings, Admission(store.admission, settings.retention_s))
    app.state.webhook_signer = webhook_signer = WebhookSigner.from_settings(settings)
    loopback = keyring.open if settings.ds_webhook_loopback is None else settings.ds_webhook_loopback
    app.state.waker = waker = Waker(store, webhook_signer, timeout_s=settings.webhook_timeout_s, loopback=loopback)
    announce_access(keyring)
    hub.start()
    waker.start()
    tune_gc()
    pin_mmap_threshold()
    try:
        yield
    finally:
        await waker.stop()
        await hub.stop()
        await batcher.close()
        await redis.aclose()


# /docs and /redoc from assets the fastapi-offline wheel ships: FastAPI's default loads Swagger UI from a CDN,
# a blank page with no internet (issue 11).
app = FastAPIOffline(title="reasonq", version=version("reasonq"), lifespan=lifespan, favicon_url="/favicon.ico")
install_error_handlers(app)
# No middleware here may change a response's body: the hub writes live viewers' chunks past them (api/protocol.py,
# tests/api/test_direct_writes.py holds the list).
app.add_middleware(RequestLimitMiddleware, settings=get_settings())
app.include_router(health.router)
app.include_router(generations.router)
app.include_router(openai_compat.router, prefix="/v1")
app.include_router(openai_compat.router, include_in_schema=False)  # DeepSeek-style base URLs (no /v1)
app.include_router(responses.router)
app.include_router(batches.router)
app.include_router(files.router)
app.include_router(webhooks.router)
app.include_router(ds_subscriptions.router)  # before durable's /v1/stream/{path}: __ds/ is the protocol's own
app.include_router(durable.router)
app.include_router(pages.router)
app.mount("/static", StaticFiles(directory=pages.STATIC_DIR), name="static")
