"""One generation, start to end: claim it, stream the model into the event stream, record the outcome."""

from __future__ import annotations

import logging

from shared.errors import FencedError, ModelError
from shared.events import TERMINAL_STATUSES, StatusEvent, encode_event
from worker.model import stream_completion
from worker.runtime import WorkerRuntime
from worker.writer import CancelRequested, EventWriter

logger = logging.getLogger(__name__)


async def run_generation(runtime: WorkerRuntime, generation_id: str) -> str:
    """Run ``generation_id`` if it still needs running; returns what happened (for logs and tests).

    A redelivered or duplicate task is a no-op: the claim is a compare-and-set on the attempt number and is
    refused while another worker holds a live lease or once the generation has ended.
    """
    store = runtime.store
    settings = runtime.settings
    target = await store.load_claim_target(generation_id)
    if target is None:
        logger.warning("generation %s: unknown or expired, nothing to run", generation_id)
        return "missing"
    if target.status in TERMINAL_STATUSES:
        logger.info("generation %s: already %s, nothing to run", generation_id, target.status)
        return "finished"
    attempt = target.attempt + 1
    claim = await store.claim(
        generation_id,
        target.attempt,
        runtime.lease_ttl_ms,
        [encode_event(StatusEvent(status="running", attempt=attempt))],
    )
    if claim.outcome != "claimed":
        logger.info("generation %s: not claimed (%s %s)", generation_id, claim.outcome, claim.detail)
        return claim.outcome
    logger.info("generation %s: attempt %d started", generation_id, attempt)
    model = target.request.model or settings.default_model
    writer = EventWriter(store, generation_id, attempt, claim.seq, settings.flush_interval_ms / 1000)
    runtime.leases[generation_id] = attempt
    try:
        try:
            outcome = await stream_completion(runtime.model_client, target.request, model, writer.add, runtime.secrets)
        except ModelError as e:
            logger.warning("generation %s: model failed: %s", generation_id, e.message)
            await writer.finish("failed", error=e.to_dict(), retention_s=settings.retention_s)
            return "failed"
        except CancelRequested:
            await writer.finish("cancelled", finish_reason="cancelled", retention_s=settings.retention_s)
            return "cancelled"
        await writer.finish(
            "completed", finish_reason=outcome.finish_reason, usage=outcome.usage, retention_s=settings.retention_s
        )
        logger.info(
            "generation %s: completed (%s, %d events in %d writes)",
            generation_id,
            outcome.finish_reason,
            writer.seq,
            writer.writes,
        )
        return "completed"
    except FencedError:
        logger.warning("generation %s: attempt %d was fenced off; stopping", generation_id, attempt)
        await writer.abandon()
        return "fenced"
    finally:
        runtime.leases.pop(generation_id, None)
