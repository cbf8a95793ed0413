"""Submitting a generation: one path for every route that creates one (native and OpenAI-compatible)."""

from __future__ import annotations

import logging
import re
import secrets
import time

from celery import Celery
from kombu.exceptions import OperationalError
from starlette.concurrency import run_in_threadpool

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


async def submit_generation(
    body: GenerationCreate, store: GenerationStore, celery: Celery, settings: Settings
) -> tuple[str, float]:
    """Write the generation and queue its task; returns its id and creation time.

    Raises:
        ApiError: 503 when the broker cannot take the task (nothing is left behind).
    """
    generation_id = new_generation_id()
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
    return generation_id, created_at
