"""The shards' activity index (issue 14): every write to a stream the hub follows notes that stream's key there, in
the same script, so a hub watching many streams can read only those that moved and miss none."""

from __future__ import annotations

import re
import time
from importlib import resources
from typing import Any

from reasonq.shared import keys
from reasonq.shared.events import CONTENT, DoneEvent, StatusEvent, delta_args, encode_event, event_args
from reasonq.shared.schemas import GenerationCreate, UserMessage
from reasonq.shared.store import Fence, GenerationStore
from reasonq.shared.store.durable import StreamConfig

_REQUEST = GenerationCreate(messages=[UserMessage(role="user", content="hi")])
_ACTIVITY_XADD = re.compile(r"XADD', KEYS\[(\d)\], 'MAXLEN', '~', (\d+), '\*', 'k', KEYS\[2\]")


async def _noted(store: GenerationStore, shard: int, since: str) -> list[bytes]:
    entries = await store.redis.xrange(keys.activity_key(shard), min=f"({since}", max="+")
    return [fields[b"k"] for _, fields in entries]


async def _last(store: GenerationStore, shard: int) -> str:
    last = await store.redis.xrevrange(keys.activity_key(shard), count=1)
    return last[0][0].decode() if last else "0-0"


def test_every_write_of_a_generations_events_is_noted_in_its_shards_index(with_store: Any) -> None:
    async def body(store: GenerationStore) -> None:
        gid = f"gen_act_{time.monotonic_ns()}"
        shard, events = keys.shard_of(gid), keys.events_key(gid).encode()
        await store.records.create(gid, _REQUEST, time.time(), "q", "anonymous")
        mark = await _last(store, shard)
        assert await store.capacity.note_waiting(gid, "provider busy", first=True)
        assert await _noted(store, shard, mark) == [events], "wait"
        mark = await _last(store, shard)
        claim = await store.leases.claim(gid, 0, 60_000, [encode_event(StatusEvent(status="running", attempt=1))])
        assert await _noted(store, shard, mark) == [events], "claim"
        fence, mark = Fence(1, claim.token), await _last(store, shard)
        seq = await store.streams.append(gid, fence, claim.seq, [delta_args(CONTENT, "a")])
        assert await _noted(store, shard, mark) == [events], "append"
        mark = await _last(store, shard)
        seq = await store.streams.restore(gid, fence, seq, 60_000, ("", "a"), [("content", b'{"delta":"a"}')])
        assert await _noted(store, shard, mark) == [events], "restore"
        mark = await _last(store, shard)
        done = event_args(DoneEvent(status="completed", finish_reason="stop"))
        await store.streams.finish(gid, fence, seq, 60, ("completed", "stop", None, None), [done])
        assert await _noted(store, shard, mark) == [events], "finish"

        other = f"gen_act_c_{time.monotonic_ns()}"
        await store.records.create(other, _REQUEST, time.time(), "q", "anonymous")
        shard, mark = keys.shard_of(other), await _last(store, keys.shard_of(other))
        outcome, _ = await store.records.cancel(other, 60)
        assert outcome == "cancelled"
        assert await _noted(store, shard, mark) == [keys.events_key(other).encode()], "cancel"

    with_store(body)


def test_every_write_of_a_durable_streams_data_is_noted_in_its_shards_index(with_store: Any) -> None:
    async def body(store: GenerationStore) -> None:
        stream_id = keys.durable_stream_id("anonymous", f"act/{time.monotonic_ns()}")
        shard, data = keys.shard_of(stream_id), keys.durable_data_key(stream_id).encode()
        mark = await _last(store, shard)
        config = StreamConfig(content_type="text/plain", ttl_s=60)
        outcome, _, _ = await store.durable.create(stream_id, config, owner="anonymous", path="p", entries=[(1, b"x")])
        assert outcome == "created"
        assert await _noted(store, shard, mark) == [data], "create"
        mark = await _last(store, shard)
        result = await store.durable.append(stream_id, [b"y"], content_type="text/plain", close=True)
        assert result.outcome == "appended"
        assert await _noted(store, shard, mark) == [data], "append"
        # the stream's TTL slides over its own keys only, never the shard's index
        assert await store.redis.ttl(keys.activity_key(shard)) == -1

    with_store(body)


def test_every_script_that_appends_to_a_followed_stream_notes_it_capped_as_the_keys_module_says() -> None:
    lua = resources.files("reasonq.shared").joinpath("lua")
    writers = {}
    for script in lua.iterdir():
        text = script.read_text()
        if re.search(r"XADD', KEYS\[2\]", text):
            writers[script.name] = _ACTIVITY_XADD.findall(text)
    assert set(writers) == {
        "append.lua",
        "finish.lua",
        "cancel.lua",
        "claim.lua",
        "restore.lua",
        "wait.lua",
        "ds_append.lua",
        "ds_create.lua",
    }
    gid, sid = "gen_x", "s" * 32
    where = {
        "append.lua": keys.append_keys(gid),
        "wait.lua": keys.wait_keys(gid),
        "ds_append.lua": keys.durable_script_keys(sid),
        "ds_create.lua": keys.durable_script_keys(sid),
    }
    for name, found in writers.items():
        assert len(found) == 1, name
        index, maxlen = found[0]
        assert int(maxlen) == keys.ACTIVITY_MAXLEN, name
        script_keys = where.get(name, keys.script_keys(gid))
        assert int(index) == len(script_keys), name  # the last key each caller passes
        assert script_keys[-1].endswith(":activity"), name
