"""Bad input gets a clear 4xx naming the problem; nothing a client sends yields a 500."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.helpers import submit, wait_status

GOOD = {"messages": [{"role": "user", "content": "hi sim:reasoning_tokens=2 sim:content_tokens=2"}]}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "body messages"),
        ({"messages": []}, "body messages"),
        ({"messages": "hello"}, "body messages"),
        (
            {"messages": [{"role": "wizard", "content": "x"}]},
            "body messages.0: role 'wizard' is not one of system, developer",
        ),
        ({"messages": [{"role": "user"}]}, "body messages.0.content: Field required"),
        ({"messages": [{"role": "user", "content": 5}]}, "body messages.0.content"),
        ({"messages": [{"role": "user", "content": "x", "nom": "n"}]}, "body messages.0.nom"),
        ({"messages": [{"role": "tool", "content": "4"}]}, "body messages.0.tool_call_id: Field required"),
        (
            {"messages": [{"role": "user", "content": "x", "tool_call_id": "c"}]},
            "body messages.0.tool_call_id: Extra inputs",
        ),
        (
            {"messages": [{"role": "user", "content": "x", "reasoning": "r"}]},
            "body messages.0.reasoning: Extra inputs",
        ),
        ({**GOOD, "tools": [{"type": "function", "function": {"name": "has space"}}]}, "body tools.0.function.name"),
        ({**GOOD, "tools": [{"type": "retrieval"}]}, "body tools.0.type"),
        ({**GOOD, "tools": []}, "body tools"),
        ({**GOOD, "tool_choice": "sometimes"}, "body tool_choice"),
        ({**GOOD, "max_tokens": 0}, "body max_tokens"),
        ({**GOOD, "max_tokens": "many"}, "body max_tokens"),
        ({**GOOD, "temperature": 3}, "body temperature"),
        ({**GOOD, "top_p": -0.1}, "body top_p"),
        ({**GOOD, "stop": ["a", "b", "c", "d", "e"]}, "body stop"),
        ({**GOOD, "metadata": {"k": 1}}, "body metadata.k"),
        ({**GOOD, "reasoning_effort": "<script>"}, "body reasoning_effort"),
        ({**GOOD, "temprature": 0.2}, "body temprature"),
        ({**GOOD, "model": ""}, "body model"),
    ],
)
def test_invalid_bodies_get_422_naming_the_field(client: httpx.Client, body: dict, field: str) -> None:  # type: ignore[type-arg]
    r = client.post("/v1/generations", json=body)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request"
    assert error["message"].startswith(field), error


@pytest.mark.parametrize(
    "raw",
    [b"{not json", b"", b"[]", b"null", b'{"messages": [{"role": "user", "content": "\\ud800"}]}'],
)
def test_malformed_json_gets_422(client: httpx.Client, raw: bytes) -> None:
    r = client.post("/v1/generations", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["message"]


def test_nul_and_rtl_text_round_trip(client: httpx.Client) -> None:
    content = "a\x00b \u202eRTL\u202c \U0001f600 sim:reasoning_tokens=2 sim:content_tokens=2"
    gid = submit(client, content, metadata={"note": "\u05e9\u05dc\u05d5\u05dd\x00"})
    record = wait_status(client, gid, {"completed"})
    assert record["metadata"] == {"note": "\u05e9\u05dc\u05d5\u05dd\x00"}


def test_ids_are_unguessable_and_distinct(client: httpx.Client) -> None:
    ids = {submit(client, "id sim:reasoning_tokens=1 sim:content_tokens=1") for _ in range(20)}
    assert len(ids) == 20
    for gid in ids:
        assert re.fullmatch(r"gen_[A-Za-z0-9_-]{22}", gid)  # 22 url-safe chars = 132 bits, 128 random


@pytest.mark.parametrize(
    "path",
    [
        "/v1/generations/gen_AAAAAAAAAAAAAAAAAAAAAA",
        "/v1/generations/nope",
        "/v1/generations/..%2F..%2Fetc%2Fpasswd",
        "/v1/generations/gen_AAAAAAAAAAAAAAAAAAAAAA/events",
        "/v1/generations/%00/events",
        "/v1/generations/rq:gen:x",
    ],
)
def test_unknown_ids_get_404_json(client: httpx.Client, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 404, r.text
    assert r.json()["error"]["type"] == "not_found"


@pytest.mark.parametrize(
    ("params", "headers", "field"),
    [
        ({"after": "abc"}, {}, "query after"),
        ({"after": "-1"}, {}, "query after"),
        ({"after": "1.5"}, {}, "query after"),
        ({}, {"Last-Event-ID": "abc"}, "header Last-Event-ID"),
        ({}, {"Last-Event-ID": "-3"}, "header Last-Event-ID"),
        ({}, {"Last-Event-ID": "9" * 40}, "header Last-Event-ID"),
    ],
)
def test_bad_resume_points_get_422(client: httpx.Client, params: dict, headers: dict, field: str) -> None:  # type: ignore[type-arg]
    gid = submit(client, "resume sim:reasoning_tokens=1 sim:content_tokens=1")
    r = client.get(f"/v1/generations/{gid}/events", params=params, headers=headers)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["message"].startswith(field)


def test_openapi_documents_the_contract(client: httpx.Client) -> None:
    spec = client.get("/openapi.json").json()
    assert {"/v1/generations", "/v1/generations/{generation_id}", "/v1/generations/{generation_id}/events"} <= set(
        spec["paths"]
    )
    assert client.get("/docs").status_code == 200
