"""A worker process's own health endpoint (``REASONQ_WORKER_HEALTH_PORT``): ``GET /healthz`` answers 200 while
the process's event loop runs and its heartbeat reaches Redis, 503 otherwise; ``GET /metrics`` gives the
process's own gauges (generations running, heartbeat age, process CPU and memory) in Prometheus format.

It is served from the runtime's own event loop, so a wedged loop shows up as a health check that times out.
Deployment-wide figures (tokens, time to first token, pickup) are in the API's ``GET /metrics``.
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, ProcessCollector, generate_latest

from reasonq.worker.runtime import WorkerRuntime

logger = logging.getLogger(__name__)


def _beat_age_s(runtime: WorkerRuntime, started_at: float) -> float:
    return time.monotonic() - (runtime.last_beat_at or started_at)


def create_health_app(runtime: WorkerRuntime) -> web.Application:
    """The health app of one worker process."""
    started_at = time.monotonic()
    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)
    Gauge("reasonq_worker_running", "Generations this worker process runs", registry=registry).set_function(
        lambda: len(runtime.running)
    )
    Gauge(
        "reasonq_worker_heartbeat_age_seconds",
        "Seconds since Redis last took this process's heartbeat",
        registry=registry,
    ).set_function(lambda: _beat_age_s(runtime, started_at))

    async def healthz(_: web.Request) -> web.Response:
        age_s = _beat_age_s(runtime, started_at)
        healthy = age_s < runtime.settings.lease_ttl_s
        body = {
            "status": ("draining" if runtime.shutting_down else "ok") if healthy else "unhealthy",
            "worker_id": runtime.worker_id,
            "running": len(runtime.running),
            "heartbeat_age_s": round(age_s, 3),
        }
        return web.json_response(body, status=200 if healthy else 503)

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    return app


async def serve_health_forever(runtime: WorkerRuntime, host: str, port: int) -> None:
    """Serve the health app until the runtime closes."""
    runner = web.AppRunner(create_health_app(runtime), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        logger.info("worker health on http://%s:%d/healthz", host, port)
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
