"""The Celery app of the worker (``celery -A worker.app worker`` or ``reasonq worker``), and its process hooks."""

from __future__ import annotations

from functools import partial
from typing import Any

from amqp.exceptions import ChannelError
from celery.signals import worker_ready, worker_shutdown, worker_shutting_down
from kombu.exceptions import OperationalError

from reasonq.shared.errors import ConfigurationError
from reasonq.shared.queue import GENERATE_TASK, SEND_RETRY_POLICY, create_celery
from reasonq.shared.settings import get_settings
from reasonq.shared.tuning import tune_gc
from reasonq.worker.generation import run_generation
from reasonq.worker.health import serve_health_forever
from reasonq.worker.pickup import Pickup
from reasonq.worker.recovery import listen_for_cancels_forever, renew_leases_forever, sweep_forever
from reasonq.worker.runtime import WorkerRuntime, close_runtime, current_runtime, get_runtime
from reasonq.worker.webhooks import deliver_webhooks_forever

settings = get_settings()
app = create_celery(settings, include=["reasonq.worker.tasks"])


def _dispatch(generation_id: str, queue: str) -> None:
    app.send_task(GENERATE_TASK, args=[generation_id], queue=queue, retry_policy=SEND_RETRY_POLICY)


def _queue_depth(queue: str) -> int | None:
    with app.connection_for_read() as conn:
        try:
            # kombu's channel types do not declare queue_declare (every transport has it)
            declared = conn.default_channel.queue_declare(queue=queue, passive=True)  # type: ignore[attr-defined]
        except ChannelError as e:
            if getattr(e, "code", None) == 404 or "NOT_FOUND" in str(e):
                return 0  # no such queue (kombu's Redis transport drops an empty one): nothing is waiting
            raise
        return int(declared.message_count)


def check_queues(queues: list[str]) -> None:
    """Declare ``queues`` as this worker will, before it starts, so that an AMQP broker that holds one with other
    arguments (an existing quorum queue, say) is refused in one line that says what to do; Celery itself logged
    "Unrecoverable error" with a traceback and exited (issue 12). A broker out of reach now is not checked
    (the worker retries it), nor a Redis broker (its queues are plain lists).

    Raises:
        ConfigurationError: a queue exists with arguments this worker would not declare.
    """
    if settings.broker_is_redis:
        return
    try:
        with app.connection_for_write() as conn:
            channel = conn.default_channel
            for name in queues:
                try:
                    app.amqp.queues[name](channel).declare()
                except ChannelError as e:
                    raise ConfigurationError(
                        f"the broker already has the queue {name!r}, declared with other arguments than this worker "
                        f"uses ({getattr(e, 'reply_text', e)}): delete that queue, or point REASONQ_QUEUE_NAME / "
                        "REASONQ_BATCH_QUEUE_NAME at another"
                    ) from e
    except (OperationalError, OSError):
        return


def create_runtime() -> WorkerRuntime:
    """This process's runtime with its background loops (heartbeat, recovery sweep, cancel listener)."""
    runtime = WorkerRuntime(settings, _dispatch, _queue_depth)
    if settings.worker_pickup:
        runtime.pickup = Pickup(runtime, partial(run_generation, runtime))
    runtime.start_background(renew_leases_forever(runtime), sweep_forever(runtime), listen_for_cancels_forever(runtime))
    if settings.webhook_endpoints:
        runtime.start_background(deliver_webhooks_forever(runtime))
    if settings.worker_health_port:
        runtime.start_background(
            serve_health_forever(runtime, settings.worker_health_host, settings.worker_health_port)
        )
    return runtime


@worker_ready.connect
def _start_runtime(sender: Any = None, **_: Any) -> None:
    runtime = get_runtime(create_runtime)  # sweeps run from the start, not from the first task
    # Beats name the queues this process consumes: readiness asks for a worker per queue (issue 12).
    task_consumer = getattr(sender, "task_consumer", None)
    runtime.queues = tuple(q.name for q in getattr(task_consumer, "queues", None) or ())
    # The pool's real size (``--concurrency``): the sender is the consumer; its controller is the WorkController.
    controller = getattr(sender, "controller", None)
    runtime.concurrency = int(getattr(controller, "concurrency", None) or settings.worker_concurrency)
    tune_gc()  # everything is imported and built by now: out of the collector's sight (shared/tuning.py)
    if runtime.pickup is not None:  # a worker that starts into a backlog (after an outage, say) takes it at once
        runtime.call_soon(runtime.pickup.kick)


@worker_shutting_down.connect
def _drain(**_: Any) -> None:
    runtime = current_runtime()
    if runtime is not None:
        runtime.begin_shutdown(settings.shutdown_grace_s)


@worker_shutdown.connect
def _close_runtime(**_: Any) -> None:
    close_runtime()
