"""Issue 17: reasonq as a Durable Streams server, beyond the protocol's own suite (tests/e2e/
test_durable_conformance.py): the protocol's Python client (``durable-streams`` on PyPI, unchanged) follows a live
generation and resumes it after a cut exactly once per event; streams carry binary bytes through the API's
request limits; one key cannot see another's streams."""

from __future__ import annotations

import signal
import time
from typing import Any

import httpx
import pytest
from durable_streams import DurableStream, stream

from tests.conftest import ALICE, BOB, Cluster
from tests.helpers import read_events, submit, wait_status

SLOW = "sim:reasoning_tokens=20 sim:content_tokens=40 sim:tokens_per_s=40"


def _follow(url: str, live: str, offset: str, stop_after: int | None) -> tuple[list[dict[str, Any]], str]:
    """Messages read with the protocol's client from ``offset`` (all, or the first ``stop_after``), and the offset
    to resume after the last one."""
    got: list[dict[str, Any]] = []
    resume = offset
    with stream(url, offset=offset, live=live, timeout=30) as res:  # type: ignore[arg-type]
        for event in res.iter_events(mode="json_batches"):
            for message in event.data:
                got.append(message)
            resume = event.next_offset
            if got and got[-1]["type"] == "done":
                break
            if stop_after is not None and len(got) >= stop_after:
                break
    return got, resume


@pytest.mark.parametrize("live", ["sse", "long-poll"])
def test_the_python_client_follows_a_live_generation_and_resumes_it_exactly_once(
    client: httpx.Client, live: str
) -> None:
    """A viewer on the protocol's client reads a running generation, drops after 5 messages, and resumes from the
    offset it had: it gets every event once, in order, the same as the native event stream, and the stream ends
    (closed) after ``done``."""
    gid = submit(client, f"durable {live} {SLOW}")
    url = f"{client.base_url}/v1/generations/{gid}/stream"
    first, offset = _follow(url, live, "-1", stop_after=5)  # the protocol needs an offset with live
    assert wait_status(client, gid, {"running", "completed"})
    rest, _ = _follow(url, live, offset, stop_after=None)
    seen = first + rest
    native = read_events(client, gid)
    assert [(m["id"], m["type"]) for m in seen] == [(e.id, e.type) for e in native]
    assert [m["data"] for m in seen] == [e.data for e in native]
    assert len(first) >= 5 and rest and seen[-1]["type"] == "done"
    head = client.head(f"/v1/generations/{gid}/stream")
    assert head.headers["stream-closed"] == "true"


def test_a_binary_stream_passes_the_request_limits_byte_for_byte(client: httpx.Client) -> None:
    """Before: the API's request middleware answered every non-UTF-8 body 422 (JSON routes' rule), so no binary
    stream could be written. After: Durable Streams bodies are only size-checked there."""
    data = bytes(range(256)) * 4
    url = f"{client.base_url}/v1/stream/binary-{id(data)}"
    with DurableStream.create(url, content_type="application/octet-stream") as handle:
        handle.append(data)
        handle.append(b"\xff\xfe")
        with handle.stream(live=False) as res:
            assert res.read_bytes() == data + b"\xff\xfe"
    too_big = client.post(
        f"/v1/stream/binary-{id(data)}",
        content=b"x" * (16 * 1024 * 1024 + 1),
        headers={"content-type": "application/octet-stream"},
    )
    assert too_big.status_code == 413


def test_a_json_stream_keeps_each_message_exact(client: httpx.Client) -> None:
    """JSON mode stores each message's own text (a top-level array is flattened one level): numbers Python cannot
    convert and nesting survive, and invalid JSON or an empty array is a 400 that appends nothing."""
    path = f"/v1/stream/json-exact-{id(client)}"
    assert client.put(path, headers={"content-type": "application/json"}).status_code == 201
    big = "1" + "0" * 5000
    body = f'[{{"n": {big}}}, [1, [2, "]"]], "x,y"]'
    assert client.post(path, content=body, headers={"content-type": "application/json"}).status_code == 204
    for bad in ("[]", "{", "NaN", "[1,]"):
        r = client.post(path, content=bad, headers={"content-type": "application/json"})
        assert r.status_code == 400, (bad, r.text)
    r = client.get(path)
    assert r.text == f'[{{"n": {big}}},[1, [2, "]"]],"x,y"]'
    assert r.headers["stream-next-offset"] == "0000000000000001_0000000000000000"


def test_streams_belong_to_the_key_that_created_them(keyed: Cluster) -> None:
    """With keys configured, each key has its own streams: another key's path is a 404 (and its own stream at the
    same path is a different one), and no key is a 401."""
    alice = {"authorization": f"Bearer {ALICE}"}
    bob = {"authorization": f"Bearer {BOB}"}
    text = {"content-type": "text/plain"}
    path = f"/v1/stream/shared-name-{time.time_ns()}"
    with httpx.Client(base_url=keyed.url, timeout=10) as http:
        assert http.put(path, content=b"alice's", headers={**alice, **text}).status_code == 201
        assert http.get(path, headers=bob).status_code == 404
        assert http.head(path, headers=bob).status_code == 404
        assert http.post(path, content=b"x", headers={**bob, **text}).status_code == 404
        assert http.delete(path, headers=bob).status_code == 404
        assert http.get(path).status_code == 401
        assert http.put(path, content=b"bob's", headers={**bob, **text}).status_code == 201
        assert http.get(path, headers=alice).text == "alice's"
        assert http.get(path, headers=bob).text == "bob's"


def test_a_generation_stream_is_read_only_and_keyed_like_the_generation(client: httpx.Client) -> None:
    """The generation's durable stream answers reads only; an unknown generation is a 404."""
    gid = submit(client, "read only sim:reasoning_tokens=2 sim:content_tokens=2")
    wait_status(client, gid, {"completed"})
    r = client.get(f"/v1/generations/{gid}/stream", params={"offset": "-1"})
    assert r.status_code == 200 and r.headers["stream-closed"] == "true"
    assert r.json()[-1]["type"] == "done"
    assert client.post(f"/v1/generations/{gid}/stream", content=b"[1]").status_code == 405
    assert client.get("/v1/generations/nope/stream").status_code == 404


def test_an_idle_sse_read_ends_on_time_and_a_shutdown_ends_reads_cleanly(cluster: Cluster) -> None:
    """Before: an SSE read of a stream nobody wrote to outlived ``REASONQ_DS_SSE_MAX_S`` (the deadline was only
    looked at when data came), and stopping the API tore open reads with a traceback (``HubUnavailable``). Now
    the idle read ends at its deadline, and a read open at shutdown ends as a complete response (the client
    resumes from its offset elsewhere)."""
    c = cluster({"REASONQ_DS_SSE_MAX_S": "1"})
    url = c.start_api()
    path = f"/v1/stream/idle-{time.time_ns()}"
    with httpx.Client(base_url=url, timeout=10) as http:
        assert http.put(path, headers={"content-type": "text/plain"}).status_code == 201
        started = time.monotonic()
        with http.stream("GET", path, params={"offset": "-1", "live": "sse"}) as r:
            body = b"".join(r.iter_bytes())
        assert time.monotonic() - started < 4 and b"event: control" in body
    c2 = cluster({"REASONQ_DS_SSE_MAX_S": "60"})
    url2 = c2.start_api()
    with httpx.Client(base_url=url2, timeout=20) as http:  # the same Redis: the stream is there
        with http.stream("GET", path, params={"offset": "-1", "live": "sse"}) as r:
            chunks = r.iter_bytes()
            next(chunks)  # the read is open
            assert c2.api is not None
            c2.api.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
            rest = b"".join(chunks)  # ends as a whole response: no RemoteProtocolError
        assert b"event: data" not in rest
    c2.api.proc.wait(20)  # type: ignore[union-attr]
    log = (c2.logs_dir / f"api-{c2.name}.log").read_text()
    assert "Exception in ASGI application" not in log, log[-3000:]
