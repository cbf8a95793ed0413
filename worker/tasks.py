"""Every Celery task of reasonq. Tasks are thin: decode arguments, call a plain function."""

from __future__ import annotations

from reasonq.shared.queue import GENERATE_TASK
from reasonq.worker.app import app, create_runtime
from reasonq.worker.generation import run_delivered
from reasonq.worker.runtime import get_runtime


@app.task(name=GENERATE_TASK, ignore_result=True)
def generate(generation_id: str) -> str:
    """Run one generation on this process's event loop; a redelivered message for it is a no-op."""
    runtime = get_runtime(create_runtime)
    return runtime.run(run_delivered(runtime, generation_id))
