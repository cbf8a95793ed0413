"""The hub's viewer counts in Redis: joins published soon, every count rewritten each period, and the rewrite in
small pieces spread over the period (issue 14: rewriting 10,000 counts at once stalled every stream's events for
50-170 ms every 2 s, the many-streams p99)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from reasonq.api import viewer_counts
from reasonq.api.hub import Hub
from reasonq.shared.redis import create_blocking_redis, create_redis
from reasonq.shared.store import GenerationStore

PERIOD_S = 0.4
PIECE = 50


class Recorder:
    """Records each publish (when, how many counts) and passes it on to the real presence store."""

    def __init__(self, presence: Any) -> None:
        self.presence = presence
        self.calls: list[tuple[float, dict[str, int]]] = []

    async def publish_viewers(self, counts: dict[str, int], process_id: str) -> None:
        self.calls.append((time.monotonic(), dict(counts)))
        await self.presence.publish_viewers(counts, process_id)


def test_the_refresh_rewrites_every_count_each_period_in_pieces_spread_over_it(
    unit_redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(viewer_counts, "PUBLISH_S", PERIOD_S)
    monkeypatch.setattr(viewer_counts, "CHANGE_S", 0.02)
    monkeypatch.setattr(viewer_counts, "REFRESH_PIECE", PIECE)
    gids = [f"gen_counts_{i}" for i in range(400)]

    async def main() -> tuple[list[tuple[float, dict[str, int]]], int, float]:
        redis = create_redis(unit_redis_url, max_connections=8)
        store = GenerationStore(redis)
        recorder = Recorder(store.presence)
        monkeypatch.setattr(store, "presence", recorder)
        hub = Hub(lambda: create_blocking_redis(unit_redis_url, block_ms=1000), store, block_ms=1000, ring_events=64)
        hub.start()
        try:
            for gid in gids:
                hub._counts.watch(gid, 1)
            await asyncio.sleep(0.1)  # the joins' publish
            joined = len(recorder.calls)
            start = time.monotonic()
            await asyncio.sleep(3 * PERIOD_S)
            calls = [c for c in recorder.calls[joined:] if c[0] >= start]
            total = await recorder.presence.count_viewers(gids[-1])
        finally:
            await hub.stop()
            await redis.aclose()
        return calls, total, start

    calls, total, start = asyncio.run(main())
    assert total == 1
    # Each period rewrites all 400, never more than a piece at once, and the pieces are spread over the period
    # (before: one call with all 400 at each period's start).
    assert calls and max(len(counts) for _, counts in calls) <= PIECE
    refreshed_at: dict[str, list[float]] = {}
    for t, counts in calls:
        for gid, n in counts.items():
            assert n == 1
            refreshed_at.setdefault(gid, []).append(t)
    assert set(refreshed_at) == set(gids)
    assert all(len(times) >= 2 for times in refreshed_at.values())  # three periods: rewritten in each
    longest = max(b - a for times in refreshed_at.values() for a, b in zip(times, times[1:], strict=False))
    assert longest < 1.5 * PERIOD_S
    gaps = [b - a for (a, _), (b, _) in zip(calls, calls[1:], strict=False)]
    assert max(gaps) < PERIOD_S / 2, f"pieces not spread over the period: gaps {gaps}"
