"""Prometheus metrics (``GET /metrics``): this API process's counters, kept as things happen, and the
deployment's gauges, counters and histograms (running and queued generations, queue depths, live workers,
tokens, ends by status, time to first token, queue pickup) read from Redis at scrape time."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, ProcessCollector
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from reasonq.shared.stats import histogram

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)  # the API process's CPU, memory and open file descriptors

GENERATIONS_SUBMITTED = Counter(
    "reasonq_generations_submitted", "Generations submitted through this API process", ["route"], registry=REGISTRY
)
VIEWERS = Gauge("reasonq_viewers", "Event-stream viewers connected to this API process", registry=REGISTRY)
EVENTS_FANNED_OUT = Counter(
    "reasonq_events_fanned_out", "Event frames sent to viewers by this API process", registry=REGISTRY
)
DIRECT_WRITES = Counter(
    "reasonq_direct_writes",
    "Event chunks the hub wrote straight to a sleeping viewer's connection (the rest went through the viewer's task)",
    registry=REGISTRY,
)
CATCHUPS = Counter(
    "reasonq_slow_viewer_catchups", "Times a viewer fell behind the ring and re-read from Redis", registry=REGISTRY
)
REDIS_ERRORS = Counter("reasonq_redis_errors", "Redis errors seen by this API process", ["where"], registry=REGISTRY)
GENERATIONS = Gauge("reasonq_generations", "Generations in the deployment by state", ["state"], registry=REGISTRY)
QUEUE_DEPTH = Gauge("reasonq_queue_depth", "Task messages waiting per Celery queue", ["queue"], registry=REGISTRY)
WORKERS = Gauge("reasonq_live_workers", "Worker processes with a heartbeat in the last 30 s", registry=REGISTRY)


class DeploymentCollector(Collector):
    """The deployment-wide counters and histograms workers keep in Redis (``shared/stats.py``), as read at the
    last scrape."""

    def __init__(self) -> None:
        self.snapshot: dict[str, float] = {}

    def collect(self) -> Iterator[Metric]:
        stats = self.snapshot
        tokens = CounterMetricFamily("reasonq_tokens", "Tokens streamed by all workers (rate() gives tokens/s)")
        tokens.add_metric([], stats.get("tokens", 0.0))
        yield tokens
        ended = CounterMetricFamily("reasonq_generations_ended", "Generations ended, by status", labels=["status"])
        for status in ("completed", "failed", "cancelled"):
            ended.add_metric([status], stats.get(f"ended:{status}", 0.0))
        yield ended
        for name, metric, help_text in (
            ("ttft", "reasonq_time_to_first_token_seconds", "From submission to the first reasoning or answer token"),
            ("pickup", "reasonq_queue_pickup_seconds", "From submission to a worker starting the generation"),
        ):
            buckets, total = histogram(stats, name)
            family = HistogramMetricFamily(metric, help_text)
            family.add_metric([], buckets, total)
            yield family


DEPLOYMENT = DeploymentCollector()
REGISTRY.register(DEPLOYMENT)
