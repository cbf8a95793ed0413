"""The Celery side both processes share: task names and the app configuration (the API only sends tasks)."""

from __future__ import annotations

from typing import Final

from celery import Celery

from reasonq.shared.redis_urls import kombu_broker
from reasonq.shared.settings import Settings

GENERATE_TASK: Final = "reasonq.generate"
# Publishing gives up fast: the caller answers 503 (API) or leaves it to the next sweep (worker).
SEND_RETRY_POLICY: Final = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}


def create_celery(settings: Settings, *, include: list[str] | None = None) -> Celery:
    """A Celery app configured for long, I/O-bound generation tasks.

    Messages are acknowledged when a worker takes them, not when the generation ends: a generation's
    durability lives in Redis (its record, its lease, the recovery sweep), not in the broker message. A worker
    lost mid-generation is recovered within seconds by the lease sweep, where a late ack would wait for the
    broker's visibility timeout (1 h on Redis); a worker lost between taking a message and claiming the
    generation leaves it queued, and the sweep dispatches it again. Late acks also have a cost here: with
    kombu's Redis transport, a broker restart while late-acked tasks run makes the worker try to restore them
    over the dead connection and exit with "Unrecoverable error" (reproduced by ``bench/recovery.py``; compare
    celery/celery#7705). A duplicate message is harmless: the claim makes it a no-op.
    ``prefetch_multiplier=1`` stops a worker from hoarding messages it cannot start.
    """
    broker, transport_options = kombu_broker(settings.effective_broker_url)
    app = Celery("reasonq", broker=broker, include=include or [])
    if transport_options:  # a Sentinel-watched Redis broker: kombu follows the primary by its master name
        app.conf.broker_transport_options = transport_options
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_acks_late=False,
        task_default_queue=settings.queue_name,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        broker_pool_limit=16,
        # A Redis broker answers a full memory (OOM), a demoted primary (READONLY) and a loading server with error
        # replies, which kombu files as channel errors, and Celery's consumer treats those as fatal unless told to
        # retry: the worker logged "Unrecoverable error: OutOfMemoryError" and stopped consuming (issue 12). Each is
        # an outage to ride out. Not for AMQP, where a channel error is a real misconfiguration (an inequivalent
        # queue) that retrying would hide behind a live process consuming nothing.
        broker_channel_error_retry=settings.broker_is_redis,
    )
    if not settings.broker_is_redis:
        # Quorum queues (replicated, RabbitMQ 3.8+) for every queue reasonq declares, the API's publishes included;
        # Celery then drops the global QoS that quorum queues refuse (worker_detect_quorum_queues, on by default).
        app.conf.update(
            task_default_queue_type=settings.broker_queue_type,
            task_create_missing_queue_type=settings.broker_queue_type,
            worker_detect_quorum_queues=True,
        )
    return app
