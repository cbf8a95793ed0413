"""Deployment-wide counters and histograms kept in one Redis hash (``keys.metrics_key()``).

Workers observe (tokens, ends by status, time to first token, queue pickup) in memory and add their deltas to
the hash with each heartbeat, so the per-token path costs an integer increment and no Redis command; the API's
``GET /metrics`` reads the hash in one round trip and shows it as Prometheus counters and histograms. A worker
that dies loses at most one heartbeat interval of observations.
"""

from __future__ import annotations

import bisect
import math
import secrets
from collections import defaultdict
from typing import cast

from redis.asyncio import Redis

from reasonq.shared import keys
from reasonq.shared.scripts import load_script

# Upper bounds (seconds) of the histogram buckets; the last bucket is +Inf.
TTFT_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
PICKUP_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
HISTOGRAMS = {"ttft": TTFT_BUCKETS_S, "pickup": PICKUP_BUCKETS_S}


def _bucket_field(name: str, bounds: tuple[float, ...], value_s: float) -> str:
    index = bisect.bisect_left(bounds, value_s)
    return f"{name}:le:{bounds[index] if index < len(bounds) else '+Inf'}"


class Stats:
    """Observations not yet added to Redis (one per worker process; used from its event loop only)."""

    def __init__(self) -> None:
        self.pending: defaultdict[str, float] = defaultdict(float)
        self._unsent: tuple[str, dict[str, float]] | None = None  # a batch whose add may or may not have applied

    def observe(self, name: str, value_s: float) -> None:
        """One observation of histogram ``name`` (``ttft`` or ``pickup``), in seconds."""
        value_s = max(0.0, value_s)
        self.pending[_bucket_field(name, HISTOGRAMS[name], value_s)] += 1
        self.pending[f"{name}:count"] += 1
        self.pending[f"{name}:sum"] += round(value_s, 6)

    def ended(self, status: str) -> None:
        """A generation ended with ``status``."""
        self.pending[f"ended:{status}"] += 1

    def tokens(self, n: int) -> None:
        """``n`` tokens were streamed."""
        self.pending["tokens"] += n

    async def flush(self, redis: Redis) -> None:
        """Add the pending observations to the deployment's hash.

        Each batch has an id and is applied at most once (``metrics_add.lua``): a batch whose reply was lost is
        sent again, with the same id, before anything newer, so it is neither lost nor counted twice.
        """
        if self._unsent is not None:
            await add_metrics(redis, *self._unsent)
            self._unsent = None
        if not self.pending:
            return
        self._unsent = (secrets.token_hex(8), dict(self.pending))
        self.pending = defaultdict(float)
        await add_metrics(redis, *self._unsent)
        self._unsent = None


async def add_metrics(redis: Redis, batch_id: str, deltas: dict[str, float]) -> bool:
    """Add ``deltas`` to the metrics hash unless batch ``batch_id`` was added already; whether it was added."""
    args: list[str | float] = [keys.METRICS_BATCH_TTL_S]
    for field, amount in deltas.items():
        args += [field, amount]
    script = load_script(redis, "metrics_add")
    return bool(await script(keys=[keys.metrics_key(), keys.metrics_batch_key(batch_id)], args=args))


async def read_stats(redis: Redis) -> dict[str, float]:
    """The deployment's counters and histogram fields."""
    raw = cast(dict[bytes, bytes], await redis.hgetall(keys.metrics_key()))
    return {k.decode(): float(v) for k, v in raw.items()}


def histogram(stats: dict[str, float], name: str) -> tuple[list[tuple[str, float]], float]:
    """Cumulative ``(le, count)`` buckets (Prometheus order, ending with ``+Inf``) and the sum of histogram
    ``name``."""
    out = []
    total = 0.0
    for bound in (*HISTOGRAMS[name], math.inf):
        label = "+Inf" if bound == math.inf else str(bound)
        total += stats.get(f"{name}:le:{label}", 0.0)
        out.append((label, total))
    return out, stats.get(f"{name}:sum", 0.0)
