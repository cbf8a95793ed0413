"""Python clients for reasonq: ``Client`` (sync) and ``AsyncClient``, built on httpx and httpx-sse.

``stream()`` reconnects by itself when the connection drops, the server answers 5xx, or the response ends
before ``done``, with backoff, resuming after the last event id it saw: the caller sees each event exactly
once, in order. Event types this version does not know are skipped, as the contract asks.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
from httpx_sse import ServerSentEvent, aconnect_sse, connect_sse

from reasonq.shared.errors import ReasonqError
from reasonq.shared.events import DoneEvent, Event, decode_event
from reasonq.shared.schemas import GenerationCancel, GenerationPublic

DEFAULT_URL = "http://127.0.0.1:8000"


class ReasonqClientError(ReasonqError):
    """The server refused a request (4xx) or could not be reached after retries."""

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One event of a generation: its id and the typed event."""

    id: int
    event: Event


def _base_url(base_url: str | None) -> str:
    return (base_url or os.environ.get("REASONQ_URL") or DEFAULT_URL).rstrip("/")


def _headers(api_key: str | None, headers: dict[str, str] | None) -> dict[str, str]:
    key = api_key if api_key is not None else os.environ.get("REASONQ_API_KEY", "")
    return {**({"Authorization": f"Bearer {key}"} if key else {}), **(headers or {})}


def _body(messages: list[dict[str, str]] | str, params: dict[str, Any]) -> dict[str, Any]:
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    return {"messages": messages, **{k: v for k, v in params.items() if v is not None}}


def _batch_headers(idempotency_key: str | None) -> dict[str, str]:
    headers = {"content-type": "application/jsonl"}
    if idempotency_key:
        headers["Idempotency-Key"] = idempotency_key
    return headers


def _result_lines(response: httpx.Response) -> list[dict[str, Any]]:
    if response.status_code >= 400:
        _check(response)
    return [orjson.loads(line) for line in response.content.splitlines() if line.strip()]


def _check(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = response.text[:200]
        raise ReasonqClientError(f"HTTP {response.status_code}: {message}", response.status_code)
    return response.json()


class _Backoff:
    def __init__(self, max_retries: int) -> None:
        self.max_retries = max_retries
        self.failures = 0

    def next_delay_s(self, error: BaseException) -> float:
        self.failures += 1
        if self.failures > self.max_retries:
            raise ReasonqClientError(f"gave up after {self.max_retries} reconnections: {error!r}") from error
        return float(min(5.0, 0.2 * 2 ** (self.failures - 1)) * (0.5 + random.random() / 2))


class _Cursor:
    """Where a stream is: the last event id seen, and whether ``done`` came. Shared by both clients."""

    def __init__(self, after: int | None, max_reconnects: int) -> None:
        self.last = after or 0
        self.done = False
        self.backoff = _Backoff(max_reconnects)

    @property
    def headers(self) -> dict[str, str]:
        return {"Last-Event-ID": str(self.last)}

    def accept(self, sse: ServerSentEvent) -> StreamEvent | None:
        """The event to hand to the caller, or ``None`` (keep-alive, a repeat, or a type this version skips)."""
        if not sse.data or not sse.id or int(sse.id) <= self.last:
            return None
        self.last = int(sse.id)
        self.backoff.failures = 0
        event = decode_event(sse.event, sse.data)
        if event is None:
            return None
        self.done = isinstance(event, DoneEvent)
        return StreamEvent(self.last, event)


def _retryable(e: BaseException) -> bool:
    return isinstance(e, httpx.TransportError) or (
        isinstance(e, ReasonqClientError) and (e.status_code is None or e.status_code >= 500)
    )


class Client:
    """A synchronous reasonq client.

    Args:
        base_url: the server (default ``REASONQ_URL``, else http://127.0.0.1:8000).
        api_key: the client key sent as ``Authorization: Bearer`` (default ``REASONQ_API_KEY``; none in open mode).
        timeout_s: per-request timeout; a stream waits up to ``read_timeout_s`` for the next byte.
        max_reconnects: consecutive failed reconnections before ``stream()`` gives up.
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        timeout_s: float = 30.0,
        read_timeout_s: float = 60.0,
        max_reconnects: int = 10,
        headers: dict[str, str] | None = None,
        api_key: str | None = None,
    ) -> None:
        self.base_url = _base_url(base_url)
        self.max_reconnects = max_reconnects
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout_s, read=read_timeout_s),
            headers=_headers(api_key, headers),
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def submit(self, messages: list[dict[str, str]] | str, **params: Any) -> GenerationPublic:
        """Queue a generation (a string is one user message); returns it as it is now."""
        accepted = _check(self._http.post("/v1/generations", json=_body(messages, params)))
        return self.get(accepted["id"])

    def get(self, generation_id: str) -> GenerationPublic:
        """The generation's state and text so far."""
        return GenerationPublic.model_validate(_check(self._http.get(f"/v1/generations/{generation_id}")))

    def cancel(self, generation_id: str) -> GenerationCancel:
        """Cancel it (idempotent)."""
        return GenerationCancel.model_validate(_check(self._http.post(f"/v1/generations/{generation_id}/cancel")))

    def stream(self, generation_id: str, after: int | None = None) -> Iterator[StreamEvent]:
        """Every event after ``after`` (default: from the start) to ``done``, each exactly once."""
        cursor = _Cursor(after, self.max_reconnects)
        path = f"/v1/generations/{generation_id}/events"
        while True:
            try:
                with connect_sse(self._http, "GET", path, headers=cursor.headers) as source:
                    if source.response.status_code != 200:
                        source.response.read()
                        _check(source.response)
                    for sse in source.iter_sse():
                        item = cursor.accept(sse)
                        if item is not None:
                            yield item
                            if cursor.done:
                                return
                raise httpx.RemoteProtocolError("the event stream ended before done")
            except (httpx.HTTPError, ReasonqClientError) as e:
                if not _retryable(e):
                    raise
                time.sleep(cursor.backoff.next_delay_s(e))

    def wait(self, generation_id: str) -> GenerationPublic:
        """Wait for the end (by following the stream) and return the final generation."""
        for _ in self.stream(generation_id):
            pass
        return self.get(generation_id)

    def submit_batch(self, jsonl: bytes, idempotency_key: str | None = None) -> dict[str, Any]:
        """Submit OpenAI Batch input lines (JSONL); with a key, a retry returns the same batch."""
        response = self._http.post("/v1/batches", content=jsonl, headers=_batch_headers(idempotency_key))
        batch: dict[str, Any] = _check(response)
        return batch

    def get_batch(self, batch_id: str) -> dict[str, Any]:
        """The batch object with its request counts."""
        batch: dict[str, Any] = _check(self._http.get(f"/v1/batches/{batch_id}"))
        return batch

    def batch_results(self, batch_id: str) -> list[dict[str, Any]]:
        """The output lines of the requests that have finished so far."""
        return _result_lines(self._http.get(f"/v1/batches/{batch_id}/results"))


class AsyncClient:
    """The asyncio twin of ``Client`` (same arguments and methods, awaited)."""

    def __init__(
        self,
        base_url: str | None = None,
        *,
        timeout_s: float = 30.0,
        read_timeout_s: float = 60.0,
        max_reconnects: int = 10,
        headers: dict[str, str] | None = None,
        api_key: str | None = None,
    ) -> None:
        self.base_url = _base_url(base_url)
        self.max_reconnects = max_reconnects
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout_s, read=read_timeout_s),
            headers=_headers(api_key, headers),
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def submit(self, messages: list[dict[str, str]] | str, **params: Any) -> GenerationPublic:
        """Queue a generation (a string is one user message); returns it as it is now."""
        accepted = _check(await self._http.post("/v1/generations", json=_body(messages, params)))
        return await self.get(accepted["id"])

    async def get(self, generation_id: str) -> GenerationPublic:
        """The generation's state and text so far."""
        return GenerationPublic.model_validate(_check(await self._http.get(f"/v1/generations/{generation_id}")))

    async def cancel(self, generation_id: str) -> GenerationCancel:
        """Cancel it (idempotent)."""
        response = await self._http.post(f"/v1/generations/{generation_id}/cancel")
        return GenerationCancel.model_validate(_check(response))

    async def stream(self, generation_id: str, after: int | None = None) -> AsyncIterator[StreamEvent]:
        """Every event after ``after`` (default: from the start) to ``done``, each exactly once."""
        cursor = _Cursor(after, self.max_reconnects)
        path = f"/v1/generations/{generation_id}/events"
        while True:
            try:
                async with aconnect_sse(self._http, "GET", path, headers=cursor.headers) as source:
                    if source.response.status_code != 200:
                        await source.response.aread()
                        _check(source.response)
                    async for sse in source.aiter_sse():
                        item = cursor.accept(sse)
                        if item is not None:
                            yield item
                            if cursor.done:
                                return
                raise httpx.RemoteProtocolError("the event stream ended before done")
            except (httpx.HTTPError, ReasonqClientError) as e:
                if not _retryable(e):
                    raise
                await asyncio.sleep(cursor.backoff.next_delay_s(e))

    async def wait(self, generation_id: str) -> GenerationPublic:
        """Wait for the end (by following the stream) and return the final generation."""
        async for _ in self.stream(generation_id):
            pass
        return await self.get(generation_id)

    async def submit_batch(self, jsonl: bytes, idempotency_key: str | None = None) -> dict[str, Any]:
        """Submit OpenAI Batch input lines (JSONL); with a key, a retry returns the same batch."""
        response = await self._http.post("/v1/batches", content=jsonl, headers=_batch_headers(idempotency_key))
        batch: dict[str, Any] = _check(response)
        return batch

    async def get_batch(self, batch_id: str) -> dict[str, Any]:
        """The batch object with its request counts."""
        batch: dict[str, Any] = _check(await self._http.get(f"/v1/batches/{batch_id}"))
        return batch

    async def batch_results(self, batch_id: str) -> list[dict[str, Any]]:
        """The output lines of the requests that have finished so far."""
        return _result_lines(await self._http.get(f"/v1/batches/{batch_id}/results"))
