"""The HTTP client of Durable Streams webhooks: it connects only to addresses it checked.

A webhook URL's host is a name its subscriber controls. Checking the name's addresses and then letting the client
look the name up again to connect left a window: a name served with a zero TTL can answer a public address to the
check and ``169.254.169.254`` or ``10.0.0.5`` to the connection (DNS rebinding), and the signed wake goes inside
the network. Here the client's network backend resolves the name once per connection, refuses it unless every
address is public (loopback only for the development exception: ``http`` to ``localhost`` or ``127.0.0.x``, when
``loopback`` is on), and connects to an address it checked. TLS still verifies the certificate against the name:
httpcore hands the name, not the address, to the TLS layer as the server name.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import httpcore
import httpx

from reasonq.api.ds_subscriptions_schema import is_local_dev_host, is_public_address

# getaddrinfo's shape: (host, port) -> [(family, type, proto, canonname, sockaddr), ...]
Resolve = Callable[[str, int], Awaitable[list[tuple[Any, ...]]]]


class AddressRefused(httpcore.ConnectError):
    """A webhook host resolved to an address webhooks may not go to (httpx raises it as ``ConnectError``)."""


async def _getaddrinfo(host: str, port: int) -> list[tuple[Any, ...]]:
    return await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)


class CheckedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, connecting only to checked addresses (see the module's docstring)."""

    def __init__(self, *, loopback: bool, resolve: Resolve = _getaddrinfo) -> None:
        self._inner = httpcore.AnyIOBackend()
        self._loopback = loopback
        self._resolve = resolve

    def _allowed(self, host: str, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        if self._loopback and is_local_dev_host(host.lower()):
            return address.is_loopback
        return is_public_address(address)

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            infos = await self._resolve(host, port)
        except OSError as e:
            raise httpcore.ConnectError(f"could not resolve the webhook host: {e.strerror or e}") from None
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
        if not addresses or not all(self._allowed(host, a) for a in addresses):
            raise AddressRefused("the webhook host resolves to an address webhooks may not go to")
        return await self._inner.connect_tcp(str(addresses[0]), port, timeout, local_address, socket_options)

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        raise AddressRefused("webhooks do not go to unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def webhook_client(*, timeout_s: float, loopback: bool, resolve: Resolve = _getaddrinfo) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` for webhooks: no redirects, no proxies from the environment, checked addresses."""
    transport = httpx.AsyncHTTPTransport(trust_env=False)
    # httpx takes no network backend: its pool is replaced by one with the same TLS context and ours. Checked, so
    # an httpx that renamed the attribute fails here (and in the tests), not silently without the check.
    pool = getattr(transport, "_pool", None)
    if not isinstance(pool, httpcore.AsyncConnectionPool):
        raise RuntimeError("httpx's transport changed: the webhook client cannot pin its addresses")
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=httpx.create_ssl_context(trust_env=False),
        network_backend=CheckedBackend(loopback=loopback, resolve=resolve),
    )
    return httpx.AsyncClient(transport=transport, timeout=timeout_s, follow_redirects=False, trust_env=False)
