"""Liveness, readiness and metrics."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.exceptions import RedisError
from starlette.concurrency import run_in_threadpool

from reasonq.api import metrics
from reasonq.api.auth import authenticate, get_keyring, unauthorized
from reasonq.api.deps import CeleryDep, HubDep, SettingsDep, StoreDep
from reasonq.api.errors import error_responses
from reasonq.api.schemas import Liveness, Readiness

logger = logging.getLogger(__name__)
router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Liveness)
async def healthz() -> Liveness:
    """The process is up."""
    return Liveness(status="ok")


def _broker_ok(celery: Any) -> bool:
    try:
        with celery.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        return True
    except Exception as e:  # any failure to reach the broker means "not ready"; say which (issue 18)
        logger.warning("readiness: the broker is unreachable: %s", e)
        return False


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "Not ready: the checks say which part is missing"}},
)
async def readyz(store: StoreDep, celery: CeleryDep, settings: SettingsDep) -> JSONResponse:
    """Ready to take work: Redis and the broker answer, and a worker that consumes the interactive queue beat in
    the last 30 s. ``checks.queues`` counts the live workers of each queue (the batch queue's count is reported,
    not required); ``problems`` says in words what is missing."""
    checks: dict[str, Any] = {}
    queues = [settings.queue_name, settings.batch_queue_name]
    try:
        checks["redis"] = await asyncio.wait_for(store.presence.ping(), 2)
        checks["workers"] = await store.presence.live_workers()
        checks["queues"] = await store.presence.live_workers_by_queue(queues)
    except (RedisError, OSError, TimeoutError):
        checks["redis"], checks["workers"], checks["queues"] = False, 0, dict.fromkeys(queues, 0)
    checks["broker"] = await run_in_threadpool(_broker_ok, celery)
    problems = []
    if not checks["redis"]:
        problems.append("Redis does not answer")
    if not checks["broker"]:
        problems.append("the broker does not answer")
    for queue in queues:
        if checks["redis"] and not checks["queues"][queue]:
            problems.append(f"no live worker consumes the queue {queue!r}")
    ready = bool(checks["redis"] and checks["broker"] and checks["queues"][settings.queue_name] > 0)
    body = Readiness(status="ready" if ready else "not_ready", checks=checks, problems=problems)
    return JSONResponse(body.model_dump(), 200 if ready else 503)


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {}}, "description": "Prometheus text format"},
        **error_responses(401),
        503: {"description": "Redis is unavailable"},
    },
)
async def prometheus_metrics(request: Request, store: StoreDep, hub: HubDep, settings: SettingsDep) -> Response:
    """Prometheus text format. No ids, prompts or key names appear in it; with ``REASONQ_METRICS_REQUIRE_KEY``
    (and keys configured) it asks for a key like the API does."""
    if settings.metrics_require_key and not get_keyring(request).open and authenticate(request) is None:
        raise unauthorized()
    metrics.VIEWERS.set(hub.total_watching)
    try:
        counts = await store.leases.counts()
        for state, n in counts.items():
            metrics.GENERATIONS.labels(state).set(n)
        metrics.WORKERS.set(await store.presence.live_workers())
        metrics.DEPLOYMENT.snapshot = await store.presence.deployment_stats()
        if settings.broker_is_store:
            for queue in (settings.queue_name, settings.batch_queue_name):
                metrics.QUEUE_DEPTH.labels(queue).set(await store.presence.queue_depth(queue))
    except (RedisError, OSError) as e:
        metrics.REDIS_ERRORS.labels("metrics").inc()
        return Response(f"# Redis unavailable: {type(e).__name__}\n", 503, media_type=CONTENT_TYPE_LATEST)
    return Response(generate_latest(metrics.REGISTRY), media_type=CONTENT_TYPE_LATEST)
