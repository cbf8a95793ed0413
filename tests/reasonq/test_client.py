"""The Python clients against the real API, through a proxy that cuts every connection mid-stream."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator

import pytest

from reasonq import AsyncClient, Client, ReasonqClientError
from reasonq.processes import free_port
from reasonq.shared.events import ContentEvent, DoneEvent, ReasoningEvent, RestartEvent
from tests.helpers import expected_text


class CuttingProxy:
    """Forwards TCP to the API and drops each connection after ``cut_bytes`` bytes of response."""

    def __init__(self, upstream_port: int, cut_bytes: int) -> None:
        self.upstream_port = upstream_port
        self.cut_bytes = cut_bytes
        self.port = free_port()
        self.connections = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", self.port))
        self._ready.set()
        self._loop.run_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        try:
            await self._pipe(reader, writer, up_reader, up_writer)
        finally:
            for w in (writer, up_writer):
                w.transport.abort()  # a hard cut, mid-response

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        up_reader: asyncio.StreamReader,
        up_writer: asyncio.StreamWriter,
    ) -> None:

        async def upstream() -> None:
            while data := await reader.read(65536):
                up_writer.write(data)
                await up_writer.drain()

        async def downstream() -> None:
            sent = 0
            while sent < self.cut_bytes and (data := await up_reader.read(256)):
                writer.write(data)
                await writer.drain()
                sent += len(data)

        task = asyncio.create_task(upstream())
        try:
            await downstream()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def __enter__(self) -> CuttingProxy:
        self._thread.start()
        self._ready.wait(5)
        return self

    def __exit__(self, *exc: object) -> None:
        async def shutdown() -> None:
            self._server.close()
            await self._server.wait_closed()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()


@pytest.fixture
def api_port(api_url: str) -> int:
    return int(api_url.rsplit(":", 1)[1])


@pytest.fixture
def proxy(api_port: int) -> Iterator[CuttingProxy]:
    # Each connection must be able to carry one whole event after its ~250 bytes of headers: a loaded worker joins
    # more tokens into one event (30 after a 300 ms stall at 100 tokens/s), and at 400 bytes such an event could
    # never get through, so the client gave up after 10 reconnections without progress (the suite, twice).
    with CuttingProxy(api_port, cut_bytes=1200) as p:
        yield p


def _text(events: list) -> tuple[str, str]:  # type: ignore[type-arg]
    reasoning, content = "", ""
    for e in events:
        if isinstance(e.event, RestartEvent):
            reasoning, content = "", ""
        elif isinstance(e.event, ReasoningEvent):
            reasoning += e.event.delta
        elif isinstance(e.event, ContentEvent):
            content += e.event.delta
    return reasoning, content


def test_stream_survives_cut_connections_and_sees_each_event_once(api_url: str, proxy: CuttingProxy) -> None:
    prompt = "client cut sim:reasoning_tokens=150 sim:content_tokens=100 sim:tokens_per_s=100"
    with Client(api_url) as direct, Client(f"http://127.0.0.1:{proxy.port}") as client:
        generation = direct.submit(prompt)
        events = list(client.stream(generation.id))
        assert [e.id for e in events] == list(range(1, len(events) + 1))
        assert isinstance(events[-1].event, DoneEvent) and events[-1].event.status == "completed"
        assert _text(events) == expected_text(prompt)
        assert direct.get(generation.id).content == expected_text(prompt)[1]
    assert proxy.connections >= 3  # it really was cut, and resumed


def test_async_client_resumes_too(api_url: str, api_port: int) -> None:
    prompt = "client async cut sim:reasoning_tokens=150 sim:content_tokens=100 sim:tokens_per_s=300"

    async def main() -> list:  # type: ignore[type-arg]
        async with (
            AsyncClient(f"http://127.0.0.1:{proxy.port}", max_reconnects=50) as client,
            AsyncClient(api_url) as direct,
        ):
            generation = await direct.submit(prompt)
            return [e async for e in client.stream(generation.id, after=2)]

    # cut every 1,200 bytes: a few events per connection (at 400, ~one each: 41-65 s in the suite), and room for
    # one event of many tokens (see ``proxy``)
    with CuttingProxy(api_port, cut_bytes=1200) as proxy:
        events = asyncio.run(main())
    assert [e.id for e in events] == list(range(3, len(events) + 3))
    assert _text(events) == expected_text(prompt)
    assert proxy.connections >= 3  # it really was cut, and resumed


def test_submit_wait_cancel_and_errors(api_url: str) -> None:
    with Client(api_url) as client:
        done = client.wait(client.submit("whole sim:reasoning_tokens=5 sim:content_tokens=5", max_tokens=50).id)
        assert (
            done.status == "completed"
            and done.content == expected_text("whole sim:reasoning_tokens=5 sim:content_tokens=5")[1]
        )
        running = client.submit("long sim:reasoning_tokens=400 sim:tokens_per_s=40")
        assert client.cancel(running.id).id == running.id
        assert client.wait(running.id).status == "cancelled"
        with pytest.raises(ReasonqClientError) as info:
            client.get("gen_AAAAAAAAAAAAAAAAAAAAAA")
        assert info.value.status_code == 404
        with pytest.raises(ReasonqClientError) as info:
            list(client.stream("gen_AAAAAAAAAAAAAAAAAAAAAA"))
        assert info.value.status_code == 404  # not retried
        with pytest.raises(ReasonqClientError, match="422"):
            client.submit([])


def test_an_unreachable_server_gives_up() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with Client(f"http://127.0.0.1:{port}", max_reconnects=2) as client, pytest.raises(ReasonqClientError):
        list(client.stream("gen_AAAAAAAAAAAAAAAAAAAAAA"))


def test_the_async_client_has_the_batch_methods_too(api_url: str) -> None:
    """Issue 18: the README said both clients had `submit_batch`, `get_batch` and `batch_results`; only the
    synchronous one did."""
    import secrets

    import orjson

    lines = [
        {
            "custom_id": f"a{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"messages": [{"role": "user", "content": f"async batch {i} sim:reasoning_tokens=2"}]},
        }
        for i in range(3)
    ]
    jsonl = b"\n".join(orjson.dumps(line) for line in lines)

    async def main() -> tuple[dict[str, object], list[dict[str, object]], str]:
        key = secrets.token_hex(8)
        async with AsyncClient(api_url) as client:
            batch = await client.submit_batch(jsonl, key)
            again = await client.submit_batch(jsonl, key)
            while (await client.get_batch(str(batch["id"])))["status"] != "completed":
                await asyncio.sleep(0.1)
            return batch, await client.batch_results(str(batch["id"])), str(again["id"])

    batch, results, again_id = asyncio.run(main())
    assert again_id == batch["id"]  # the same Idempotency-Key: the same batch
    assert sorted(str(r["custom_id"]) for r in results) == ["a0", "a1", "a2"]
