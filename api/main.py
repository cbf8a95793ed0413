"""The FastAPI app: state, error handlers, routers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api.errors import install_error_handlers
from api.hub import Hub
from api.routes import generations, health
from shared.queue import create_celery
from shared.redis import create_redis
from shared.settings import get_settings
from shared.store import GenerationStore


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = get_settings()
    redis = create_redis(settings.redis_url, max_connections=settings.redis_max_connections)
    app.state.store = store = GenerationStore(redis)
    app.state.hub = hub = Hub(
        settings.redis_url, store, block_ms=settings.hub_block_ms, ring_events=settings.hub_ring_events
    )
    app.state.celery = create_celery(settings)
    hub.start()
    try:
        yield
    finally:
        await hub.stop()
        await redis.aclose()


app = FastAPI(title="reasonq", version="0.1.0", lifespan=lifespan)
install_error_handlers(app)
app.include_router(health.router)
app.include_router(generations.router)
