"""The worker process's asyncio runtime: one event loop thread that runs every generation of the process.

Celery's pool threads only wait on futures; the streams themselves are coroutines on this loop, so one process
runs hundreds of concurrent generations with one Redis pool and one pooled HTTP client to the provider.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from openai import AsyncOpenAI
from redis.asyncio import Redis

from shared.errors import ConfigurationError
from shared.redis import create_redis
from shared.settings import Settings, get_settings
from shared.store import GenerationStore
from worker.model import create_model_client

logger = logging.getLogger(__name__)
T = TypeVar("T")


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class WorkerRuntime:
    """Clients and background tasks shared by the generations of one worker process.

    Args:
        settings: the process settings; ``model_base_url`` must be set.
    """

    def __init__(self, settings: Settings) -> None:
        if not settings.model_base_url:
            raise ConfigurationError(
                "REASONQ_MODEL_BASE_URL is not set: point it at an OpenAI-compatible endpoint "
                "(or run `reasonq up`, which starts the simulator)"
            )
        self.settings = settings
        self.pid = os.getpid()
        # generation id -> attempt, for the lease heartbeat
        self.leases: dict[str, int] = {}
        self.secrets = [settings.model_api_key.get_secret_value()]
        self._loop = _new_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="reasonq-loop", daemon=True)
        self._thread.start()
        self.redis: Redis = self.run(self._make_redis())
        self.store = GenerationStore(self.redis)
        self.model_client: AsyncOpenAI = self.run(self._make_model_client())
        self._heartbeat = asyncio.run_coroutine_threadsafe(self._renew_leases_forever(), self._loop)

    async def _make_redis(self) -> Redis:
        return create_redis(self.settings.redis_url, max_connections=self.settings.redis_max_connections)

    async def _make_model_client(self) -> AsyncOpenAI:
        return create_model_client(self.settings)

    @property
    def lease_ttl_ms(self) -> int:
        """The lease a claim takes and each heartbeat extends."""
        return int(self.settings.lease_ttl_s * 1000)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop and wait for its result (called from Celery's pool threads)."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    async def _renew_leases_forever(self) -> None:
        interval_s = self.settings.lease_ttl_s / 3
        while True:
            await asyncio.sleep(interval_s)
            leases = list(self.leases.items())
            try:
                lost = await self.store.renew_leases(leases, self.lease_ttl_ms)
            except Exception:
                logger.exception("lease heartbeat failed for %d generations", len(leases))
                continue
            for generation_id in lost:
                logger.warning("generation %s: lease lost (another attempt owns it, or it ended)", generation_id)

    def close(self) -> None:
        """Stop the heartbeat, close the clients and the loop."""
        self._heartbeat.cancel()

        async def _close() -> None:
            await self.model_client.close()
            await self.redis.aclose()

        with contextlib.suppress(Exception):
            self.run(_close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)


_runtime: WorkerRuntime | None = None
_runtime_lock = threading.Lock()


def get_runtime() -> WorkerRuntime:
    """The runtime of this process, created on first use (and anew in a forked child)."""
    global _runtime
    with _runtime_lock:
        if _runtime is None or _runtime.pid != os.getpid():
            _runtime = WorkerRuntime(get_settings())
        return _runtime


def close_runtime() -> None:
    """Close this process's runtime if it was started."""
    global _runtime
    with _runtime_lock:
        if _runtime is not None and _runtime.pid == os.getpid():
            _runtime.close()
        _runtime = None
