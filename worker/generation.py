"""One generation, start to end: claim it, stream the model into the event stream, record the outcome.

Provider trouble before the first token is retried with backoff (each retry visible as a ``status`` event);
a stream that breaks after tokens flowed starts a new attempt (``restart``, or ``continue`` the answer where the
provider supports it). Cancel, a lost lease and worker shutdown stop the upstream stream at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, cast

from reasonq.shared.errors import FencedError, ModelError
from reasonq.shared.events import TERMINAL_STATUSES, AnyEvent, RestartEvent, StatusEvent, encode_event
from reasonq.shared.providers import ProviderConfig
from reasonq.shared.store import ClaimTarget, Fence
from reasonq.worker.answer import Answer
from reasonq.worker.capacity import Slot
from reasonq.worker.model import StreamLimits, falls_back, retry_delay_s, stream_completion
from reasonq.worker.request import build_params
from reasonq.worker.runtime import RunningGeneration, WorkerRuntime
from reasonq.worker.writer import CancelRequested, EventWriter

logger = logging.getLogger(__name__)
DECLINE_DELAY_S = 0.5

# How one run of a generation's task ended (for logs, the task's result and tests). The first three are the
# generation's own end; the others say why this run stopped or never started.
Outcome = Literal[
    "completed",
    "failed",
    "cancelled",
    "handed_back",  # this worker is shutting down: another attempt follows
    "fenced",  # another attempt owns the generation now
    "lost",  # this worker's lease was lost; the sweep hands it on
    "declined",  # this worker is shutting down and sent the task back to its queue
    "missing",  # unknown or expired
    "finished",  # it had ended already (a redelivered task)
    "busy",  # another worker holds a live lease
    "conflict",  # the attempt moved on between reading and claiming
]


@dataclass(frozen=True)
class _Refused:
    """Why a claim was not made: the store's answer (busy, conflict, finished, missing) and its detail."""

    outcome: Literal["missing", "finished", "busy", "conflict"]
    detail: str = ""


@dataclass
class _Attempt:
    """The attempt being run and what it continues from."""

    number: int
    seq: int
    token: str
    continue_content: str | None = None
    kept_reasoning: str = ""  # with continue_content: the reasoning the attempt keeps


def _new_writer(runtime: WorkerRuntime, generation_id: str, attempt: _Attempt) -> EventWriter:
    settings = runtime.settings
    kept = (attempt.kept_reasoning, attempt.continue_content) if attempt.continue_content is not None else ("", "")
    return EventWriter(
        runtime.store,
        generation_id,
        Fence(attempt.number, attempt.token),
        attempt.seq,
        settings.flush_interval_ms / 1000,
        settings.redis_outage_s,
        settings.flush_max_interval_ms / 1000,
        lease_ttl_ms=runtime.lease_ttl_ms,
        text=kept,
    )


async def _claim(
    runtime: WorkerRuntime, generation_id: str, target: ClaimTarget, *, handover: bool = False, reason: str = ""
) -> _Attempt | _Refused:
    """Claim the next attempt; returns it, or why not."""
    store = runtime.store
    number = target.attempt + 1
    events: list[AnyEvent] = [StatusEvent(status="running", attempt=number)]
    continue_content: str | None = None
    kept_reasoning = ""
    if number > 1:
        reason = reason or target.restart_reason or "worker_lost"
        if runtime.settings.resume_strategy == "continue":
            kept_reasoning, content, began_tool_call = await store.records.get_text(generation_id)
            # A half-written argument list cannot be continued: an attempt lost in a tool call restarts.
            continue_content = content or None if not began_tool_call else None
        if continue_content is None:
            events.append(RestartEvent(attempt=number, reason=reason))
    claim = await store.leases.claim(
        generation_id,
        target.attempt,
        runtime.lease_ttl_ms,
        [encode_event(e) for e in events],
        handover=handover,
        keep_text=continue_content is not None,
    )
    if claim.outcome != "claimed":
        return _Refused(claim.outcome, claim.detail)
    logger.info("generation %s: attempt %d started%s", generation_id, number, f" ({reason})" if reason else "")
    return _Attempt(number, claim.seq, claim.token, continue_content, kept_reasoning)


async def run_delivered(runtime: WorkerRuntime, generation_id: str) -> Outcome:
    """A generation the broker delivered: look for more queued ones to take at once (``worker/pickup.py``), and run
    this one unless this process runs it already (taken from the queued index: its message is then a no-op)."""
    if runtime.pickup is None:
        return await run_generation(runtime, generation_id)
    runtime.pickup.kick()
    return cast(Outcome, await runtime.pickup.run_delivered(generation_id))


async def run_generation(
    runtime: WorkerRuntime,
    generation_id: str,
    target: ClaimTarget | None = None,
    claimed: Callable[[], Awaitable[None]] | None = None,
) -> Outcome:
    """Run ``generation_id`` if it still needs running; returns what happened (for logs and tests).

    A redelivered or duplicate task is a no-op: the claim is a compare-and-set on the attempt number and is
    refused while another worker holds a live lease or once the generation has ended. ``target`` is its record when
    the caller read it already; ``claimed`` is awaited once the attempt is claimed, before the model is asked (a
    pickup round claims all it took first).
    """
    outcome = await _run_generation(runtime, generation_id, target, claimed)
    if outcome in TERMINAL_STATUSES:
        runtime.stats.ended(outcome)
    return outcome


async def _run_generation(
    runtime: WorkerRuntime,
    generation_id: str,
    target: ClaimTarget | None,
    claimed: Callable[[], Awaitable[None]] | None,
) -> Outcome:
    store = runtime.store
    settings = runtime.settings
    if target is None:
        target = await store.leases.load_target(generation_id)
    if target is None:
        logger.warning("generation %s: unknown or expired, nothing to run", generation_id)
        return "missing"
    if target.status in TERMINAL_STATUSES:
        logger.info("generation %s: already %s, nothing to run", generation_id, target.status)
        return "finished"
    if runtime.shutting_down:
        # A draining worker starts nothing: a message it still receives (its own hand-back among them, found
        # by `reasonq up`'s tests) goes back to the queue for another worker, or for this one's next start.
        return await _decline(runtime, generation_id)
    if target.losses >= settings.max_worker_losses:
        return await _give_up(runtime, generation_id, target)
    model = target.request.model or settings.default_model
    provider = runtime.providers.route(model)
    if provider is None:
        return await _give_up(runtime, generation_id, target, f"no provider serves the model {model!r}")

    async def note_waiting(reason: str, first: bool) -> bool:
        return await store.capacity.note_waiting(generation_id, reason, first)

    slot = await runtime.gate.acquire(
        provider,
        generation_id,
        batch=target.queue == settings.batch_queue_name,
        order_ms=int(target.created_at * 1000),
        on_wait=note_waiting,
    )
    if slot == "gone":
        logger.info("generation %s: stopped waiting for %s (ended or taken)", generation_id, provider.name)
        return "finished"
    if slot == "shutdown":
        return await _decline(runtime, generation_id)
    try:
        return await _run_claimed(runtime, generation_id, target, provider, slot, claimed)
    finally:
        await runtime.gate.release(slot)


async def _decline(runtime: WorkerRuntime, generation_id: str) -> Outcome:
    """Send the generation's task back to its queue (this worker is draining)."""
    await asyncio.sleep(DECLINE_DELAY_S)  # no tight loop if it receives the message again
    queues = await runtime.store.leases.queues_of([generation_id])
    await runtime.dispatch(generation_id, queues.get(generation_id, ""))
    logger.info("generation %s: not started (worker shutting down); sent back to its queue", generation_id)
    return "declined"


async def _run_claimed(
    runtime: WorkerRuntime,
    generation_id: str,
    target: ClaimTarget,
    provider: ProviderConfig,
    slot: Slot,
    claimed: Callable[[], Awaitable[None]] | None,
) -> Outcome:
    settings = runtime.settings
    attempt = await _claim(runtime, generation_id, target)
    if isinstance(attempt, _Refused):
        logger.info("generation %s: not claimed (%s %s)", generation_id, attempt.outcome, attempt.detail)
        if attempt.outcome == "busy":
            # Another run of it (another process's: the broker's message beside a pickup from the index) claimed it
            # and adopted this provider slot, which it now renews and gives back: giving it back here too would
            # free it under a running stream (a limit of 2 let 3 run).
            slot.fresh = False
        return attempt.outcome
    slot.owned = True
    if attempt.number == 1:
        runtime.stats.observe("pickup", time.time() - target.created_at)
    if claimed is not None:
        await claimed()
    writer = _new_writer(runtime, generation_id, attempt)
    if target.cancel_requested:
        await writer.finish("cancelled", finish_reason="cancelled", retention_s=settings.retention_s)
        return "cancelled"
    started_at = target.started_at or time.time()
    loop = asyncio.get_running_loop()
    limits = StreamLimits(
        stall_timeout_s=settings.stall_timeout_s,
        deadline=loop.time() + max(0.0, started_at + settings.generation_timeout_s - time.time()),
    )
    running = RunningGeneration(generation_id, attempt.number)
    previous = runtime.running.get(generation_id)
    if previous is not None:  # an older attempt of it in this process: this claim fenced it off
        previous.stop("lost")
    runtime.running[generation_id] = running
    try:
        return await _stream_attempts(runtime, running, target, attempt, writer, limits, provider, slot)
    finally:
        if running.fallback_slot is not None:
            await runtime.gate.release(running.fallback_slot)
        # Only our own entry: an older attempt ending here must not drop a newer one's, whose lease would then go
        # unrenewed and expire under a live worker (issue 12: attempts 2 and 3 were lost that way after an OOM).
        if runtime.running.get(generation_id) is running:
            del runtime.running[generation_id]


async def _give_up(runtime: WorkerRuntime, generation_id: str, target: ClaimTarget, why: str = "") -> Outcome:
    """End a generation failed without running it: a poison generation (it lost ``max_worker_losses`` workers,
    so it ends instead of looping), or one that no provider serves (``why``)."""
    attempt = await _claim(runtime, generation_id, target)
    if isinstance(attempt, _Refused):
        return attempt.outcome
    writer = _new_writer(runtime, generation_id, attempt)  # the settings' outage, not a default (issue 18)
    error = {
        "type": "no_provider" if why else "too_many_attempts",
        "message": why or f"gave up after losing {target.losses} workers while running this generation",
    }
    logger.error("generation %s: %s", generation_id, error["message"])
    await writer.finish("failed", error=error, retention_s=runtime.settings.retention_s)
    return "failed"


async def _stream_attempts(
    runtime: WorkerRuntime,
    running: RunningGeneration,
    target: ClaimTarget,
    attempt: _Attempt,
    writer: EventWriter,
    limits: StreamLimits,
    provider: ProviderConfig,
    slot: Slot,
) -> Outcome:
    settings = runtime.settings
    generation_id = running.generation_id
    model = target.request.model or settings.default_model
    retries = 0
    fell_back = False
    while True:
        counter = Answer(
            writer,
            drop_reasoning=attempt.continue_content is not None,
            stats=runtime.stats,
            # Time to first token is the generation's: only attempt 1 (retries before any token included).
            created_at=target.created_at if attempt.number == 1 else None,
        )
        if running.stop_reason is not None:  # asked to stop between two upstream requests
            return await _stopped(runtime, running, writer, counter, running.stop_reason)
        params = build_params(
            target.request, provider.upstream_model(model), attempt.continue_content, provider.profile
        )
        client = runtime.model_client(provider)
        running.stream_task = asyncio.create_task(
            stream_completion(client, params, counter, runtime.secrets, limits, counter.tool_call)
        )
        try:
            outcome = await running.stream_task
            await writer.finish(
                "completed",
                finish_reason=outcome.finish_reason,
                usage=outcome.usage,
                retention_s=settings.retention_s,
                tool_calls=counter.tool_calls,
                system_fingerprint=outcome.system_fingerprint,
            )
            logger.info(
                "generation %s: completed (%s, %d events in %d writes)",
                generation_id,
                outcome.finish_reason,
                writer.seq,
                writer.writes,
            )
            return "completed"
        except asyncio.CancelledError:
            reason = running.stop_reason
            if reason is None:
                raise  # the runtime itself is closing
            return await _stopped(runtime, running, writer, counter, reason)
        except CancelRequested:
            return await _stopped(runtime, running, writer, counter, "cancel")
        except FencedError:
            logger.warning("generation %s: attempt %d was fenced off; stopping", generation_id, writer.attempt)
            await writer.abandon()
            return "fenced"
        except ModelError as e:
            # Ending or handing over the attempt writes to Redis: a fence found there is a fence (issue 18:
            # it escaped this arm to the Celery task).
            try:
                if not e.retryable or retries >= settings.provider_max_retries:
                    logger.warning("generation %s: model failed: %s", generation_id, e.message)
                    await writer.finish(
                        "failed",
                        usage=counter.usage() if counter.tokens else None,
                        error=e.to_dict(),
                        retention_s=settings.retention_s,
                    )
                    return "failed"
                fallback = runtime.providers.fallback_of(provider)
                if counter.tokens == 0 and fallback is not None and not fell_back and falls_back(e):
                    # Before the first token only: once tokens flowed, the text is this provider's (issue 16).
                    reason = (
                        f"provider {provider.name} failed before the first token ({e.message}); using {fallback.name}"
                    )
                    logger.warning("generation %s: %s", generation_id, reason)
                    writer.add_event(StatusEvent(status="running", attempt=writer.attempt, reason=reason))
                    await runtime.gate.release(slot)
                    slot.fresh = slot.owned = False  # given back: the run's own release is a no-op now
                    taken = await _fallback_slot(runtime, running, writer, fallback, target)
                    if taken is None:
                        return await _stopped(runtime, running, writer, counter, running.stop_reason or "shutdown")
                    running.fallback_slot = slot = taken
                    provider, fell_back = fallback, True
                    continue
                retries += 1
                if counter.tokens == 0:
                    delay_s = retry_delay_s(runtime.settings, retries - 1, e)
                    logger.warning("generation %s: %s; retry %d in %.1f s", generation_id, e.message, retries, delay_s)
                    writer.add_event(
                        StatusEvent(status="running", attempt=writer.attempt, retry_in_s=delay_s, reason=e.message)
                    )
                    # The sleep is the running task, so a cancel or a shutdown stops it at once (issue 18:
                    # stop() cancelled only the finished stream, and the backoff, up to 30 s, ran out first).
                    running.stream_task = asyncio.create_task(asyncio.sleep(delay_s))
                    try:
                        await running.stream_task
                    except asyncio.CancelledError:
                        if running.stop_reason is None:
                            raise  # the runtime itself is closing
                        return await _stopped(runtime, running, writer, counter, running.stop_reason)
                    continue
                # The stream broke after tokens flowed: a new attempt, by this same worker.
                logger.warning(
                    "generation %s: stream broke after %d tokens (%s); new attempt",
                    generation_id,
                    counter.tokens,
                    e.message,
                )
                await writer.close()
                fresh = await runtime.store.leases.load_target(generation_id)
                if fresh is None or fresh.status != "running" or fresh.attempt != writer.attempt:
                    return "fenced"
                next_attempt = await _claim(runtime, generation_id, fresh, handover=True, reason="provider_error")
                if isinstance(next_attempt, _Refused):
                    return next_attempt.outcome
                attempt = next_attempt
                running.attempt = attempt.number
                writer = _new_writer(runtime, generation_id, attempt)

            except FencedError:
                logger.warning("generation %s: attempt %d was fenced off; stopping", generation_id, writer.attempt)
                await writer.abandon()
                return "fenced"


async def _fallback_slot(
    runtime: WorkerRuntime,
    running: RunningGeneration,
    writer: EventWriter,
    fallback: ProviderConfig,
    target: ClaimTarget,
) -> Slot | None:
    """A slot of the fallback provider for a claimed generation (it waits like any other: its viewers are told);
    ``None`` if it was asked to stop meanwhile."""

    async def note(reason: str, first: bool) -> bool:
        if first:
            writer.add_event(StatusEvent(status="running", attempt=writer.attempt, reason=reason))
        return running.stop_reason is None

    taken = await runtime.gate.acquire(
        fallback,
        running.generation_id,
        batch=target.queue == runtime.settings.batch_queue_name,
        order_ms=int(target.created_at * 1000),
        on_wait=note,
    )
    if isinstance(taken, str):
        return None
    taken.owned = True
    return taken


async def _stopped(
    runtime: WorkerRuntime, running: RunningGeneration, writer: EventWriter, counter: Answer, reason: str
) -> Outcome:
    """The stream was stopped on purpose: end cancelled, hand back on shutdown, or let go when lost."""
    settings = runtime.settings
    generation_id = running.generation_id
    if reason == "cancel":
        try:
            await writer.finish(
                "cancelled", finish_reason="cancelled", usage=counter.usage(), retention_s=settings.retention_s
            )
        except FencedError:
            return "fenced"
        logger.info("generation %s: cancelled after %d tokens", generation_id, counter.tokens)
        return "cancelled"
    if reason == "shutdown":
        try:
            await writer.close()
        except FencedError:
            return "fenced"
        handed = await runtime.store.leases.hand_back([(generation_id, writer.attempt)], "worker_shutdown")
        if handed:
            queues = await runtime.store.leases.queues_of(handed)
            await runtime.dispatch(generation_id, queues[generation_id])
        return "handed_back"
    await writer.abandon()
    return "lost"
