"""The worker's model request: the body the SDK's ``create()`` would send, without the SDK's per-request transform.

The transform walks the request against the SDK's TypedDict unions (hashing typing aliases at every level): about
0.25 ms a request for one message, growing with the conversation, and 18 % of a worker loop's busy time while
500 generations started at once (py-spy, ``bench --scenario burst``). For chat completions it changes nothing (no
renamed keys, no formatted values), so the worker sends its own body through the SDK's ``client.post``; these
tests pin that the body is byte for byte the SDK's and that the key still goes with it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import openai.resources.chat.completions.completions as sdk_completions
import pytest

from reasonq.shared.errors import ModelError
from reasonq.shared.schemas import GenerationCreate
from reasonq.shared.settings import Settings
from reasonq.worker.model import StreamLimits, create_model_client, stream_completion
from reasonq.worker.request import build_params

KEY = "sk-model-key-for-the-request-test-77"
CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}
# Every field the worker passes on, and every message shape (an agent's turn with a tool call and its result).
RICH = {
    "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "weather in Paris? sim:content_tokens=3"},
        {"role": "assistant", "content": None, "reasoning_content": "call the tool", "tool_calls": [CALL]},
        {"role": "tool", "tool_call_id": "call_1", "content": "22 C"},
        {"role": "user", "content": "and tomorrow? sim:content_tokens=3"},
    ],
    "tools": [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "today's weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
            },
        }
    ],
    "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
    "parallel_tool_calls": False,
    "max_tokens": 64,
    "temperature": 0.5,
    "top_p": 0.9,
    "reasoning_effort": "low",
    "stop": ["\n\n", "END"],
    "seed": 7,
}


def _limits() -> StreamLimits:
    return StreamLimits(stall_timeout_s=30, deadline=asyncio.get_running_loop().time() + 60)


async def _bodies(sim_url: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient() as http:
        return list((await http.get(f"{sim_url}/sim/stats")).json()["bodies"])


@pytest.mark.parametrize("continuation", [None, "It is"], ids=["request", "continuation"])
def test_the_body_is_the_sdks_own_and_the_sdks_transform_does_not_run(
    sim_url: str, monkeypatch: pytest.MonkeyPatch, continuation: str | None
) -> None:
    transforms = 0
    real_transform = sdk_completions.async_maybe_transform

    async def counted(data: object, expected_type: object) -> Any:
        nonlocal transforms
        transforms += 1
        return await real_transform(data, expected_type)

    monkeypatch.setattr(sdk_completions, "async_maybe_transform", counted)

    async def main() -> tuple[dict[str, Any], dict[str, Any]]:
        settings = Settings(model_base_url=f"{sim_url}/v1", model_api_key=KEY, model_timeout_s=5)  # type: ignore[arg-type]
        client = create_model_client(settings)
        params = build_params(GenerationCreate.model_validate(RICH), "reasonq-sim", continuation, "deepseek")
        try:
            await stream_completion(client, dict(params), lambda *_: None, [KEY], _limits(), lambda *_: None)
            ours = (await _bodies(sim_url))[-1]
            assert transforms == 0, "the worker's request ran the SDK's transform"
            # The reference: the same parameters through the SDK's own create(), transform and all.
            async with client.chat.completions.with_streaming_response.create(**params) as response:
                await response.http_response.aread()
            assert transforms == 1  # the probe sees the SDK's path, so the check above can fail
            return ours, (await _bodies(sim_url))[-1]
        finally:
            await client.close()

    ours, sdks = asyncio.run(main())
    assert ours == sdks
    if continuation:  # extra_body's fields are merged into the body, as the SDK merges them
        assert ours["continue_final_message"] is True and ours["messages"][-1]["prefix"] is True


def test_the_key_goes_with_the_request_and_never_comes_back(sim_url: str) -> None:
    """The simulator echoes the bearer key it received into its error (``sim:leak_key``): it arrives, and the
    worker's error carries it redacted."""

    async def main() -> None:
        settings = Settings(model_base_url=f"{sim_url}/v1", model_api_key=KEY, model_timeout_s=5)  # type: ignore[arg-type]
        client = create_model_client(settings)
        request = GenerationCreate.model_validate(
            {"messages": [{"role": "user", "content": "k sim:status=401 sim:leak_key=1"}]}
        )
        try:
            await stream_completion(
                client, build_params(request, "reasonq-sim", None), lambda *_: None, [KEY], _limits()
            )
        finally:
            await client.close()

    with pytest.raises(ModelError) as info:
        asyncio.run(main())
    assert info.value.kind == "provider_http_error" and info.value.status_code == 401
    assert "request made with key ***" in info.value.message
    assert KEY not in str(info.value.to_dict())
