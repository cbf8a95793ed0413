"""Recent generations and live viewer counts."""

from __future__ import annotations

import threading
import time

import httpx

from tests.helpers import submit, wait_status


def test_recent_generations_newest_first(client: httpx.Client) -> None:
    first = submit(client, "listed one sim:reasoning_tokens=1 sim:content_tokens=1")
    second = submit(client, "listed two sim:reasoning_tokens=1 sim:content_tokens=1")
    wait_status(client, second, {"completed"})
    rows = client.get("/v1/generations", params={"limit": 100}).json()["data"]
    ids = [r["id"] for r in rows]
    assert ids.index(second) < ids.index(first)
    row = rows[ids.index(second)]
    assert row["preview"].startswith("listed two") and row["model"] == "reasonq-sim"
    assert client.get("/v1/generations", params={"limit": 0}).status_code == 422


def test_viewer_counts_follow_open_streams(client: httpx.Client, api_url: str) -> None:
    """A join or a leave shows in the count within a second (it was published only every 2 s)."""
    gid = submit(client, "watched sim:reasoning_tokens=300 sim:content_tokens=10 sim:tokens_per_s=40")
    assert client.get(f"/v1/generations/{gid}/viewers").json() == {"id": gid, "viewers": 0}

    counted_three = threading.Event()
    opened = threading.Barrier(4)

    def watch() -> None:  # stay connected until the count has been seen
        with httpx.Client(base_url=api_url, timeout=30) as c, c.stream("GET", f"/v1/generations/{gid}/events") as r:
            lines = r.iter_lines()
            next(lines)
            opened.wait(10)
            for _ in lines:
                if counted_three.is_set():
                    break

    def seconds_until(n: int) -> float:
        start = time.monotonic()
        while time.monotonic() - start < 8 and client.get(f"/v1/generations/{gid}/viewers").json()["viewers"] != n:
            time.sleep(0.05)
        return time.monotonic() - start

    viewers = [threading.Thread(target=watch) for _ in range(3)]
    for v in viewers:
        v.start()
    opened.wait(10)
    assert seconds_until(3) < 1.0
    counted_three.set()
    for v in viewers:
        v.join(30)
    assert seconds_until(0) < 1.0
    assert client.get("/v1/generations/gen_AAAAAAAAAAAAAAAAAAAAAA/viewers").status_code == 404
