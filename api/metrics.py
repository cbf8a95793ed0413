"""Prometheus metrics of one API process (``GET /metrics``): counters kept as things happen, and gauges of the
deployment (running and queued generations, queue depths, live workers) read from Redis at scrape time."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

REGISTRY = CollectorRegistry(auto_describe=True)

GENERATIONS_SUBMITTED = Counter(
    "reasonq_generations_submitted", "Generations submitted through this API process", ["route"], registry=REGISTRY
)
VIEWERS = Gauge("reasonq_viewers", "Event-stream viewers connected to this API process", registry=REGISTRY)
EVENTS_FANNED_OUT = Counter(
    "reasonq_events_fanned_out", "Event frames sent to viewers by this API process", registry=REGISTRY
)
CATCHUPS = Counter(
    "reasonq_slow_viewer_catchups", "Times a viewer fell behind the ring and re-read from Redis", registry=REGISTRY
)
REDIS_ERRORS = Counter("reasonq_redis_errors", "Redis errors seen by this API process", ["where"], registry=REGISTRY)
GENERATIONS = Gauge("reasonq_generations", "Generations in the deployment by state", ["state"], registry=REGISTRY)
QUEUE_DEPTH = Gauge("reasonq_queue_depth", "Task messages waiting per Celery queue", ["queue"], registry=REGISTRY)
WORKERS = Gauge("reasonq_live_workers", "Worker processes with a heartbeat in the last 30 s", registry=REGISTRY)
