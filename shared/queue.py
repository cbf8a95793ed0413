"""The Celery side both processes share: task names and the app configuration (the API only sends tasks)."""

from __future__ import annotations

from typing import Final

from celery import Celery

from shared.settings import Settings

GENERATE_TASK: Final = "reasonq.generate"


def create_celery(settings: Settings, *, include: list[str] | None = None) -> Celery:
    """A Celery app configured for long, I/O-bound generation tasks.

    ``acks_late`` keeps a task's message until it ends, so a lost worker's message is redelivered; the store's
    claim makes a redelivery of a live or finished generation a no-op. ``prefetch_multiplier=1`` stops a worker
    from hoarding messages it cannot start.
    """
    app = Celery("reasonq", broker=settings.effective_broker_url, include=include or [])
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_default_queue=settings.queue_name,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        broker_pool_limit=16,
        task_routes={GENERATE_TASK: {"queue": settings.queue_name}},
    )
    return app
