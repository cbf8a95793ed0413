"""Submitting a generation: one path for every route that creates one (native and OpenAI-compatible)."""

from __future__ import annotations

import logging
import re
import secrets
import time

from celery import Celery
from kombu.exceptions import OperationalError
from starlette.concurrency import run_in_threadpool

from api import idempotency, metrics
from api.errors import ApiError
from shared.queue import GENERATE_TASK, SEND_RETRY_POLICY
from shared.schemas import GenerationCreate
from shared.settings import Settings
from shared.store import GenerationStore

logger = logging.getLogger(__name__)

# "gen_" + 22 url-safe characters: 128 random bits.
_ID_RE = re.compile(r"^gen_[A-Za-z0-9_-]{22}$")


def new_generation_id() -> str:
    """An unguessable generation id (128 random bits)."""
    return "gen_" + secrets.token_urlsafe(16)


def checked_id(generation_id: str) -> str:
    """The id if it has the shape of one, else a 404 (no lookup for ids that cannot exist)."""
    if not _ID_RE.match(generation_id):
        raise ApiError(404, "not_found", "no generation with this id")
    return generation_id


async def submit_once(
    body: GenerationCreate,
    store: GenerationStore,
    celery: Celery,
    settings: Settings,
    idempotency_key: str | None,
    scope: str,
) -> tuple[str, float]:
    """``submit_generation`` guarded by an ``Idempotency-Key``: the same key and body within the retention
    time return the original generation (no second job); the same key with another body is a 409.

    The body is compared as validated (so formatting and key order do not matter).
    """
    if idempotency_key is None:
        return await submit_generation(body, store, celery, settings)
    generation_id = new_generation_id()
    digest = idempotency.body_hash(body.model_dump_json().encode())
    earlier = await idempotency.claim(store.redis, scope, idempotency_key, digest, generation_id, settings.retention_s)
    if earlier is not None:
        record = await idempotency.wait_for(lambda: store.get(earlier))
        return earlier, record.created_at
    try:
        return await submit_generation(body, store, celery, settings, generation_id)
    except BaseException:
        await idempotency.release(store.redis, scope, idempotency_key)
        raise


async def submit_generation(
    body: GenerationCreate,
    store: GenerationStore,
    celery: Celery,
    settings: Settings,
    generation_id: str | None = None,
) -> tuple[str, float]:
    """Write the generation and queue its task; returns its id and creation time.

    Raises:
        ApiError: 503 when the broker cannot take the task (nothing is left behind).
    """
    generation_id = generation_id or new_generation_id()
    body.model = body.model or settings.default_model
    created_at = time.time()
    await store.create(generation_id, body, created_at, settings.queue_name)
    try:
        await run_in_threadpool(
            celery.send_task,
            GENERATE_TASK,
            args=[generation_id],
            queue=settings.queue_name,
            retry_policy=SEND_RETRY_POLICY,
        )
    except (OperationalError, OSError) as e:
        logger.warning("generation %s: could not queue its task: %s", generation_id, e)
        await store.delete(generation_id)
        raise ApiError(503, "unavailable", "the task queue is unavailable; retry shortly", {"Retry-After": "1"}) from e
    logger.info("generation %s: queued (model %s)", generation_id, body.model)
    metrics.GENERATIONS_SUBMITTED.labels("single").inc()
    return generation_id, created_at


async def dispatch_many(celery: Celery, generation_ids: list[str], queue: str) -> None:
    """Queue the tasks of many generations over one broker connection (a batch)."""

    def send() -> None:
        with celery.producer_or_acquire() as producer:
            for generation_id in generation_ids:
                celery.send_task(
                    GENERATE_TASK, args=[generation_id], queue=queue, producer=producer, retry_policy=SEND_RETRY_POLICY
                )

    await run_in_threadpool(send)
    metrics.GENERATIONS_SUBMITTED.labels("batch").inc(len(generation_ids))
