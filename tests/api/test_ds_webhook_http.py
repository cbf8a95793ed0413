"""Durable Streams webhooks connect only to addresses they checked (``api/ds_webhook_http.py``).

The waker resolved a webhook's host to check its addresses, then httpx resolved it again to connect: a name that
answers a public address to the first lookup and an internal one to the second (DNS rebinding) sent the signed
wake inside the network. These tests run a real HTTP server on 127.0.0.1 and a stub resolver.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from reasonq.api import ds_webhook_http
from reasonq.api.ds_webhook_http import webhook_client


@asynccontextmanager
async def _receiver() -> AsyncIterator[tuple[int, list[bytes]]]:
    """An HTTP server on 127.0.0.1 only that answers 200 and records each request's first line."""
    received: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.append(await reader.readline())
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], received
    finally:
        server.close()
        await server.wait_closed()


class Rebinding:
    """A DNS answer that changes: each lookup takes the next address (the last one repeats)."""

    def __init__(self, *addresses: str) -> None:
        self.addresses = list(addresses)
        self.lookups = 0

    async def __call__(self, host: str, port: int) -> list[tuple[Any, ...]]:
        address = self.addresses[min(self.lookups, len(self.addresses) - 1)]
        self.lookups += 1
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]


def test_a_name_rebound_to_an_internal_address_after_the_check_gets_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    # Here 127.0.0.2 plays a public address and 127.0.0.1 (where the receiver listens) an internal one: the first
    # lookup answers the "public" one, any later lookup the internal one.
    monkeypatch.setattr(ds_webhook_http, "is_public_address", lambda a: a == ipaddress.ip_address("127.0.0.2"))

    async def main() -> None:
        async with _receiver() as (port, received):
            resolve = Rebinding("127.0.0.2", "127.0.0.1")
            async with webhook_client(timeout_s=5, loopback=False, resolve=resolve) as http:
                with pytest.raises(httpx.ConnectError):  # it connected to 127.0.0.2, which it checked: nobody there
                    await http.post(f"http://rebound.example:{port}/hook", content=b"{}")
            assert resolve.lookups == 1
            assert received == []

    asyncio.run(main())


@pytest.mark.parametrize(
    "answers",
    [("10.0.0.5",), ("169.254.169.254",), ("127.0.0.1",), ("93.184.216.34", "192.168.1.1")],
    ids=["private", "link-local", "loopback", "one-of-two-private"],
)
def test_a_name_with_any_internal_address_is_refused_before_connecting(answers: tuple[str, ...]) -> None:
    async def resolve(host: str, port: int) -> list[tuple[Any, ...]]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in answers]

    async def main() -> None:
        async with webhook_client(timeout_s=5, loopback=True, resolve=resolve) as http:
            with pytest.raises(httpx.ConnectError) as refused:
                await http.post("https://hooks.example/wake", content=b"{}")
            assert isinstance(refused.value.__cause__, ds_webhook_http.AddressRefused)

    asyncio.run(main())


def test_loopback_webhooks_reach_localhost_only_when_allowed_and_only_by_a_loopback_name() -> None:
    async def main() -> None:
        async with _receiver() as (port, received):
            async with webhook_client(timeout_s=5, loopback=True) as http:
                assert (await http.post(f"http://127.0.0.1:{port}/a", content=b"{}")).status_code == 200
                assert (await http.post(f"http://localhost:{port}/b", content=b"{}")).status_code == 200
            async with webhook_client(timeout_s=5, loopback=False) as http:
                with pytest.raises(httpx.ConnectError):
                    await http.post(f"http://127.0.0.1:{port}/c", content=b"{}")

            async def to_loopback(host: str, port: int) -> list[tuple[Any, ...]]:
                return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

            # A name of the subscriber's that resolves to loopback is not the development exception.
            async with webhook_client(timeout_s=5, loopback=True, resolve=to_loopback) as http:
                with pytest.raises(httpx.ConnectError):
                    await http.post(f"http://dev.example:{port}/d", content=b"{}")
            assert [line.split()[1] for line in received] == [b"/a", b"/b"]

    asyncio.run(main())
