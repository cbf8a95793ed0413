"""``python -m bench.producer REDIS_URL N RATE SECONDS OUT``: N live generations written straight to Redis.

For the many-streams scenario (``bench/manystreams.py``): a worker process cannot hold 10,000 model streams on this
machine, and what is measured is the API's hub, not the model. So this process does what workers do to Redis, with
the same store code and scripts: it creates N queued generations (owner ``anonymous``, open mode), claims each,
writes ``OUT.ids`` (one id per line) and waits for ``OUT.go``; then each generation gets one ``content`` event every
``1 / RATE`` s (phases spread evenly) for SECONDS, and a ``done``. ``OUT`` gets, per generation, each event's id and
the wall time just before its write was sent and when its reply came: ``{"gen_…": [[seq, t_sent, t_acked], …]}``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

from reasonq.api.submission import new_generation_id
from reasonq.shared.batching import ScriptBatcher
from reasonq.shared.events import CONTENT, DoneEvent, StatusEvent, delta_args, event_args
from reasonq.shared.redis import create_redis
from reasonq.shared.schemas import GenerationCreate
from reasonq.shared.store import GenerationStore
from reasonq.shared.store.streams import Fence

CREATE_CHUNK = 500


async def main(url: str, n: int, rate: float, seconds: float, out: Path) -> None:
    redis = create_redis(url, max_connections=16)
    store = GenerationStore(redis, ScriptBatcher(redis))
    request = GenerationCreate.model_validate({"messages": [{"role": "user", "content": "many streams"}]})
    ids = [new_generation_id() for _ in range(n)]
    for i in range(0, n, CREATE_CHUNK):
        chunk = [(gid, request) for gid in ids[i : i + CREATE_CHUNK]]
        await store.records.create_many(chunk, time.time(), "interactive", "anonymous")
    running = event_args(StatusEvent(status="running", attempt=1))[:2]
    claims = await asyncio.gather(*(store.leases.claim(gid, 0, 3_600_000, [running]) for gid in ids))
    fences = {gid: Fence(1, c.token) for gid, c in zip(ids, claims, strict=True)}
    seqs = {gid: c.seq for gid, c in zip(ids, claims, strict=True)}
    Path(f"{out}.ids").write_text("\n".join(ids))
    go = Path(f"{out}.go")
    while not go.exists():
        await asyncio.sleep(0.05)
    written: dict[str, list[tuple[int, float, float]]] = {gid: [] for gid in ids}
    period_s = 1 / rate
    start = time.monotonic() + 0.1

    async def one(i: int, gid: str) -> None:
        due = start + period_s * i / n
        while due < start + seconds:
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            t = time.time()
            seq = await store.streams.append(gid, fences[gid], seqs[gid], [delta_args(CONTENT, f"t{t:.3f} ")])
            if seq > 0:
                written[gid].append((seq, t, time.time()))
                seqs[gid] = seq
            due += period_s
        done = event_args(DoneEvent(status="completed", finish_reason="stop"))
        await store.streams.finish(gid, fences[gid], seqs[gid], 600, ("completed", "stop", None, None), [done])

    await asyncio.gather(*(one(i, gid) for i, gid in enumerate(ids)))
    out.write_text(json.dumps(written))
    await redis.aclose()


if __name__ == "__main__":
    import uvloop

    _, url, n, rate, seconds, out = sys.argv
    uvloop.run(main(url, int(n), float(rate), float(seconds), Path(out)))
