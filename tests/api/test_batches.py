"""Batches in OpenAI's Batch format: validation before anything is written, results, cancel, idempotency."""

from __future__ import annotations

import secrets
import time
from typing import Any

import httpx
import orjson

from reasonq.processes import wait_until
from reasonq.shared import keys
from tests.helpers import expected_text


def _queued(data: Any) -> int:
    """Generations in the queued index, over every shard."""
    return sum(int(data.zcard(keys.queued_key(shard))) for shard in range(keys.SHARDS))


def _line(custom_id: str, content: str, **body: Any) -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": "reasonq-sim", "messages": [{"role": "user", "content": content}], **body},
    }


def _jsonl(lines: list[dict[str, Any]]) -> bytes:
    return b"\n".join(orjson.dumps(line) for line in lines) + b"\n"


def _wait_batch(client: httpx.Client, batch_id: str, timeout_s: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        batch: dict[str, Any] = client.get(f"/v1/batches/{batch_id}").json()
        if batch["status"] in ("completed", "cancelled"):
            return batch
        time.sleep(0.2)
    raise AssertionError(f"batch {batch_id} did not end")


def test_a_batch_runs_every_line_once(client: httpx.Client) -> None:
    tag = secrets.token_hex(4)
    lines = [_line(f"ok-{i}", f"batch {tag} {i} sim:reasoning_tokens=3 sim:content_tokens=3") for i in range(22)]
    lines += [_line(f"bad-{i}", f"batch {tag} bad {i} sim:status=400") for i in range(3)]
    r = client.post("/v1/batches", content=_jsonl(lines), headers={"content-type": "application/jsonl"})
    assert r.status_code == 200, r.text
    batch = r.json()
    assert batch["object"] == "batch" and batch["request_counts"]["total"] == 25
    done = _wait_batch(client, batch["id"])
    assert done["status"] == "completed" and done["request_counts"] == {"total": 25, "completed": 22, "failed": 3}
    results = [orjson.loads(x) for x in client.get(f"/v1/batches/{batch['id']}/results").content.splitlines()]
    assert sorted(r["custom_id"] for r in results) == sorted(line["custom_id"] for line in lines)
    by_id = {r["custom_id"]: r for r in results}
    ok = by_id["ok-5"]["response"]
    assert ok["status_code"] == 200
    assert (
        ok["body"]["choices"][0]["message"]["content"]
        == expected_text(f"batch {tag} 5 sim:reasoning_tokens=3 sim:content_tokens=3")[1]
    )
    assert by_id["bad-1"]["response"] is None and "HTTP 400" in by_id["bad-1"]["error"]["message"]


def test_a_bad_line_rejects_the_whole_batch(client: httpx.Client) -> None:
    tag = secrets.token_hex(4)
    lines = [_line("a", f"reject {tag}"), _line("b", f"reject {tag}"), {"custom_id": "c", "body": {"messages": []}}]
    r = client.post("/v1/batches", content=_jsonl(lines), headers={"content-type": "application/jsonl"})
    assert r.status_code == 422 and r.json()["error"]["message"].startswith("line 3: body.messages")
    dup = client.post("/v1/batches", json=[_line("x", "a"), _line("x", "b")])
    assert dup.status_code == 422 and "line 2" in dup.json()["error"]["message"]
    previews = [row["preview"] for row in client.get("/v1/generations", params={"limit": 100}).json()["data"]]
    assert not any(tag in p for p in previews)  # nothing half-submitted


def test_cancel_and_idempotency_and_progress_events(client: httpx.Client, sim_url: str) -> None:
    tag = secrets.token_hex(4)
    prompts = [f"slow {tag} {i} sim:reasoning_tokens=400 sim:tokens_per_s=20" for i in range(4)]
    lines = [_line(f"slow-{i}", prompt) for i, prompt in enumerate(prompts)]
    key = secrets.token_hex(8)
    first = client.post("/v1/batches", json=lines, headers={"Idempotency-Key": key}).json()
    again = client.post("/v1/batches", json=lines, headers={"Idempotency-Key": key}).json()
    assert first["id"] == again["id"]

    def all_running() -> bool:
        rows = client.get("/v1/generations", params={"limit": 100}).json()["data"]
        return sum(1 for r in rows if f"slow {tag} " in r["preview"] and r["status"] == "running") == 4

    wait_until(all_running, timeout_s=30, what="every line running")
    cancelled = client.post(f"/v1/batches/{first['id']}/cancel").json()
    assert cancelled["status"] in ("cancelling", "cancelled")
    done = _wait_batch(client, first["id"])
    assert done["status"] == "cancelled" and done["request_counts"]["failed"] == 4
    events = client.get(f"/v1/batches/{first['id']}/events").text
    assert "event: done" in events and '"status":"cancelled"' in events

    # issue 18: every cancelled line closed its upstream stream (the simulator saw each client go away)
    def upstreams_closed() -> bool:
        disconnects = httpx.get(f"{sim_url}/sim/stats").json()["disconnects"]
        return all(any(d.startswith(prompt[:40]) for d in disconnects) for prompt in prompts)

    wait_until(upstreams_closed, timeout_s=10, what="every cancelled line's upstream closed")


def test_progress_events_rise_while_the_batch_runs(client: httpx.Client) -> None:
    """Issue 18: the progress stream was only read after the batch ended (one `done`, no `progress`)."""
    tag = secrets.token_hex(4)
    lines = [
        _line(f"p{i}", f"progress {tag} {i} sim:reasoning_tokens={8 * (i + 1)} sim:tokens_per_s=20") for i in range(5)
    ]
    batch = client.post("/v1/batches", json=lines).json()
    seen: list[tuple[str, int]] = []
    with client.stream("GET", f"/v1/batches/{batch['id']}/events", timeout=60) as response:
        event = ""
        for line in response.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                seen.append((event, orjson.loads(line[6:])["request_counts"]["completed"]))
    kinds = [k for k, _ in seen]
    assert kinds[-1] == "done" and set(kinds[:-1]) == {"progress"} and len(kinds) >= 3
    completed = [c for _, c in seen]
    assert completed == sorted(completed) and completed[0] < 5 and completed[-1] == 5  # rising, then all done
    assert len(set(completed)) >= 3  # seen part way, more than once


def test_issue18_a_batch_the_broker_refuses_leaves_nothing_and_its_retry_creates_one(
    cluster: Any, redis_server: Any, tmp_path: Any
) -> None:
    """Issue 18: batches had a second creation path; when the broker failed, kombu's error became a 500, the
    batch and its generations stayed queued (the sweep later ran them), and the client's retry, its
    Idempotency-Key released, created a second batch. Batches now go through the one submitter."""
    import redis as redis_sync

    from reasonq.processes import RedisServer, free_port

    broker_port = free_port()
    db_url = redis_server.url.removesuffix("/0") + "/2"
    data = redis_sync.Redis.from_url(db_url)
    data.flushdb()
    c = cluster({"REASONQ_REDIS_URL": db_url, "REASONQ_BROKER_URL": f"redis://127.0.0.1:{broker_port}/0"})
    c.start_api()
    body = _jsonl([_line(f"l{i}", f"broker down {i} sim:reasoning_tokens=2") for i in range(20)])
    headers = {"content-type": "application/jsonl", "Idempotency-Key": secrets.token_hex(8)}
    with httpx.Client(base_url=c.url, timeout=60) as client:
        refused = client.post("/v1/batches", content=body, headers=headers)
        assert refused.status_code == 503, refused.text
        assert "task queue is unavailable" in refused.json()["error"]["message"]
        assert refused.headers["retry-after"] == "1"
        left = [k.decode() for k in data.scan_iter("rq:*") if not k.startswith((b"rq:key:", b"rq:share"))]
        assert [k for k in left if (":gen:" in k or k.startswith("rq:batch:"))] == []
        assert _queued(data) == 0
        broker = RedisServer(broker_port, tmp_path / "broker", persist=False).start()
        try:
            created = client.post("/v1/batches", content=body, headers=headers)
            again = client.post("/v1/batches", content=body, headers=headers)
        finally:
            broker.stop()
    assert created.status_code == again.status_code == 200, created.text
    assert created.json()["id"] == again.json()["id"]
    assert len([k for k in data.scan_iter("rq:batch:*") if not k.endswith(b":items")]) == 1  # one batch
    assert _queued(data) == 20  # its 20 generations, queued once (no worker serves this broker)


def test_issue12_cancelling_an_ended_batch_changes_nothing_and_its_times_are_real(client: httpx.Client) -> None:
    """Before: cancel relabelled an ended batch ``cancelled`` and rewrote its times, and ``completed_at`` was the
    time of the first read that noticed the end. After: an ended batch is unchanged by cancel, and
    ``completed_at`` is when its last line ended."""
    tag = secrets.token_hex(4)
    lines = [_line(f"l{i}", f"ended batch {tag} {i} sim:reasoning_tokens=2 sim:content_tokens=2") for i in range(3)]
    r = client.post("/v1/batches", content=_jsonl(lines), headers={"content-type": "application/jsonl"})
    batch_id = r.json()["id"]

    def results() -> list[dict[str, Any]]:  # read without touching the batch object (a read labels it)
        return [orjson.loads(x) for x in client.get(f"/v1/batches/{batch_id}/results").content.splitlines()]

    wait_until(lambda: len(results()) == 3, timeout_s=60, what="every line of the batch")
    gids = [line["response"]["body"]["id"] for line in results()]
    last_end = max(client.get(f"/v1/generations/{gid}").json()["finished_at"] for gid in gids)
    time.sleep(1.0)  # the first read of the batch comes a second after its end (a duration, not a wait)
    cancelled = client.post(f"/v1/batches/{batch_id}/cancel").json()
    assert cancelled["status"] == "completed" and cancelled["cancelled_at"] is None
    assert cancelled["completed_at"] == int(last_end), (cancelled["completed_at"], last_end)  # integer seconds
    again = client.post(f"/v1/batches/{batch_id}/cancel").json()
    assert again == cancelled == client.get(f"/v1/batches/{batch_id}").json()
