"""Submitting a generation: one path for every route that creates one (native and OpenAI-compatible)."""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import orjson
from amqp.exceptions import ChannelError
from celery import Celery
from kombu.exceptions import OperationalError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from starlette.concurrency import run_in_threadpool

from reasonq.api import idempotency, metrics
from reasonq.api.auth import Principal
from reasonq.api.errors import ApiError, not_found
from reasonq.api.limits import Admission, check_request
from reasonq.shared.queue import GENERATE_TASK, SEND_RETRY_POLICY
from reasonq.shared.schemas import GenerationCreate
from reasonq.shared.settings import Settings
from reasonq.shared.store import Batches, BatchOptions, BatchState, GenerationStore

logger = logging.getLogger(__name__)
T = TypeVar("T")

# "gen_" + 22 url-safe characters: 128 random bits.
_ID_RE = re.compile(r"^gen_[A-Za-z0-9_-]{22}$")


def new_generation_id() -> str:
    """An unguessable generation id (128 random bits)."""
    return "gen_" + secrets.token_urlsafe(16)


def checked_id(generation_id: str) -> str:
    """The id if it has the shape of one, else a 404 (no lookup for ids that cannot exist)."""
    if not _ID_RE.match(generation_id):
        raise not_found()
    return generation_id


class Submitter:
    """Creates generations for the routes that do (native, OpenAI-compatible, batches): limits, idempotency,
    the record, the task.

    Args:
        store: the generation store.
        celery: the Celery app tasks are sent with.
        settings: the process's settings.
        admission: the per-key rate and concurrency counter.
    """

    def __init__(self, store: GenerationStore, celery: Celery, settings: Settings, admission: Admission) -> None:
        self.store = store
        self.celery = celery
        self.settings = settings
        self.admission = admission

    async def submit(
        self,
        body: GenerationCreate,
        principal: Principal,
        idempotency_key: str | None,
        scope: str,
        surface: dict[str, Any] | None = None,
    ) -> tuple[str, float]:
        """Check ``body`` against every limit, then create the generation and queue its task; returns its id and
        creation time. Nothing is written when a check fails.

        With an ``Idempotency-Key``, the same key and body within the retention time return the original
        generation (no second job, not counted again); the same key with another body is a 409. The body is
        compared as validated (so formatting and key order do not matter). Keys are per client key.
        """
        check_request(body, self.settings, principal)
        generation_id = new_generation_id()
        store = self.store

        async def create() -> tuple[str, float]:
            await self.admission.admit(principal, generation_id, interactive=True)
            try:
                return await self._create(body, principal, generation_id, surface)
            except BaseException:
                await self.admission.release(principal, generation_id)
                raise

        async def existing(earlier: str) -> tuple[str, float]:
            record = await idempotency.wait_for(lambda: store.records.get(earlier))
            return earlier, record.created_at

        digest = idempotency.body_hash(body.model_dump_json().encode() + (orjson.dumps(surface) if surface else b""))
        return await self._once(scope, principal, idempotency_key, digest, generation_id, create, existing)

    async def submit_batch(
        self,
        items: list[tuple[str, GenerationCreate]],
        principal: Principal,
        idempotency_key: str | None,
        digest: str,
        options: BatchOptions,
    ) -> BatchState:
        """Create a batch of already validated lines (``(custom_id, request)``) and queue every task: the same
        path as one generation (admission, idempotency, cleanup when the broker fails), counted as one request
        and run on the batch queue. ``digest`` identifies the request body for ``Idempotency-Key``."""
        batches = self.store.batches
        batch_id = "batch_" + secrets.token_urlsafe(16)

        async def create() -> BatchState:
            await self.admission.admit(principal, batch_id, interactive=False)
            try:
                await self._create_batch(batches, batch_id, items, principal, options)
            except BaseException:
                await self.admission.release(principal, batch_id)
                raise
            state = await batches.get(batch_id)
            assert state is not None
            return state

        async def existing(earlier: str) -> BatchState:
            return await idempotency.wait_for(lambda: batches.get(earlier))

        return await self._once("batches", principal, idempotency_key, digest, batch_id, create, existing)

    async def _once(
        self,
        scope: str,
        principal: Principal,
        idempotency_key: str | None,
        digest: str,
        new_id: str,
        create: Callable[[], Awaitable[T]],
        existing: Callable[[str], Awaitable[T]],
    ) -> T:
        """``create()``, at most once per ``Idempotency-Key`` and body: a retry gets ``existing(first id)``."""
        if idempotency_key is None:
            return await create()
        keys = self.store.idempotency
        scope = f"{scope}:{principal.name}"
        earlier = await idempotency.claim(keys, scope, idempotency_key, digest, new_id)
        if earlier is not None:
            return await existing(earlier)
        try:
            created = await create()
        except BaseException:
            await keys.release(scope, idempotency_key)
            raise
        await keys.complete(scope, idempotency_key, self.settings.retention_s)
        return created

    async def _create(
        self, body: GenerationCreate, principal: Principal, generation_id: str, surface: dict[str, Any] | None
    ) -> tuple[str, float]:
        """Write the generation and queue its task.

        Raises:
            ApiError: 503 when the broker cannot take the task (nothing is left behind).
        """
        settings = self.settings
        created_at = time.time()
        await self.store.records.create(
            generation_id, body, created_at, settings.queue_name, principal.name, surface=surface
        )
        try:
            await run_in_threadpool(
                self.celery.send_task,
                GENERATE_TASK,
                args=[generation_id],
                queue=settings.queue_name,
                retry_policy=SEND_RETRY_POLICY,
            )
        except _BROKER_ERRORS as e:
            logger.warning("generation %s: could not queue its task: %s", generation_id, e)
            await self.store.records.delete([generation_id], principal.name)
            raise _broker_unavailable(e) from e
        logger.info("generation %s: queued (model %s, key %s)", generation_id, body.model, principal.name)
        if settings.log_bodies:
            logger.debug("generation %s: request %s", generation_id, body.model_dump_json())
        metrics.GENERATIONS_SUBMITTED.labels("single").inc()
        return generation_id, created_at

    async def _create_batch(
        self,
        batches: Batches,
        batch_id: str,
        items: list[tuple[str, GenerationCreate]],
        principal: Principal,
        options: BatchOptions,
    ) -> None:
        """Write the batch and its generations, then queue every task; on a broker failure remove them all.

        Raises:
            ApiError: 503 when the broker cannot take the tasks (issue 18: the batch and its generations stayed,
                queued, and the recovery sweep later ran them while the client's retry created a second batch).
        """
        settings = self.settings
        with_ids = [(custom_id, new_generation_id(), generation) for custom_id, generation in items]
        generation_ids = [gid for _, gid, _ in with_ids]
        await batches.create(
            batch_id, with_ids, settings.batch_queue_name, settings.retention_s, options, principal.name
        )
        try:
            await dispatch_many(self.celery, generation_ids, settings.batch_queue_name)
        except _BROKER_ERRORS as e:
            logger.warning("batch %s: could not queue its tasks: %s", batch_id, e)
            # Tasks already sent for these ids find no generation and do nothing.
            await batches.delete(batch_id, generation_ids, principal.name)
            raise _broker_unavailable(e) from e


# OperationalError: out of reach; ChannelError: the broker refused (an AMQP queue declared with other arguments
# answered PRECONDITION_FAILED, a 500 before issue 12); RedisError: a Redis broker refused (OOM, READONLY).
_BROKER_ERRORS = (OperationalError, OSError, ChannelError, RedisError)


def _broker_unavailable(cause: BaseException) -> ApiError:
    if isinstance(cause, ChannelError):
        reason = f"the task queue refused the task ({cause.reply_text or type(cause).__name__}); retry shortly"
    elif isinstance(cause, RedisError) and not isinstance(cause, RedisConnectionError):
        reason = f"the task queue refused the task ({type(cause).__name__}); retry shortly"
    else:
        reason = "the task queue is unavailable; retry shortly"
    return ApiError(503, "unavailable", reason, {"Retry-After": "1"})


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
