"""Helpers shared by the tests: submitting, reading SSE over real HTTP, waiting for the end."""

from __future__ import annotations

import concurrent.futures
import time
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
from httpx_sse import connect_sse

from reasonq.simulator.script import build_script


class UnexpectedStatus(AssertionError):
    """The events endpoint answered something other than 200."""

    def __init__(self, status_code: int, body: bytes) -> None:
        super().__init__(f"HTTP {status_code}: {body!r}")
        self.status_code = status_code


@dataclass(frozen=True)
class Ev:
    """One SSE event as a viewer received it."""

    id: int
    type: str
    data: dict[str, Any]


def submit(client: httpx.Client, content: str, **params: Any) -> str:
    """POST a one-message generation and return its id."""
    body = {"messages": [{"role": "user", "content": content}], **params}
    r = client.post("/v1/generations", json=body)
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


def expected_text(content: str, model: str = "reasonq-sim", **body: Any) -> tuple[str, str]:
    """The (reasoning, answer) the simulator produces for a one-message request."""
    script = build_script({"model": model, "messages": [{"role": "user", "content": content}], **body})
    return "".join(script.reasoning), "".join(script.content)


def read_events(
    client: httpx.Client,
    generation_id: str,
    *,
    after: int | None = None,
    last_event_id: int | None = None,
    limit: int | None = None,
    timeout_s: float = 60,
    token: str | None = None,
) -> list[Ev]:
    """Read events over SSE until ``done`` (or ``limit`` events, then drop the connection)."""
    params: dict[str, Any] = {"after": after} if after is not None else {}
    if token is not None:
        params["token"] = token
    headers = {"Last-Event-ID": str(last_event_id)} if last_event_id is not None else {}
    out: list[Ev] = []
    with connect_sse(
        client,
        "GET",
        f"/v1/generations/{generation_id}/events",
        params=params,
        headers=headers,
        timeout=httpx.Timeout(timeout_s),
    ) as source:
        if source.response.status_code == 204:
            return out  # the resume point is the last event of an ended generation: nothing more will come
        if source.response.status_code != 200:
            raise UnexpectedStatus(source.response.status_code, source.response.read())
        for sse in source.iter_sse():
            if not sse.data:  # a keep-alive comment (httpx-sse still yields a block for it)
                continue
            out.append(Ev(int(sse.id), sse.event, orjson.loads(sse.data)))
            if sse.event == "done" or (limit is not None and len(out) >= limit):
                break
    return out


def text_of(events: list[Ev]) -> tuple[str, str]:
    """Reasoning and answer as a client following the contract shows them (``restart`` discards the text)."""
    reasoning: list[str] = []
    content: list[str] = []
    for e in events:
        if e.type == "restart":
            reasoning, content = [], []
        elif e.type == "reasoning":
            reasoning.append(e.data["delta"])
        elif e.type == "content":
            content.append(e.data["delta"])
    return "".join(reasoning), "".join(content)


def wait_status(client: httpx.Client, generation_id: str, statuses: set[str], timeout_s: float = 60) -> dict[str, Any]:
    """Poll GET until the generation reaches one of ``statuses``."""
    deadline = time.monotonic() + timeout_s
    while True:
        body: dict[str, Any] = client.get(f"/v1/generations/{generation_id}").json()
        if body.get("status") in statuses:
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"generation {generation_id} still {body.get('status')} after {timeout_s} s")
        time.sleep(0.05)


def assert_consecutive(events: list[Ev], start: int = 1) -> None:
    """Event ids are consecutive integers from ``start``."""
    assert [e.id for e in events] == list(range(start, start + len(events)))


def follow_resuming(base_url: str, generation_id: str, timeout_s: float = 90) -> tuple[list[Ev], int]:
    """Read to ``done`` the way a contract-following client does: on a dropped or ended connection, or a 5xx
    while the API restarts, resume with Last-Event-ID. A 4xx fails at once (issue 18: a 404 or 422 regression
    showed as a 90 s timeout). Returns the events and the number of reconnections."""
    deadline = time.monotonic() + timeout_s
    events: list[Ev] = []
    reconnects = 0
    while time.monotonic() < deadline:
        try:
            with httpx.Client(base_url=base_url, timeout=httpx.Timeout(10, read=30)) as client:
                last = events[-1].id if events else None
                more = read_events(client, generation_id, last_event_id=last, timeout_s=30)
        except httpx.HTTPError:
            more = []
        except UnexpectedStatus as e:
            if e.status_code < 500:
                raise
            more = []
        events += more
        if events and events[-1].type == "done":
            return events, reconnects
        reconnects += 1
        time.sleep(0.2)
    raise AssertionError(f"generation {generation_id}: no done event after {timeout_s} s")


def metric_value(text: str, name: str) -> float:
    """A sample's value in Prometheus text (``name`` with or without labels), 0 when absent."""
    line = next((x for x in text.splitlines() if x.startswith(name + " ") or x.startswith(name + "{")), None)
    return float(line.split()[-1]) if line is not None else 0.0


def record_measurement(name: str, value: float, unit: str) -> None:
    """Keep a figure a test measured (test-artifacts/measurements.json) for the README and closing notes."""
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "test-artifacts" / "measurements.json"
    path.parent.mkdir(exist_ok=True)
    data = json.loads(path.read_text()) if path.exists() else {}
    data[name] = {"value": round(value, 4), "unit": unit, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    path.write_text(json.dumps(data, indent=2, sort_keys=True))


def wait_record(client: httpx.Client, gid: str, predicate: Any, timeout_s: float = 30) -> dict[str, Any]:
    """Poll the record until ``predicate(record)`` holds."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        record = client.get(f"/v1/generations/{gid}").json()
        if predicate(record):
            return record
        time.sleep(0.02)
    raise AssertionError(f"{gid}: condition not met in {timeout_s} s")


def worker_running(workers: list[Any], gid: str, timeout_s: float = 30) -> Any:
    """The one of ``workers`` (started before the submit) whose log says it started ``gid``'s first attempt.

    A fault test signals the worker that runs the generation; starting the other worker only after the generation
    began left it racing the generation's end (a loaded CI start took longer than the whole generation, which then
    completed on attempt 1 before the fault).
    """
    needle = f"generation {gid}: attempt 1 started"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for worker in workers:
            if needle in worker.log_path.read_text(errors="replace"):
                return worker
        time.sleep(0.02)
    raise AssertionError(f"{gid}: no worker started it in {timeout_s} s")


def reasoning_words(n: int) -> Any:
    """A record predicate: at least ``n`` words of reasoning so far."""
    return lambda record: len(record["reasoning"].split()) >= n


def assert_whole(client: httpx.Client, gid: str, prompt: str, events: list[Ev]) -> dict[str, Any]:
    """What the viewer reconstructed equals the record and the model's text; ids are consecutive."""
    record = client.get(f"/v1/generations/{gid}").json()
    assert record["status"] == "completed", record
    assert_consecutive(events)
    assert events[-1].type == "done" and [e.type for e in events].count("done") == 1
    assert text_of(events) == (record["reasoning"], record["content"]) == expected_text(prompt)
    return record


def watch_all(
    urls: list[str], prompts: list[str], viewers: int, during: Any = None
) -> tuple[list[str], dict[str, list[list[Ev]]]]:
    """Submit one generation per prompt and follow each with ``viewers`` contract-following viewers spread over the
    API processes at ``urls``; ``during()`` runs once they are all watching (a fault). Returns the ids and every
    viewer's events."""
    with httpx.Client(base_url=urls[0], timeout=30) as client:
        gids = [submit(client, p) for p in prompts]
    seen: dict[str, list[list[Ev]]] = {gid: [] for gid in gids}
    with concurrent.futures.ThreadPoolExecutor(len(gids) * viewers) as pool:
        futures = {
            pool.submit(follow_resuming, urls[v % len(urls)], gid, 150): gid for gid in gids for v in range(viewers)
        }
        if during is not None:
            during()
        for future in concurrent.futures.as_completed(futures, timeout=180):
            seen[futures[future]].append(future.result()[0])
    return gids, seen


def check_all(url: str, gids: list[str], prompts: list[str], seen: dict[str, list[list[Ev]]]) -> None:
    """Every generation completed with the simulator's text, and every viewer ended with exactly that text."""
    with httpx.Client(base_url=url, timeout=30) as client:
        for gid, prompt in zip(gids, prompts, strict=True):
            record = wait_status(client, gid, {"completed", "failed", "cancelled"}, timeout_s=60)
            assert record["status"] == "completed", record
            assert (record["reasoning"], record["content"]) == expected_text(prompt)
            for events in seen[gid]:
                assert events[-1].type == "done"
                assert text_of(events) == expected_text(prompt), gid
