"""Issue 12, part 5: viewers and clients at the edges of a stream: reconnect timing, the end of an ended
generation, and an API that shuts down mid-stream."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import openai
import pytest

from tests.helpers import read_events, submit, wait_record, wait_status

QUICK = "sim:reasoning_tokens=3 sim:content_tokens=3"


def test_the_event_stream_starts_with_a_one_second_retry(client: httpx.Client) -> None:
    """Before: no ``retry:`` field, so a browser's EventSource waited its default 3 s to reconnect (3.09 s measured
    across an API restart). After: the first bytes of every event stream set it to 1 s."""
    gid = submit(client, f"retry line {QUICK}")
    with client.stream("GET", f"/v1/generations/{gid}/events") as r:
        first = next(r.iter_raw())
    assert first.startswith(b"retry: 1000\n"), first[:80]
    with client.stream("GET", f"/v1/generations/{gid}/events", params={"after": 2}) as r:
        assert next(r.iter_raw()).startswith(b"retry: 1000\n")


def test_resuming_at_the_last_event_of_an_ended_generation_is_204(client: httpx.Client) -> None:
    """Before: 200 with no bytes, and EventSource reconnected every 3 s for ever. After: 204, on which EventSource
    stops; one before the last still gets the last event."""
    gid = submit(client, f"ended {QUICK}")
    wait_status(client, gid, {"completed"})
    last = read_events(client, gid)[-1].id
    r = client.get(f"/v1/generations/{gid}/events", headers={"Last-Event-ID": str(last)})
    assert r.status_code == 204 and r.content == b""
    assert client.get(f"/v1/generations/{gid}/events", params={"after": last}).status_code == 204
    assert [e.type for e in read_events(client, gid, after=last - 1)] == ["done"]
    assert client.get(f"/v1/generations/{gid}/events", params={"after": last + 1}).status_code == 422


@pytest.mark.timeout(90)
def test_an_api_shutting_down_mid_stream_ends_every_stream_cleanly(cluster: Any) -> None:
    """Before: SIGTERM to the API cut chat-completion streams bare (``ASGI callable returned without completing
    response``; the SDK raised ``APIConnectionError``) once uvicorn's graceful-shutdown timeout ran out. After: a
    chat stream ends with an error chunk that says where to read the rest, a native stream ends cleanly with a
    ``retry`` hint, both at once, and the generation goes on."""
    c = cluster()
    c.start_api()
    c.add_worker()
    prompt = "shutdown sim:reasoning_tokens=10 sim:content_tokens=400 sim:tokens_per_s=20"
    sdk = openai.OpenAI(base_url=f"{c.url}/v1", api_key="unused", max_retries=0)
    stream = sdk.chat.completions.create(
        model="reasonq-sim", messages=[{"role": "user", "content": prompt}], stream=True
    )
    chunks = iter(stream)
    gid = next(chunks).id
    native: list[bytes] = []
    native_error: list[BaseException] = []

    def view() -> None:
        try:
            with httpx.stream("GET", f"{c.url}/v1/generations/{gid}/events", timeout=30) as r:
                native.extend(r.iter_raw())
        except httpx.HTTPError as e:
            native_error.append(e)

    viewer = threading.Thread(target=view)
    viewer.start()
    with httpx.Client(base_url=c.url, timeout=10) as client:
        wait_record(client, gid, lambda r: len(r["content"].split()) >= 5)
    assert c.api is not None
    stopper = threading.Thread(target=c.api.stop)
    stopper.start()
    with pytest.raises(openai.APIError) as raised:
        for _ in chunks:
            pass
    assert not isinstance(raised.value, openai.APIConnectionError)
    assert f"/v1/generations/{gid}/events" in str(raised.value)
    viewer.join(10)
    stopper.join(30)
    assert not native_error, native_error
    assert b"".join(native).endswith(b"\n\n") and b"retry: 1000\n" in b"".join(native)[-200:]
    c.start_api()
    with httpx.Client(base_url=c.url, timeout=10) as client:
        assert wait_status(client, gid, {"completed"}, timeout_s=60)["status"] == "completed"


@pytest.mark.parametrize("value", ["+5", "-1", "1e3", "0x5", "5.0"])
def test_issue12_one_rule_for_a_resume_point_in_the_query_and_the_header(client: httpx.Client, value: str) -> None:
    """Before: ``?after=+5`` was accepted while ``Last-Event-ID: +5`` was refused. After: both are a 422 that names
    where the bad resume point was."""
    gid = submit(client, f"resume rule {QUICK}")
    by_query = client.get(f"/v1/generations/{gid}/events", params={"after": value})
    assert by_query.status_code == 422 and by_query.json()["error"]["message"].startswith("query after")
    by_header = client.get(f"/v1/generations/{gid}/events", headers={"Last-Event-ID": value})
    assert by_header.status_code == 422 and by_header.json()["error"]["message"].startswith("header Last-Event-ID")


def test_issue12_a_number_too_long_to_read_is_a_422_naming_its_field(client: httpx.Client) -> None:
    """Before: ``max_tokens`` with 5,000 digits was ``400 There was an error parsing the body``. After: a 422 that
    names the field; the same digits inside a string are ordinary text."""
    body = b'{"messages": [{"role": "user", "content": "x"}], "max_tokens": ' + b"9" * 5000 + b"}"
    r = client.post("/v1/generations", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["message"] == "body max_tokens: a number longer than 4300 digits"
    text = b'{"messages": [{"role": "user", "content": "' + b"9" * 5000 + b' sim:content_tokens=1"}]}'
    assert client.post("/v1/generations", content=text, headers={"content-type": "application/json"}).status_code == 202
