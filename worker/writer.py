"""Coalescing writer: turns a stream of model deltas into few, fenced stream writes (group commit).

The first delta after a quiet period is written at once, so a slow model shows every token immediately;
deltas that arrive while a write is in flight, or within ``interval_s`` of the previous write, are merged into
one event per kind, so a fast model costs about one Redis round trip per interval instead of one per token.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from shared.errors import FencedError
from shared.events import DoneEvent, StatusEvent, encode_delta, encode_event
from shared.store import EventTriple, GenerationStore

logger = logging.getLogger(__name__)

FENCED = -1
CANCEL_REQUESTED = -2


class CancelRequested(Exception):
    """The generation was asked to stop (seen on the write path, no extra round trip)."""


class EventWriter:
    """Writes one attempt's events for one generation.

    Args:
        store: the generation store.
        generation_id: the generation.
        attempt: the attempt this writer speaks for; every write is fenced on it.
        seq: the id of the last event already in the stream.
        interval_s: minimum time between two writes.
    """

    def __init__(self, store: GenerationStore, generation_id: str, attempt: int, seq: int, interval_s: float) -> None:
        self._store = store
        self._generation_id = generation_id
        self._attempt = attempt
        self._seq = seq
        self._interval_s = interval_s
        self._pending: list[tuple[str, list[str]]] = []
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

    def add(self, kind: str, text: str) -> None:
        """Queue a ``reasoning`` or ``content`` delta; raises if the writer has been fenced or cancelled."""
        if self._error is not None:
            raise self._error
        if not text:
            return
        if self._pending and self._pending[-1][0] == kind:
            self._pending[-1][1].append(text)
        else:
            self._pending.append((kind, [text]))
        self._wakeup.set()

    def _take_pending(self) -> list[EventTriple]:
        batch, self._pending = self._pending, []
        triples: list[EventTriple] = []
        for kind, parts in batch:
            text = "".join(parts)
            triples.append((kind, encode_delta(text), text))
        return triples

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
                triples = self._take_pending()
                if not triples:
                    continue
                self._last_write_s = loop.time()
                await self._write(triples)
        except BaseException as e:  # surfaced to the producer through add() and finish()
            self._error = e
            if not isinstance(e, FencedError | CancelRequested | asyncio.CancelledError):
                logger.exception("generation %s: stream write failed", self._generation_id)

    async def _write(self, triples: list[EventTriple]) -> None:
        seq = await self._store.append(self._generation_id, self._attempt, self._seq, triples)
        self.writes += 1
        if seq == FENCED:
            raise FencedError(f"generation {self._generation_id}: attempt {self._attempt} no longer owns it")
        if seq == CANCEL_REQUESTED:
            raise CancelRequested(self._generation_id)
        self._seq = seq

    async def _stop(self) -> None:
        self._closing = True
        self._wakeup.set()
        await self._task

    async def finish(
        self,
        status: str,
        finish_reason: str | None = None,
        usage: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
        retention_s: int = 86_400,
    ) -> None:
        """Write what is pending, the final ``status`` and the ``done`` event, and start the retention clock."""
        await self._stop()
        if isinstance(self._error, FencedError):
            raise self._error
        triples = self._take_pending()
        for event in (
            StatusEvent(status=status, attempt=self._attempt),
            DoneEvent(status=status, finish_reason=finish_reason, usage=usage, error=error),
        ):
            event_type, data = encode_event(event)
            triples.append((event_type, data, ""))
        outcome = (status, finish_reason, usage, error)
        seq = await self._store.finish(self._generation_id, self._attempt, self._seq, retention_s, outcome, triples)
        self.writes += 1
        if seq == FENCED:
            raise FencedError(f"generation {self._generation_id}: attempt {self._attempt} no longer owns it")
        self._seq = seq

    async def abandon(self) -> None:
        """Stop writing without ending the generation (it belongs to another attempt now)."""
        await self._stop()
