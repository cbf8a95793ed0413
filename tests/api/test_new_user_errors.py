"""What a new user sees when a request is wrong (issue 11): each answer names the problem in their words."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.helpers import expected_text, wait_status

MESSAGES = [{"role": "user", "content": "hello sim:reasoning_tokens=2 sim:content_tokens=2"}]


def _error(r: httpx.Response) -> dict[str, Any]:
    error: dict[str, Any] = r.json()["error"]
    return error


def test_a_model_not_offered_is_refused_naming_it(client: httpx.Client) -> None:
    """Issue 11: `model: "gpt-4o"` was accepted, answered by the simulator and shown as `gpt-4o`."""
    for path in ("/v1/generations", "/v1/chat/completions"):
        r = client.post(path, json={"model": "gpt-4o", "messages": MESSAGES})
        assert r.status_code == 404, r.text
        error = _error(r)
        assert error["type"] == "model_not_found"
        assert "'gpt-4o' is not offered here" in error["message"] and "reasonq-sim" in error["message"]
    listed = [m["id"] for m in client.get("/v1/models").json()["data"]]
    assert listed == ["reasonq-sim"]


def test_a_star_in_reasonq_models_allows_any_name(cluster: Any) -> None:
    c = cluster({"REASONQ_MODELS": "reasonq-sim,*"})
    c.start_api()
    c.add_worker()
    with httpx.Client(base_url=c.url, timeout=30) as client:
        r = client.post("/v1/generations", json={"model": "anything-at-all", "messages": MESSAGES})
        assert r.status_code == 202, r.text
        record = wait_status(client, r.json()["id"], {"completed"})
        assert record["model"] == "anything-at-all"
        assert [m["id"] for m in client.get("/v1/models").json()["data"]] == ["reasonq-sim"]  # `*` is no name


def test_curl_d_without_a_content_type_is_read_as_json(client: httpx.Client) -> None:
    """Issue 11: the README's own `curl -d` (form-encoded by default) answered "Input should be a valid
    dictionary"."""
    body = b'{"messages":[{"role":"user","content":"curl -d sim:reasoning_tokens=2 sim:content_tokens=2"}]}'
    r = client.post("/v1/generations", content=body, headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 202, r.text
    record = wait_status(client, r.json()["id"], {"completed"})
    assert record["content"] == expected_text("curl -d sim:reasoning_tokens=2 sim:content_tokens=2")[1]
    assert record["messages"] == [{"role": "user", "content": "curl -d sim:reasoning_tokens=2 sim:content_tokens=2"}]


def test_another_content_type_is_refused_naming_content_type(client: httpx.Client) -> None:
    r = client.post("/v1/generations", content=b'{"messages":[]}', headers={"content-type": "text/plain"})
    assert r.status_code == 415
    message = _error(r)["message"]
    assert "Content-Type 'text/plain'" in message and "application/json" in message


def test_a_json_syntax_error_says_where(client: httpx.Client) -> None:
    r = client.post(
        "/v1/generations", content=b'{"messages": [\n  {"role": "user",]}', headers={"content-type": "application/json"}
    )
    assert r.status_code == 422
    message = _error(r)["message"]
    assert message.startswith("body: not valid JSON: ") and "at line 2, column 19" in message, message


@pytest.mark.parametrize(
    ("path", "body", "expected"),
    [
        ("/v1/generations", {"messages": MESSAGES, "max_tokens": "x"}, "body max_tokens: must be a JSON number"),
        (
            "/v1/generations",
            {"messages": MESSAGES, "metadata": {"k": "x" * 600}},
            "body metadata.k: should have at most 512 characters",
        ),
        (
            "/v1/generations",
            {"messages": MESSAGES, "model": "m" * 300},
            "body model: should have at most 200 characters, not 300",
        ),
        (
            "/v1/chat/completions",
            {"messages": [{"role": "user", "content": 5}]},
            "body messages.0.content: Input should be a valid string or a valid list",
        ),
    ],
)
def test_validation_messages_speak_the_users_language(
    client: httpx.Client, path: str, body: dict[str, Any], expected: str
) -> None:
    """Issue 11: `Value error,` prefixes, `function-after[functools.partial(...)]` in field names, and "at most
    200 items" for a string."""
    r = client.post(path, json=body)
    assert r.status_code == 422
    message = _error(r)["message"]
    assert message.startswith(expected), message
    for jargon in ("Value error", "function-after", "items", "[", "partial"):
        assert jargon not in message.replace(expected, ""), message
        assert all(jargon not in d["field"] for d in _error(r)["details"])


def test_an_unknown_batch_id_is_a_404_like_an_unknown_generation(client: httpx.Client) -> None:
    """Issue 11: an id not of the batch shape answered 422 about a regular expression."""
    for path in ("/v1/batches/batch_nope", "/v1/batches/nope/results", "/v1/batches/batch_AAAAAAAAAAAAAAAAAAAAAA"):
        r = client.get(path)
        assert r.status_code == 404, (path, r.text)
        assert _error(r)["type"] == "not_found"


def test_docs_work_with_no_internet(client: httpx.Client) -> None:
    """Issue 11: /docs was a blank page offline: Swagger UI came from a CDN."""
    page = client.get("/docs")
    assert page.status_code == 200
    assert "cdn" not in page.text.lower() and "https://" not in page.text
    for asset in ("/static-offline-docs/swagger-ui-bundle.js", "/static-offline-docs/swagger-ui.css"):
        assert asset in page.text
        r = client.get(asset)
        assert r.status_code == 200 and len(r.content) > 100_000
    redoc = client.get("/redoc")
    assert redoc.status_code == 200 and "https://" not in redoc.text
    assert client.get("/favicon.ico").headers["content-type"].startswith("image/svg+xml")


def test_the_viewer_page_of_an_unknown_id_is_an_http_404(client: httpx.Client) -> None:
    r = client.get("/g/gen_AAAAAAAAAAAAAAAAAAAAAA")
    assert r.status_code == 404 and r.headers["content-type"].startswith("text/html")
    assert "There is no generation <code>gen_AAAAAAAAAAAAAAAAAAAAAA</code> here" in r.text
    escaped = client.get("/g/%3Cscript%3E")
    assert escaped.status_code == 404 and "<script>" not in escaped.text and "&lt;script&gt;" in escaped.text


def test_issue12_a_405_allows_every_method_of_the_path(client: httpx.Client) -> None:
    """Before: ``Allow`` named only the first route's methods of a path served by several routes (``GET`` and
    ``POST /v1/generations``). After: all of them."""
    r = client.put("/v1/generations")
    assert r.status_code == 405 and r.json()["error"]["type"] == "method_not_allowed"
    assert set(r.headers["allow"].split(", ")) >= {"GET", "POST"}
    r = client.delete("/v1/models")
    assert r.status_code == 405 and "GET" in r.headers["allow"].split(", ")
