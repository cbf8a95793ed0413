"""The OpenAI-compatible front door, driven by the real ``openai`` SDK (sync and async), unchanged."""

from __future__ import annotations

import asyncio

import httpx
import openai
import pytest

from tests.helpers import expected_text, read_events, text_of, wait_status


@pytest.fixture
def sdk(api_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{api_url}/v1", api_key="unused", max_retries=0)


def _messages(content: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": content}]


def test_streaming_with_reasoning_and_usage(sdk: openai.OpenAI, client: httpx.Client) -> None:
    prompt = "compat stream sim:reasoning_tokens=20 sim:content_tokens=15"
    raw = sdk.chat.completions.with_raw_response.create(
        model="reasonq-sim", messages=_messages(prompt), stream=True, stream_options={"include_usage": True}
    )
    gid = raw.headers["x-reasonq-generation-id"]
    chunks = list(raw.parse())
    assert {c.id for c in chunks} == {gid}
    reasoning = "".join(
        (c.choices[0].delta.model_extra or {}).get("reasoning_content") or "" for c in chunks if c.choices
    )
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert (reasoning, content) == expected_text(prompt)
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 35
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    # the same generation can be re-joined through the native stream
    assert text_of(read_events(client, gid)) == (reasoning, content)


def test_async_streaming(api_url: str) -> None:
    prompt = "compat async sim:reasoning_tokens=10 sim:content_tokens=10"

    async def main() -> tuple[str, str]:
        async with openai.AsyncOpenAI(base_url=f"{api_url}/v1", api_key="unused", max_retries=0) as sdk:
            stream = await sdk.chat.completions.create(model="reasonq-sim", messages=_messages(prompt), stream=True)
            reasoning, content = [], []
            async for chunk in stream:
                for choice in chunk.choices:
                    reasoning.append((choice.delta.model_extra or {}).get("reasoning_content") or "")
                    content.append(choice.delta.content or "")
            return "".join(reasoning), "".join(content)

    assert asyncio.run(main()) == expected_text(prompt)


def test_non_streaming_completion(sdk: openai.OpenAI) -> None:
    prompt = "compat whole sim:reasoning_tokens=12 sim:content_tokens=8"
    completion = sdk.chat.completions.create(model="reasonq-sim", messages=_messages(prompt), max_tokens=100)
    message = completion.choices[0].message
    assert (message.model_extra or {}).get("reasoning_content") == expected_text(prompt)[0]
    assert message.content == expected_text(prompt)[1]
    assert completion.id.startswith("gen_") and completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.completion_tokens == 20


def test_models(sdk: openai.OpenAI) -> None:
    assert [m.id for m in sdk.models.list()] == ["reasonq-sim"]


def test_a_dropped_caller_does_not_stop_the_generation(sdk: openai.OpenAI, client: httpx.Client) -> None:
    prompt = "compat drop sim:reasoning_tokens=40 sim:content_tokens=20 sim:tokens_per_s=100"
    raw = sdk.chat.completions.with_raw_response.create(model="reasonq-sim", messages=_messages(prompt), stream=True)
    gid = raw.headers["x-reasonq-generation-id"]
    stream = raw.parse()
    next(iter(stream))
    stream.close()
    record = wait_status(client, gid, {"completed"})
    assert (record["reasoning"], record["content"]) == expected_text(prompt)


def test_provider_failure_is_an_api_error(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as info:
        sdk.chat.completions.create(model="reasonq-sim", messages=_messages("bad sim:status=400"))
    assert info.value.status_code == 400 and "HTTP 400" in str(info.value)
    with pytest.raises(openai.APIError, match="HTTP 400"):
        list(sdk.chat.completions.create(model="reasonq-sim", messages=_messages("bad sim:status=400"), stream=True))


@pytest.mark.parametrize(
    ("extra", "field"),
    [({"n": 2}, "body n"), ({"tools": [{"type": "function"}]}, "body tools"), ({"messages": []}, "body messages")],
)
def test_unsupported_options_are_refused_by_name(client: httpx.Client, extra: dict, field: str) -> None:  # type: ignore[type-arg]
    body = {"model": "reasonq-sim", "messages": _messages("x"), **extra}
    r = client.post("/v1/chat/completions", json=body)
    assert r.status_code == 422 and r.json()["error"]["message"].startswith(field)
