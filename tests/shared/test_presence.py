"""Viewer counts across API processes, written by one script call per shard (issue 14: 20,000 pipelined commands
every 2 s for a process watching 10,000 generations)."""

from __future__ import annotations

from typing import Any

from reasonq.shared import keys
from reasonq.shared.store import GenerationStore
from reasonq.shared.store import presence as presence_module


def test_counts_of_many_generations_over_every_shard_add_up_across_processes(with_store: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr(presence_module, "VIEWERS_CHUNK", 7)  # several calls per shard, too

    async def body(store: GenerationStore) -> None:
        gids = [f"gen_presence_{i}" for i in range(200)]
        assert len({keys.shard_of(g) for g in gids}) == keys.SHARDS
        await store.presence.publish_viewers({g: i % 3 + 1 for i, g in enumerate(gids)}, "api-a")
        await store.presence.publish_viewers({gids[0]: 5, gids[1]: 0}, "api-b")
        assert await store.presence.count_viewers(gids[0]) == 1 + 5
        assert await store.presence.count_viewers(gids[1]) == 2
        assert [await store.presence.count_viewers(g) for g in gids[2:50]] == [i % 3 + 1 for i in range(2, 50)]
        await store.presence.publish_viewers(dict.fromkeys(gids, 0), "api-a")
        assert await store.presence.count_viewers(gids[0]) == 5
        assert await store.presence.count_viewers(gids[7]) == 0
        ttl_ms = await store.redis.pttl(keys.viewers_key(gids[0]))
        assert 0 < ttl_ms <= keys.VIEWERS_TTL_MS

    with_store(body)
