"""The worker process's asyncio runtime: one event loop thread that runs every generation of the process.

Celery's pool threads only wait on futures; the streams themselves are coroutines on this loop, so one process
runs hundreds of concurrent generations with one Redis pool and one pooled HTTP client to the provider.
Beside them run the process's lease heartbeat, recovery sweep and cancel listener (``worker/recovery.py``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from openai import AsyncOpenAI
from redis.asyncio import Redis

from reasonq.shared.batching import ScriptBatcher
from reasonq.shared.errors import ConfigurationError
from reasonq.shared.providers import ProviderConfig
from reasonq.shared.redis import create_redis
from reasonq.shared.settings import Settings, get_settings
from reasonq.shared.stats import Stats
from reasonq.shared.store import GenerationStore
from reasonq.worker.capacity import ProviderGate, Slot
from reasonq.worker.model import create_model_client
from reasonq.worker.pickup import Pickup

logger = logging.getLogger(__name__)
T = TypeVar("T")


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


@dataclass(eq=False)
class RunningGeneration:
    """A generation this process is running: its attempt, and a way to stop its upstream stream."""

    generation_id: str
    attempt: int
    stream_task: asyncio.Task[Any] | None = None
    stop_reason: str | None = None
    fallback_slot: Slot | None = None  # a slot of the fallback provider it moved to

    def stop(self, reason: str) -> None:
        """Stop the upstream stream (``cancel``, ``shutdown`` or ``lost``); the first reason wins."""
        if self.stop_reason is None:
            self.stop_reason = reason
        if self.stream_task is not None:
            self.stream_task.cancel()


class WorkerRuntime:
    """Clients and background tasks shared by the generations of one worker process.

    Args:
        settings: the process settings; a provider must be set (``model_base_url`` or ``providers``).
        dispatch: sends a generation's task to a queue (blocking; run in a thread).
        queue_depth: the number of messages waiting in a queue, or ``None`` if unknown.
    """

    def __init__(
        self,
        settings: Settings,
        dispatch: Callable[[str, str], None] | None = None,
        queue_depth: Callable[[str], int | None] | None = None,
    ) -> None:
        if not settings.provider_routes.providers:
            raise ConfigurationError(
                "REASONQ_MODEL_BASE_URL is not set: point it at an OpenAI-compatible endpoint, or configure "
                "REASONQ_PROVIDERS (or run `reasonq up`, which starts the simulator)"
            )
        self.settings = settings
        self.pid = os.getpid()
        self.worker_id = f"{socket.gethostname()}:{self.pid}"
        self.running: dict[str, RunningGeneration] = {}
        self.queues: tuple[str, ...] = ()  # the Celery queues this process consumes (named in its heartbeats)
        self.concurrency = settings.worker_concurrency  # its pool's size (``--concurrency`` may differ)
        self.providers = settings.provider_routes
        self.secrets = [s for s in (settings.model_api_key.get_secret_value(), *self.providers.secrets()) if s]
        self.shutting_down = False
        self.stats = Stats()
        self.last_beat_at: float | None = None  # monotonic time of the last heartbeat Redis took
        self._redis_failed_at = float("-inf")  # monotonic time of the last failed heartbeat or sweep
        self._dispatch = dispatch
        self._queue_depth = queue_depth
        self._loop = _new_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="reasonq-loop", daemon=True)
        self._thread.start()
        self.redis: Redis = self.run(self._make_redis())
        self.batcher = ScriptBatcher(self.redis)
        self.store = GenerationStore(self.redis, self.batcher)
        self.gate = ProviderGate(self.store, self.lease_ttl_ms, lambda: self.shutting_down)
        self._model_clients: dict[str, AsyncOpenAI] = {}
        self._background: list[concurrent.futures.Future[None]] = []
        self.pickup: Pickup | None = None  # set by the worker app (worker/pickup.py)

    def note_redis_failure(self) -> None:
        """A heartbeat or sweep could not reach Redis (or Redis refused it)."""
        self._redis_failed_at = time.monotonic()

    @property
    def leases_trustworthy(self) -> bool:
        """Whether an expired lease means a lost worker: not until a whole lease has passed since this process last
        failed to reach Redis. During an outage no worker can renew; when Redis returns, a sweep that ran at once
        took generations from live workers before their next heartbeat (issue 12: 11 of 20 restarted after a 10 s
        outage, the provider paid twice). Every worker beats every third of a lease, so each sees an outage long
        enough to expire a lease, and each owner renews within a third of a lease of Redis' return."""
        return time.monotonic() - self._redis_failed_at >= self.settings.lease_ttl_s

    async def _make_redis(self) -> Redis:
        return create_redis(self.settings.redis_url, max_connections=self.settings.redis_max_connections)

    def model_client(self, provider: ProviderConfig) -> AsyncOpenAI:
        """The process's client of ``provider`` (made on first use, on the runtime's loop)."""
        client = self._model_clients.get(provider.name)
        if client is None:
            client = self._model_clients[provider.name] = create_model_client(self.settings, provider)
        return client

    @property
    def lease_ttl_ms(self) -> int:
        """The lease a claim takes and each heartbeat extends."""
        return int(self.settings.lease_ttl_s * 1000)

    def start_background(self, *coros: Coroutine[Any, Any, None]) -> None:
        """Run background loops on the runtime's loop until ``close()``."""
        for coro in coros:
            self._background.append(asyncio.run_coroutine_threadsafe(coro, self._loop))

    def call_soon(self, callback: Callable[[], object]) -> None:
        """Call ``callback`` on the runtime's loop (from any thread)."""
        self._loop.call_soon_threadsafe(callback)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop and wait for its result (called from Celery's pool threads)."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    async def dispatch(self, generation_id: str, queue: str) -> bool:
        """Send a generation's task to ``queue``; ``False`` (logged) if the broker is unreachable."""
        if self._dispatch is None:
            return False
        try:
            await asyncio.get_running_loop().run_in_executor(
                None, self._dispatch, generation_id, queue or self.settings.queue_name
            )
        except Exception as e:
            logger.warning("generation %s: could not dispatch its task: %s", generation_id, e)
            return False
        return True

    async def queue_depth(self, queue: str) -> int | None:
        """Messages waiting in ``queue``, ``None`` if the broker cannot tell."""
        if self._queue_depth is None:
            return None
        try:
            return await asyncio.get_running_loop().run_in_executor(None, self._queue_depth, queue)
        except Exception as e:
            logger.warning("could not read the queue depth: %s", e)
            return None

    def begin_shutdown(self, grace_s: float) -> None:
        """Let running generations finish for ``grace_s``, then hand the rest back to the queue.

        Called again while already draining (a second SIGTERM), it hands them back at once.
        """
        if self.shutting_down:
            logger.info("worker asked again to stop: handing back %d generations now", len(self.running))
            self._loop.call_soon_threadsafe(self._hand_back_all)
            return
        self.shutting_down = True

        async def _after_grace() -> None:
            await asyncio.sleep(grace_s)
            self._hand_back_all()

        logger.info("worker shutting down: %d generations running, grace %.0f s", len(self.running), grace_s)
        self._background.append(asyncio.run_coroutine_threadsafe(_after_grace(), self._loop))

    def _hand_back_all(self) -> None:
        for running in list(self.running.values()):
            logger.info("generation %s: handing back (worker shutting down)", running.generation_id)
            running.stop("shutdown")

    def close(self) -> None:
        """Stop the background loops, close the clients and the loop."""

        async def _close() -> None:
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()
            for client in self._model_clients.values():
                await client.close()
            await self.redis.aclose()

        try:
            self.run(_close())
        except Exception as e:  # closing must go on to stop the loop; a client that fails to close is only logged
            logger.warning("worker runtime: closing its clients failed: %r", e)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)


_runtime: WorkerRuntime | None = None
_runtime_lock = threading.Lock()


def get_runtime(factory: Callable[[], WorkerRuntime] | None = None) -> WorkerRuntime:
    """The runtime of this process, created on first use by ``factory`` (and anew in a forked child)."""
    global _runtime
    with _runtime_lock:
        if _runtime is None or _runtime.pid != os.getpid():
            _runtime = factory() if factory is not None else WorkerRuntime(get_settings())
        return _runtime


def current_runtime() -> WorkerRuntime | None:
    """The runtime of this process if one was started."""
    return _runtime if _runtime is not None and _runtime.pid == os.getpid() else None


def close_runtime() -> None:
    """Close this process's runtime if it was started."""
    global _runtime
    with _runtime_lock:
        if _runtime is not None and _runtime.pid == os.getpid():
            _runtime.close()
        _runtime = None
