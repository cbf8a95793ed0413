"""The Celery app of the worker (``celery -A worker.app worker`` or ``reasonq worker``)."""

from __future__ import annotations

from typing import Any

from celery.signals import worker_process_shutdown, worker_shutdown

from shared.queue import create_celery
from shared.settings import get_settings
from worker.runtime import close_runtime

app = create_celery(get_settings(), include=["worker.tasks"])


@worker_shutdown.connect
@worker_process_shutdown.connect
def _close_runtime(**_: Any) -> None:
    close_runtime()
