"""Edges OpenAI clients hit on chat completions (issue 15), with the unchanged ``openai`` SDK: an upstream 4xx is a 4xx
(the SDK's retries would turn one refused request into three failed generations), ``finish_reason`` is always one of
OpenAI's values (a cancelled answer says so in ``reasonq.status``), the routes answer without the ``/v1`` prefix
(DeepSeek-style base URLs), ``GET /v1/models/{id}``, and the provider's ``system_fingerprint`` comes through."""

from __future__ import annotations

import concurrent.futures
import time

import httpx
import openai
import pytest
from openai.types import Model
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from reasonq.shared.schemas import openai_finish
from tests.helpers import expected_text


def _messages(content: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": content}]


def _sim_requests(sim_url: str, prompt: str) -> int:
    bodies = httpx.get(f"{sim_url}/sim/stats", timeout=10).json()["bodies"]
    return sum(1 for b in bodies if b["messages"][-1]["content"] == prompt)


def _find(client: httpx.Client, prompt: str, timeout_s: float = 20) -> str:
    """The id of the newest generation whose first message is ``prompt``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for row in client.get("/v1/generations", params={"limit": 100}).json()["data"]:
            if row["preview"].startswith(prompt[:40]):
                return str(row["id"])
        time.sleep(0.05)
    raise AssertionError(f"no generation for {prompt!r}")


def test_an_upstream_4xx_is_that_4xx_and_the_sdk_does_not_retry_it(api_url: str, sim_url: str) -> None:
    sdk = openai.OpenAI(base_url=f"{api_url}/v1", api_key="unused", max_retries=2)
    prompt = f"refused {time.time_ns()} sim:status=400"
    with pytest.raises(openai.BadRequestError) as info:
        sdk.chat.completions.create(model="reasonq-sim", messages=_messages(prompt))
    assert info.value.status_code == 400 and "provider answered HTTP 400" in str(info.value)
    assert info.value.response.headers["x-reasonq-generation-id"].startswith("gen_")
    assert _sim_requests(sim_url, prompt) == 1  # one generation, one upstream request
    # the provider's own key or permissions are the operator's problem, not the caller's: still a 502
    with pytest.raises(openai.APIStatusError) as info:
        sdk.with_options(max_retries=0).chat.completions.create(
            model="reasonq-sim", messages=_messages(f"denied {time.time_ns()} sim:status=401")
        )
    assert info.value.status_code == 502 and "HTTP 401" in str(info.value)
    # streamed, the error event carries the provider's status
    with pytest.raises(openai.APIError, match="HTTP 400") as streamed:
        list(sdk.chat.completions.create(model="reasonq-sim", messages=_messages(prompt + " again"), stream=True))
    assert (streamed.value.body or {}).get("status_code") == 400, streamed.value.body


def test_finish_reason_is_openais_and_a_cancel_says_so_elsewhere(api_url: str, client: httpx.Client) -> None:
    sdk = openai.OpenAI(base_url=f"{api_url}/v1", api_key="unused", max_retries=0)
    prompt = "cut short sim:reasoning_tokens=400 sim:content_tokens=10 sim:tokens_per_s=100"
    raw = sdk.chat.completions.with_raw_response.create(model="reasonq-sim", messages=_messages(prompt), stream=True)
    gid = raw.headers["x-reasonq-generation-id"]
    chunks = []
    for chunk in raw.parse():
        chunks.append(chunk)
        if len(chunks) == 3:
            assert client.post(f"/v1/generations/{gid}/cancel").status_code == 202
    for chunk in chunks:
        ChatCompletionChunk.model_validate(chunk.to_dict())  # the SDK's own type, validated
    ends = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert [c.choices[0].finish_reason for c in ends] == ["stop"]
    assert (ends[0].model_extra or {})["reasonq"] == {"status": "cancelled", "generation_id": gid}

    # not streamed: the same, on the chat.completion object
    whole = "cut short whole " + prompt
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        future = pool.submit(sdk.chat.completions.create, model="reasonq-sim", messages=_messages(whole))
        gid = _find(client, whole)
        time.sleep(0.3)
        assert client.post(f"/v1/generations/{gid}/cancel").status_code == 202
        completion = future.result(timeout=30)
    ChatCompletion.model_validate(completion.to_dict())
    assert completion.choices[0].finish_reason == "stop"
    assert (completion.model_extra or {})["reasonq"] == {"status": "cancelled", "generation_id": gid}
    # the native stream keeps reasonq's own word
    record = client.get(f"/v1/generations/{gid}").json()
    assert (record["status"], record["finish_reason"]) == ("cancelled", "cancelled")


def test_a_completed_answer_has_no_reasonq_marker_and_carries_the_providers_fingerprint(api_url: str) -> None:
    sdk = openai.OpenAI(base_url=f"{api_url}/v1", api_key="unused", max_retries=0)
    prompt = "fingerprint sim:reasoning_tokens=3 sim:content_tokens=3"
    completion = sdk.chat.completions.create(model="reasonq-sim", messages=_messages(prompt))
    ChatCompletion.model_validate(completion.to_dict())
    assert completion.system_fingerprint == "fp_reasonq_simulator"
    assert "reasonq" not in (completion.model_extra or {})
    chunks = list(sdk.chat.completions.create(model="reasonq-sim", messages=_messages(prompt), stream=True))
    last = [c for c in chunks if c.choices and c.choices[0].finish_reason][0]
    assert last.system_fingerprint == "fp_reasonq_simulator" and last.choices[0].finish_reason == "stop"


@pytest.mark.parametrize("base", ["", "/v1"])
def test_the_openai_routes_answer_with_and_without_the_v1_prefix(api_url: str, base: str) -> None:
    sdk = openai.OpenAI(base_url=f"{api_url}{base}", api_key="unused", max_retries=0)
    prompt = "no prefix sim:reasoning_tokens=2 sim:content_tokens=2"
    completion = sdk.chat.completions.create(model="reasonq-sim", messages=_messages(prompt))
    assert completion.choices[0].message.content == expected_text(prompt)[1]
    streamed = "".join(
        c.choices[0].delta.content or ""
        for c in sdk.chat.completions.create(model="reasonq-sim", messages=_messages(prompt), stream=True)
        if c.choices
    )
    assert streamed == expected_text(prompt)[1]
    assert [m.id for m in sdk.models.list()] == ["reasonq-sim"]
    model = sdk.models.retrieve("reasonq-sim")
    Model.model_validate(model.to_dict())
    assert (model.id, model.object, model.owned_by) == ("reasonq-sim", "model", "reasonq")
    with pytest.raises(openai.NotFoundError, match="model 'gpt-nope' does not exist"):
        sdk.models.retrieve("gpt-nope")


@pytest.mark.parametrize(
    ("status", "finish_reason", "expected"),
    [
        ("completed", "stop", ("stop", None)),
        ("completed", "tool_calls", ("tool_calls", None)),
        ("completed", "length", ("length", None)),
        ("completed", "abort", ("stop", {"status": "completed", "generation_id": "g", "finish_reason": "abort"})),
        ("completed", None, ("stop", {"status": "completed", "generation_id": "g"})),
        ("cancelled", "cancelled", ("stop", {"status": "cancelled", "generation_id": "g"})),
        ("cancelled", "length", ("length", {"status": "cancelled", "generation_id": "g"})),
    ],
)
def test_every_ending_has_an_openai_finish_reason(status: str, finish_reason: str | None, expected: object) -> None:
    assert openai_finish("g", status, finish_reason) == expected
