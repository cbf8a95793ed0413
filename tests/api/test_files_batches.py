"""Files + Batches as the unchanged ``openai`` SDK does them (issue 15): upload the input, create the batch from it,
poll it, read the output and error files (every custom_id exactly once), list with a cursor, cancel, and a
completion window that passes with lines unfinished (``expired``, the finished lines kept). Every object is parsed
with the SDK's own types."""

from __future__ import annotations

import time
from typing import Any

import httpx
import openai
import orjson
import pytest
from openai.types import Batch, FileObject

from tests.helpers import expected_text


@pytest.fixture
def sdk(api_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{api_url}/v1", api_key="unused", max_retries=0)


def _jsonl(prompts: dict[str, str]) -> bytes:
    lines = [
        {
            "custom_id": custom_id,
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": "reasonq-sim", "messages": [{"role": "user", "content": prompt}]},
        }
        for custom_id, prompt in prompts.items()
    ]
    return b"".join(orjson.dumps(line) + b"\n" for line in lines)


def _wait(sdk: openai.OpenAI, batch_id: str, statuses: set[str], timeout_s: float = 60) -> Batch:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        batch = sdk.batches.retrieve(batch_id)
        Batch.model_validate(batch.to_dict())
        if batch.status in statuses:
            return batch
        time.sleep(0.1)
    raise AssertionError(f"{batch_id} did not reach {statuses}: {batch.status}")


def _lines(sdk: openai.OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    if file_id is None:
        return []
    return [orjson.loads(line) for line in sdk.files.content(file_id).content.splitlines() if line.strip()]


def test_upload_create_poll_and_read_every_custom_id_exactly_once(sdk: openai.OpenAI) -> None:
    prompts = {f"req-{i}": f"sdk batch {i} sim:reasoning_tokens=2 sim:content_tokens=3" for i in range(6)}
    prompts["req-bad"] = "sdk batch refused sim:status=400"
    uploaded = sdk.files.create(file=("in.jsonl", _jsonl(prompts)), purpose="batch")
    FileObject.model_validate(uploaded.to_dict())
    assert (uploaded.purpose, uploaded.filename, uploaded.bytes) == ("batch", "in.jsonl", len(_jsonl(prompts)))
    assert sdk.files.retrieve(uploaded.id).id == uploaded.id
    assert sdk.files.content(uploaded.id).content == _jsonl(prompts)

    batch = sdk.batches.create(
        input_file_id=uploaded.id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata={"job": "nightly"},
    )
    Batch.model_validate(batch.to_dict())
    assert (batch.input_file_id, batch.completion_window, batch.metadata) == (uploaded.id, "24h", {"job": "nightly"})
    assert batch.status == "in_progress" and batch.output_file_id is None
    assert batch.expires_at is not None and batch.expires_at - batch.created_at == 86_400

    done = _wait(sdk, batch.id, {"completed"})
    assert done.request_counts is not None and (done.request_counts.completed, done.request_counts.failed) == (6, 1)
    assert done.completed_at is not None and done.output_file_id and done.error_file_id
    output, errors = _lines(sdk, done.output_file_id), _lines(sdk, done.error_file_id)
    ids = [line["custom_id"] for line in output + errors]
    assert sorted(ids) == sorted(prompts)  # every custom_id exactly once
    assert [line["custom_id"] for line in errors] == ["req-bad"] and "HTTP 400" in errors[0]["error"]["message"]
    for line in output:
        body = line["response"]["body"]
        assert line["response"]["status_code"] == 200
        assert body["choices"][0]["message"]["content"] == expected_text(prompts[line["custom_id"]])[1]
    output_file = sdk.files.retrieve(done.output_file_id)
    FileObject.model_validate(output_file.to_dict())
    assert output_file.purpose == "batch_output"
    assert output_file.bytes == len(sdk.files.content(done.output_file_id).content)


def test_list_pages_with_a_cursor_and_files_are_listed_and_deleted(sdk: openai.OpenAI) -> None:
    made = []
    for i in range(3):
        f = sdk.files.create(file=(f"p{i}.jsonl", _jsonl({"a": f"page {i} sim:content_tokens=1"})), purpose="batch")
        made.append(sdk.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h").id)
    first = sdk.batches.list(limit=2)
    assert [b.id for b in first.data] == made[::-1][:2] and first.has_more
    second = sdk.batches.list(limit=2, after=first.data[-1].id)
    assert second.data[0].id == made[0]
    walked = [b.id for b in sdk.batches.list(limit=2)]  # the SDK's auto-pagination follows has_more
    assert walked[:3] == made[::-1]

    files = sdk.files.list(purpose="batch", limit=2)
    assert len(files.data) == 2 and files.has_more
    gone = files.data[0].id
    assert sdk.files.delete(gone).deleted is True
    with pytest.raises(openai.NotFoundError):
        sdk.files.retrieve(gone)
    assert gone not in [f.id for f in sdk.files.list(purpose="batch")]


def test_cancel(sdk: openai.OpenAI) -> None:
    prompts = {f"slow-{i}": f"sdk cancel {i} sim:reasoning_tokens=2000 sim:tokens_per_s=50" for i in range(3)}
    f = sdk.files.create(file=("slow.jsonl", _jsonl(prompts)), purpose="batch")
    batch = sdk.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
    cancelling = sdk.batches.cancel(batch.id)
    assert cancelling.status in ("cancelling", "cancelled") and cancelling.cancelling_at is not None
    cancelled = _wait(sdk, batch.id, {"cancelled"})
    assert cancelled.cancelled_at is not None and cancelled.error_file_id
    assert sorted(line["custom_id"] for line in _lines(sdk, cancelled.error_file_id)) == sorted(prompts)


def test_bad_batch_requests(sdk: openai.OpenAI, client: httpx.Client) -> None:
    with pytest.raises(openai.NotFoundError, match="no file 'file-nope'"):
        sdk.batches.create(input_file_id="file-nope", endpoint="/v1/chat/completions", completion_window="24h")
    r = client.post(
        "/v1/batches", json={"input_file_id": "f", "endpoint": "/v1/embeddings", "completion_window": "24h"}
    )
    assert r.status_code == 422 and r.json()["error"]["message"].startswith("body endpoint"), r.text
    bad = sdk.files.create(file=("bad.jsonl", b'{"custom_id": "x", "body": {"messages": []}}\n'), purpose="batch")
    with pytest.raises(openai.UnprocessableEntityError, match="line 1"):
        sdk.batches.create(input_file_id=bad.id, endpoint="/v1/chat/completions", completion_window="24h")
    r = client.post("/v1/files", files={"file": ("x.jsonl", b"{}\n")}, data={"purpose": "fine-tune"})
    assert r.status_code == 422 and r.json()["error"]["message"].startswith("body purpose"), r.text
    empty = sdk.files.create(file=("empty.jsonl", b""), purpose="batch")
    with pytest.raises(openai.UnprocessableEntityError, match="no lines"):
        sdk.batches.create(input_file_id=empty.id, endpoint="/v1/chat/completions", completion_window="24h")
    r = client.post(
        "/v1/files", content=b"--x\r\nFalse--x--\r\n", headers={"content-type": "multipart/form-data; boundary=x"}
    )
    assert r.status_code == 400 and "multipart" in r.json()["error"]["message"], r.text


def test_a_window_that_passes_expires_the_batch_and_keeps_the_finished_lines(cluster: Any) -> None:
    c = cluster({"REASONQ_BATCH_WINDOW_S": "3"})
    c.start_api()
    c.add_worker(queues="reasonq,reasonq-batch")
    sdk = openai.OpenAI(base_url=f"{c.url}/v1", api_key="unused", max_retries=0)
    prompts = {"quick": "expiry quick sim:content_tokens=2"}
    prompts |= {f"slow-{i}": f"expiry slow {i} sim:reasoning_tokens=5000 sim:tokens_per_s=50" for i in range(2)}
    f = sdk.files.create(file=("e.jsonl", _jsonl(prompts)), purpose="batch")
    batch = sdk.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
    expired = _wait(sdk, batch.id, {"expired"}, timeout_s=30)
    assert expired.expired_at is not None and expired.expired_at >= batch.created_at + 3
    assert expired.request_counts is not None
    assert (expired.request_counts.completed, expired.request_counts.failed) == (1, 2)
    assert [line["custom_id"] for line in _lines(sdk, expired.output_file_id)] == ["quick"]
    assert sorted(line["custom_id"] for line in _lines(sdk, expired.error_file_id)) == ["slow-0", "slow-1"]
    assert sdk.batches.retrieve(batch.id).status == "expired"  # it stays expired
