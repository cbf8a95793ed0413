"""Hostile and broken clients: huge or deep bodies, unicode edge cases, bogus resume points, 10,000 connections
opened and dropped, slow-loris senders and readers. None may get a 500, hang the server or slow other users."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from tests.conftest import Cluster
from tests.helpers import read_events, record_measurement, submit, text_of, wait_status

QUICK = "sim:reasoning_tokens=3 sim:content_tokens=3"


@pytest.fixture(scope="module")
def guarded(stack_env: dict[str, str], logs_dir: Path) -> Iterator[Cluster]:
    """An open-mode API whose clients must send headers and bodies within 2 s, with a small ring (8 events) so
    that a viewer that stops reading a long stream falls behind it."""
    env = {**stack_env, "REASONQ_REQUEST_READ_TIMEOUT_S": "2", "REASONQ_HUB_RING_EVENTS": "8"}
    c = Cluster(env, logs_dir, "guarded")
    c.start_api()
    c.add_worker()
    yield c
    c.stop()


@pytest.fixture(scope="module")
def gclient(guarded: Cluster) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=guarded.url, timeout=30) as c:
        yield c


def _messages(content: str) -> dict[str, object]:
    return {"messages": [{"role": "user", "content": content}]}


def test_body_over_the_limit_is_413_with_or_without_content_length(gclient: httpx.Client) -> None:
    big = orjson.dumps(_messages("x" * 1_100_000))
    r = gclient.post("/v1/generations", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert r.json()["error"]["message"] == "body: larger than 1048576 bytes"

    def chunked() -> Iterator[bytes]:
        for i in range(0, len(big), 65_536):
            yield big[i : i + 65_536]

    r = gclient.post("/v1/generations", content=chunked(), headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_message_count_and_total_characters_are_limited(gclient: httpx.Client) -> None:
    many = {"messages": [{"role": "user", "content": "x"}] * 257}
    r = gclient.post("/v1/generations", json=many)
    assert r.status_code == 422
    assert r.json()["error"]["message"] == "messages: 257 messages; at most 256"
    long = {"messages": [{"role": "user", "content": "y" * 200_001}, {"role": "user", "content": "z" * 200_000}]}
    r = gclient.post("/v1/generations", json=long)
    assert r.status_code == 422
    assert r.json()["error"]["message"] == "messages: 400001 characters in all; at most 400000"
    r = gclient.post("/v1/generations", json={**_messages("x"), "metadata": {f"k{i}": "v" for i in range(17)}})
    assert r.status_code == 422 and r.json()["error"]["message"].startswith("body metadata")


@pytest.mark.parametrize("depth", [33, 100_000])
def test_deeply_nested_json_is_422(gclient: httpx.Client, depth: int) -> None:
    raw = b'{"messages": [{"role": "user", "content": "x"}], "metadata": {"k": ' + b"[" * depth + b"]" * depth + b"}}"
    started = time.perf_counter()
    r = gclient.post("/v1/generations", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert r.json()["error"]["message"] == "body: JSON nested deeper than 32 levels"
    assert time.perf_counter() - started < 2


def test_brackets_inside_strings_are_not_nesting(gclient: httpx.Client) -> None:
    content = '[[[[{{{{"\\"[[' * 100 + QUICK
    gid = submit(gclient, content)
    assert wait_status(gclient, gid, {"completed"})["status"] == "completed"


def test_unicode_edge_cases_round_trip_through_redis_and_sse(gclient: httpx.Client) -> None:
    text = (
        "nul:\x00 end · rtl:\u202eabc\u202c · hebrew:\u05e9\u05dc\u05d5\u05dd"
        " · emoji:\U0001f600\U0001f469\u200d\U0001f52c · combining:e\u0301 · cjk:\u63a8\u7406"
        " · bom:\ufeff · nonchar:\uffff · max:\U0010ffff"
    )
    # The JSON body escapes the astral characters as surrogate pairs (valid UTF-16, decoded as one character).
    raw = orjson.dumps({**_messages(f"{text} sim:echo=1 sim:reasoning_tokens=2"), "metadata": {"note": text[:500]}})
    escaped = raw.replace("\U0001f600".encode(), b"\\ud83d\\ude00")
    r = gclient.post("/v1/generations", content=escaped, headers={"content-type": "application/json"})
    assert r.status_code == 202, r.text
    gid = r.json()["id"]
    events = read_events(gclient, gid)
    record = wait_status(gclient, gid, {"completed"})
    _, answer = text_of(events)
    assert answer == text == record["content"]
    assert record["metadata"] == {"note": text[:500]}


@pytest.mark.parametrize("lone", ["\\ud800", "\\udfff", "a\\ud83d"])
def test_lone_surrogates_are_refused_by_name(gclient: httpx.Client, lone: str) -> None:
    """A lone surrogate is not a Unicode character: it cannot be stored as UTF-8 or sent to a provider, so it is
    refused (naming the field) before anything is written, never mangled on the way."""
    raw = b'{"messages": [{"role": "user", "content": "ok"}], "metadata": {"k": "' + lone.encode() + b'"}}'
    r = gclient.post("/v1/generations", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert r.json()["error"]["message"].startswith("body metadata.k: contains a lone UTF-16 surrogate")


def test_resume_points_past_the_end_of_an_ended_generation_are_422(gclient: httpx.Client) -> None:
    gid = submit(gclient, QUICK)
    events = read_events(gclient, gid)
    last = events[-1].id
    for value in (str(last + 1), "999999999999"):
        r = gclient.get(f"/v1/generations/{gid}/events", headers={"Last-Event-ID": value})
        assert r.status_code == 422, r.text
        assert f"past this ended generation's last event ({last})" in r.json()["error"]["message"]
    r = gclient.get(f"/v1/generations/{gid}/events", params={"after": last + 5})
    assert r.status_code == 422
    # everything was seen: 204, on which EventSource stops (issue 12; it was an empty 200, reconnected for ever)
    r = gclient.get(f"/v1/generations/{gid}/events", headers={"Last-Event-ID": str(last)})
    assert r.status_code == 204 and r.content == b""


def test_a_far_future_resume_point_on_a_live_generation_ends_with_it(gclient: httpx.Client) -> None:
    """Past the end of a running generation the stream waits for events that may come, and closes (empty) when
    the generation ends: no hang, nothing from another generation."""
    gid = submit(gclient, "live sim:reasoning_tokens=20 sim:content_tokens=0 sim:tokens_per_s=40")
    started = time.monotonic()
    assert read_events(gclient, gid, last_event_id=10**15, timeout_s=30) == []
    assert wait_status(gclient, gid, {"completed"})["status"] == "completed"
    assert time.monotonic() - started < 20


@pytest.mark.parametrize(
    "path",
    [
        "/v1/generations/gen_AAAAAAAAAAAAAAAAAAAAAA%2F..%2F..",
        "/v1/generations/gen_AAAAAAAAAAAAAAAAAAAAA%00/events",
        "/v1/generations/" + "A" * 5000,
        "/v1/generations/*/events",
        "/v1/generations/gen_%E2%80%AEAAAAAAAAAAAAAAAAAAA",
        "/v1/batches/..%2Fbatch_AAAAAAAAAAAAAAAAAAAAAA",
        "/g/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "/static/..%2f..%2fpyproject.toml",
    ],
)
def test_ids_with_path_characters_never_escape(gclient: httpx.Client, path: str) -> None:
    r = gclient.get(path)
    assert r.status_code in (200, 404, 422), (path, r.status_code)
    if r.status_code == 200:  # only the static viewer page, which then finds no such generation
        assert path.startswith("/g/") and b"<!doctype html>" in r.content
    assert b"[project]" not in r.content and b"root:" not in r.content


def _fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_10000_connections_opened_and_dropped(guarded: Cluster, gclient: httpx.Client) -> None:
    """Ten thousand clients connect at once (some send half a request), then all vanish with a reset. The API
    keeps serving, and frees every socket."""
    assert guarded.api is not None
    pid = guarded.api.pid
    fds_before = _fd_count(pid)
    rss_before = _rss_mib(pid)
    n = 10_000
    linger = struct.pack("ii", 1, 0)  # close with RST, as a vanished client looks to the server

    async def storm() -> float:
        writers: list[asyncio.StreamWriter] = []
        gate = asyncio.Semaphore(500)
        port = int(guarded.url.rsplit(":", 1)[1])

        async def one(i: int) -> None:
            async with gate:
                _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 30)
            if i % 3 == 1:
                writer.write(b"GET /v1/generations HTTP/1.1\r\nHost: x\r\n")  # half a request
            elif i % 3 == 2:
                writer.write(b'POST /v1/generations HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"mes')
            writers.append(writer)

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        opened_s = time.perf_counter() - started
        assert len(writers) == n
        # While all 10,000 are open, the API still answers.
        async with httpx.AsyncClient(base_url=guarded.url, timeout=10) as ac:
            t0 = time.perf_counter()
            assert (await ac.get("/healthz")).status_code == 200
            record_measurement("health_with_10k_open_connections_s", time.perf_counter() - t0, "s")
        for writer in writers:
            writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            writer.transport.abort()
        return opened_s

    opened_s = asyncio.run(storm())
    record_measurement("open_10k_connections_s", opened_s, "s")
    deadline = time.monotonic() + 20
    while _fd_count(pid) > fds_before + 20 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _fd_count(pid) <= fds_before + 20, "sockets of dropped clients were not freed"
    gid = submit(gclient, f"after the storm {QUICK}")
    assert text_of(read_events(gclient, gid))[1]
    record_measurement("api_rss_growth_after_10k_connections_mib", _rss_mib(pid) - rss_before, "MiB")
    assert _rss_mib(pid) - rss_before < 200


def test_slow_loris_headers_are_cut_off(guarded: Cluster, gclient: httpx.Client) -> None:
    port = int(guarded.url.rsplit(":", 1)[1])
    lorises = []
    for _ in range(50):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"GET /v1/generations HTTP/1.1\r\nHost: x\r\n")
        lorises.append(s)
    started = time.monotonic()
    try:
        # Others are served normally meanwhile.
        t0 = time.perf_counter()
        assert gclient.get("/healthz").status_code == 200
        assert time.perf_counter() - t0 < 0.5
        for s in lorises:  # one more header byte every 0.5 s: never enough
            s.settimeout(5)
            closed = False
            while time.monotonic() - started < 5:
                try:
                    s.sendall(b"X")
                    if s.recv(1, socket.MSG_DONTWAIT) == b"":
                        closed = True
                        break
                except BlockingIOError:
                    time.sleep(0.05)
                except OSError:
                    closed = True
                    break
            assert closed, "a connection still sending its headers after the deadline was kept open"
        assert time.monotonic() - started < 4.5
    finally:
        for s in lorises:
            s.close()


def test_slow_body_gets_408(guarded: Cluster) -> None:
    port = int(guarded.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"POST /v1/generations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n")
        s.sendall(b'Content-Length: 100\r\n\r\n{"messages"')
        started = time.monotonic()
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = s.recv(4096)
            if not chunk:
                break
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 408"), answer[:100]
    assert 1.5 < time.monotonic() - started < 4


def _catchups(client: httpx.Client) -> float:
    """The API's ``reasonq_slow_viewer_catchups_total``."""
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("reasonq_slow_viewer_catchups_total "):
            return float(line.split()[1])
    raise AssertionError("no reasonq_slow_viewer_catchups_total in /metrics")


def _drain(sock: socket.socket, timeout_s: float) -> int:
    """Read a raw SSE response to its ``done`` event; the bytes read."""
    sock.settimeout(timeout_s)
    total, tail = 0, b""
    while True:
        chunk = sock.recv(1 << 20)
        if not chunk:
            return total
        total += len(chunk)
        tail = (tail + chunk)[-4096:]
        if b"event: done" in tail and tail.endswith(b"\n\n"):
            return total


def test_slow_readers_do_not_hold_back_other_viewers(guarded: Cluster, gclient: httpx.Client) -> None:
    """Fifty viewers that stop reading a fast 10 MB stream: the server neither buffers the stream for each of
    them nor delays a normal viewer; once they read again they fall behind the ring, catch up from Redis and get
    every byte. (Issue 18: the test read ~120 KB per viewer, far under the 100 MiB bound it claimed to check.)"""
    assert guarded.api is not None
    pid = guarded.api.pid
    port = int(guarded.url.rsplit(":", 1)[1])
    # The model pauses 1 s after its first token, so the 50 readers are live (attached to the hub) before the
    # flood: they then fall behind the ring, rather than replaying from Redis from the start (which the catch-up
    # counter does not count: it read 0 in the runs where they joined late).
    prompt = (
        "flood sim:reasoning_tokens=10000 sim:content_tokens=10000 sim:token_chars=500 sim:tokens_per_s=20000"
        " sim:stall_after=0 sim:stall_s=1"
    )
    gid = submit(gclient, prompt)
    readers = []
    for _ in range(50):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", port))
        s.sendall(f"GET /v1/generations/{gid}/events HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        readers.append(s)
    rss_before = _rss_mib(pid)
    try:
        started = time.perf_counter()
        events = read_events(gclient, gid, timeout_s=60)
        elapsed_s = time.perf_counter() - started
        ended_at = time.time()
        rss_growth_mib = _rss_mib(pid) - rss_before
        record = wait_status(gclient, gid, {"completed"})
        assert text_of(events) == (record["reasoning"], record["content"])
        streamed_mib = (len(record["reasoning"]) + len(record["content"])) / 2**20
        assert streamed_mib >= 9.5  # the stream is 10 MB: 50 unread copies would be 500 MB
        behind_s = ended_at - record["finished_at"]
        record_measurement("normal_viewer_with_50_stalled_readers_s", elapsed_s, "s")
        record_measurement("normal_viewer_done_after_model_end_with_50_stalled_readers_s", behind_s, "s")
        record_measurement("api_rss_growth_with_50_stalled_10mb_readers_mib", rss_growth_mib, "MiB")
        # The normal viewer ends with the generation, whatever the stalled ones do: it got the last event within a
        # second of the model's end (the same clock: API, worker and test share this machine).
        assert behind_s < 1.0, (behind_s, elapsed_s)
        # 50 unread copies would be 500 MB; the bound is what the README promises. Before the allocator's mmap
        # threshold was pinned (shared/tuning.py), freed large frames stayed in the heap: 292-382 MiB here.
        assert rss_growth_mib < 100, rss_growth_mib
        catchups_before = _catchups(gclient)
        # Read again: each reader is far behind the ring, re-reads from Redis and gets the whole stream.
        for s in readers[:5]:
            assert _drain(s, timeout_s=30) > streamed_mib * 2**20
        # They were far behind the ring of 8 events: each re-read from Redis.
        assert _catchups(gclient) >= catchups_before + 5
    finally:
        for s in readers:
            s.close()
    deadline = time.monotonic() + 15
    while gclient.get(f"/v1/generations/{gid}/viewers").json()["viewers"] > 0 and time.monotonic() < deadline:
        time.sleep(0.3)
    assert gclient.get(f"/v1/generations/{gid}/viewers").json()["viewers"] == 0
