"""Coalescing writer: turns a stream of model deltas into few, fenced stream writes (group commit).

The first delta after a quiet period is written at once, so a slow model shows every token immediately;
deltas that arrive while a write is in flight, or within the interval of the previous write, are merged into
one event per kind. The interval adapts: it starts at ``interval_s`` and doubles (up to ``max_interval_s``)
while writes keep carrying several deltas, and falls back as soon as one carries a single delta. A slow model
is written token by token; a fast one settles at one write per ``max_interval_s``. Measured on one generation
at 1,000 tokens/s: 10 ms fixed gave 0.21 Redis round trips per token; adaptive up to 50 ms, see the README.

While Redis is unreachable the writer keeps buffering and retries the same write (the store's scripts make a
retried write idempotent) for up to ``outage_s``; then the generation is given up to the recovery sweep.

After a failover to a replica that had not received its last writes (issue 13), a write finds the stream behind
what the attempt wrote: the writer writes the attempt's history again (``EventLog.restore``: a ``restart`` after
the highest id it wrote, then the whole text so far, which it keeps for this) and carries on. No viewer, whatever
ids it holds, ends with text from the lost history mixed in.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import RedisError

from reasonq.shared.backoff import Backoff
from reasonq.shared.errors import FencedError, ReasonqError
from reasonq.shared.events import (
    CONTENT,
    REASONING,
    TOOL_SLOT,
    AnyEvent,
    DeltaKind,
    DoneEvent,
    EventArgs,
    RestartEvent,
    StatusEvent,
    ToolCallEvent,
    delta_args,
    encode_event,
    event_args,
    tool_call_args,
)
from reasonq.shared.store import Fence, GenerationStore

logger = logging.getLogger(__name__)

FENCED = -1
CANCEL_REQUESTED = -2
HISTORY_LOST = -3
# The most text one delta event carries: a fast model's coalesced deltas are split into events of at most this
# many characters (a single longer delta stays whole). Every viewer is handed whole events, so the event size
# bounds what a viewer that stops reading pins in the API: with 500 KB events, 50 stalled viewers of a 10 MB
# stream held 87-126 MiB of the API (tests/api/test_abuse.py, issue 18); the writes per second are unchanged.
MAX_EVENT_CHARS = 64 * 1024


class CancelRequested(ReasonqError):
    """The generation was asked to stop (seen on the write path, no extra round trip)."""


class EventWriter:
    """Writes one attempt's events for one generation.

    Args:
        store: the generation store.
        generation_id: the generation.
        attempt: the attempt this writer speaks for (number and claim token); every write is fenced on it.
        seq: the id of the last event already in the stream.
        interval_s: minimum time between two writes.
        max_interval_s: the longest the interval grows for a fast stream.
        outage_s: how long to keep retrying a write while Redis is unreachable.
        lease_ttl_ms: the lease a restored attempt takes (see the module's docstring).
        text: the attempt's reasoning and content before its first write (a continued attempt's kept text).
    """

    def __init__(
        self,
        store: GenerationStore,
        generation_id: str,
        attempt: Fence,
        seq: int,
        interval_s: float,
        outage_s: float,
        max_interval_s: float | None = None,
        *,
        lease_ttl_ms: int = 10_000,
        text: tuple[str, str] = ("", ""),
    ) -> None:
        self._store = store
        self._generation_id = generation_id
        self._attempt = attempt
        self._seq = seq
        self._lease_ttl_ms = lease_ttl_ms
        # The attempt's text as written so far, per text slot (1 reasoning, 2 content): what a restore writes again.
        self._text: dict[int, list[str]] = {REASONING.text_slot: [text[0]], CONTENT.text_slot: [text[1]]}
        self._tool_events: list[tuple[str, bytes]] = []  # the attempt's tool-call events, written again by a restore
        self._base_interval_s = interval_s
        self._max_interval_s = max(interval_s, max_interval_s if max_interval_s is not None else interval_s)
        self._interval_s = interval_s
        self._outage_s = outage_s
        # (kind, text parts, None) for deltas (joined when written); (None, [], arguments) for other events
        self._pending: list[tuple[DeltaKind | None, list[str], EventArgs | None]] = []
        self._tail_chars = 0  # characters in the last pending entry's parts
        self._wakeup = asyncio.Event()
        self._closing = False
        self._error: BaseException | None = None
        self._last_write_s = float("-inf")
        self.writes = 0
        self._task = asyncio.create_task(self._run(), name=f"writer:{generation_id}")

    @property
    def seq(self) -> int:
        """The id of the last event written."""
        return self._seq

    @property
    def attempt(self) -> int:
        """The number of the attempt this writer speaks for."""
        return self._attempt.number

    def add(self, kind: DeltaKind, text: str) -> None:
        """Queue a delta (joined with the kind's previous delta if nothing came between); raises if the writer has
        been fenced or cancelled."""
        if self._error is not None:
            raise self._error
        if not text:
            return
        if self._pending and self._pending[-1][0] is kind and self._tail_chars < MAX_EVENT_CHARS:
            self._pending[-1][1].append(text)
            self._tail_chars += len(text)
        else:
            self._pending.append((kind, [text], None))
            self._tail_chars = len(text)
        self._wakeup.set()

    def add_event(self, event: AnyEvent) -> None:
        """Queue a non-delta event (a retry status, a tool call's first event), in order with the deltas."""
        if self._error is not None:
            raise self._error
        args = tool_call_args(event) if isinstance(event, ToolCallEvent) else event_args(event)
        self._pending.append((None, [], args))
        self._wakeup.set()

    def _take_pending(self) -> list[EventArgs]:
        batch, self._pending = self._pending, []
        out: list[EventArgs] = []
        for kind, parts, args in batch:
            if kind is not None:
                out.append(delta_args(kind, "".join(parts)))
            elif args is not None:
                out.append(args)
        return out

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                await self._wakeup.wait()
                if self._closing:
                    return
                delay = self._last_write_s + self._interval_s - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                    if self._closing:
                        return
                self._wakeup.clear()
                coalesced = sum(len(parts) for _, parts, _ in self._pending) > 1
                self._interval_s = (
                    min(self._interval_s * 2, self._max_interval_s) if coalesced else self._base_interval_s
                )
                triples = self._take_pending()
                if not triples:
                    continue
                self._last_write_s = loop.time()
                await self._write(triples)
        except BaseException as e:  # surfaced to the producer through add() and finish()
            self._error = e
            if not isinstance(e, FencedError | CancelRequested | asyncio.CancelledError):
                logger.error("generation %s: stream write failed: %r", self._generation_id, e)

    async def _retrying(self, write: Callable[[], Awaitable[int]]) -> int:
        deadline = time.monotonic() + self._outage_s
        backoff: Backoff | None = None  # made on the first failure only: this runs for every write
        while True:
            try:
                return await write()
            except (RedisError, OSError) as e:
                backoff = backoff or Backoff()
                delay_s = backoff.next_s()
                if time.monotonic() + delay_s > deadline:
                    raise
                logger.warning(
                    "generation %s: Redis unreachable (%s); retrying in %.1f s", self._generation_id, e, delay_s
                )
                await asyncio.sleep(delay_s)

    def _check(self, seq: int) -> int:
        if seq == FENCED:
            raise FencedError(f"generation {self._generation_id}: attempt {self.attempt} no longer owns it")
        if seq == CANCEL_REQUESTED:
            raise CancelRequested(self._generation_id)
        return seq

    def _written(self, triples: list[EventArgs]) -> None:
        for event_type, data, slot, text in triples:
            if slot in self._text:
                self._text[slot].append(text)
            elif slot == TOOL_SLOT:
                self._tool_events.append((event_type, data))

    async def _restore(self) -> None:
        """Write the attempt's history again after this Redis lost part of it (see the module's docstring)."""
        logger.warning(
            "generation %s: Redis lost events up to %d of attempt %d (a failover); writing its text again",
            self._generation_id,
            self._seq,
            self.attempt,
        )
        reasoning, content = ("".join(self._text[kind.text_slot]) for kind in (REASONING, CONTENT))
        events = [encode_event(RestartEvent(attempt=self.attempt, reason="history_lost"))]
        for kind, text in ((REASONING, reasoning), (CONTENT, content)):
            for start in range(0, len(text), MAX_EVENT_CHARS):
                event_type, data, _, _ = delta_args(kind, text[start : start + MAX_EVENT_CHARS])
                events.append((event_type, data))
        events += self._tool_events
        seq = await self._retrying(
            lambda: self._store.streams.restore(
                self._generation_id, self._attempt, self._seq, self._lease_ttl_ms, (reasoning, content), events
            )
        )
        self._seq = self._check(seq)

    async def _restoring(self, write: Callable[[], Awaitable[int]]) -> int:
        """``write`` (retried through outages); when it finds the attempt's history lost, restore it and write
        again (``write`` reads ``self._seq`` afresh)."""
        while (seq := await self._retrying(write)) == HISTORY_LOST:
            await self._restore()
        return seq

    async def _write(self, triples: list[EventArgs]) -> None:
        seq = await self._restoring(
            lambda: self._store.streams.append(self._generation_id, self._attempt, self._seq, triples)
        )
        self.writes += 1
        self._seq = self._check(seq)
        self._written(triples)

    async def _stop(self) -> None:
        self._closing = True
        self._wakeup.set()
        await self._task

    async def close(self) -> None:
        """Write what is pending and stop, without ending the generation."""
        await self._stop()
        if isinstance(self._error, FencedError):
            raise self._error
        triples = self._take_pending()
        if triples:
            await self._write(triples)

    async def finish(
        self,
        status: str,
        finish_reason: str | None = None,
        usage: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
        *,
        retention_s: int,
        tool_calls: list[dict[str, Any]] | None = None,
        system_fingerprint: str | None = None,
    ) -> None:
        """Write what is pending, the final ``status`` and the ``done`` event, record the answer's complete
        ``tool_calls`` and the provider's ``system_fingerprint``, and start the retention clock."""
        await self._stop()
        if isinstance(self._error, FencedError):
            raise self._error
        triples = self._take_pending()
        for event in (
            StatusEvent(status=status, attempt=self.attempt),
            DoneEvent(
                status=status,
                finish_reason=finish_reason,
                usage=usage,
                error=error,
                system_fingerprint=system_fingerprint,
            ),
        ):
            triples.append(event_args(event))
        outcome = (status, finish_reason, usage, error)
        seq = await self._restoring(
            lambda: self._store.streams.finish(
                self._generation_id,
                self._attempt,
                self._seq,
                retention_s,
                outcome,
                triples,
                tool_calls,
                system_fingerprint,
            )
        )
        self.writes += 1
        if seq == FENCED:
            raise FencedError(f"generation {self._generation_id}: attempt {self.attempt} no longer owns it")
        self._seq = seq

    async def abandon(self) -> None:
        """Stop writing without ending the generation (it belongs to another attempt now)."""
        await self._stop()
