"""What each provider profile sends (issue 16): the exact request body the simulator receives over real HTTP, and
tool calls streamed back through the worker's reader."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import orjson
import pytest

from reasonq.shared.events import CONTENT, REASONING
from reasonq.shared.providers import Profile, ProviderConfig
from reasonq.shared.schemas import GenerationCreate
from reasonq.shared.settings import Settings
from reasonq.simulator.script import build_script
from reasonq.worker.model import StreamLimits, StreamOutcome, create_model_client, stream_completion
from reasonq.worker.request import build_params

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]
CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}
# An agent's conversation: an earlier finished turn, then the current tool-call exchange (reasoning sent back as
# either name: reasonq keeps one and translates).
CONVERSATION = [
    {"role": "user", "content": "hello"},
    {"role": "assistant", "content": "hi", "reasoning_content": "old thought"},
    {"role": "user", "content": "weather in Paris?"},
    {"role": "assistant", "content": None, "reasoning": "I should call the tool", "tool_calls": [CALL]},
    {"role": "tool", "tool_call_id": "call_1", "content": "22 C"},
]


def _run(sim_url: str, request: GenerationCreate, profile: Profile) -> tuple[list[Any], StreamOutcome, dict[str, Any]]:
    async def main() -> tuple[list[Any], StreamOutcome, dict[str, Any]]:
        settings = Settings(model_timeout_s=5)
        provider = ProviderConfig(base_url=f"{sim_url}/v1", profile=profile)
        client = create_model_client(settings, provider)
        seen: list[Any] = []
        limits = StreamLimits(stall_timeout_s=30, deadline=asyncio.get_running_loop().time() + 60)
        try:
            outcome = await stream_completion(
                client,
                build_params(request, "reasonq-sim", None, profile),
                lambda kind, text: seen.append((kind, text)),
                [],
                limits,
                lambda *start: seen.append(("start", *start)),
            )
        finally:
            await client.close()
        async with httpx.AsyncClient() as http:
            bodies = (await http.get(f"{sim_url}/sim/stats")).json()["bodies"]
        return (
            seen,
            outcome,
            next(
                b
                for b in reversed(bodies)
                if b["messages"] == build_params(request, "reasonq-sim", None, profile)["messages"]
            ),
        )

    return asyncio.run(main())


@pytest.mark.parametrize(
    ("profile", "assistant_turns"),
    [
        # DeepSeek: reasoning_content on the current exchange's tool-call turn only (400 without it; the older rule
        # refused it on earlier turns)
        (
            "deepseek",
            [
                {"role": "assistant", "content": "hi"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [CALL],
                    "reasoning_content": "I should call the tool",
                },
            ],
        ),
        # vLLM: `reasoning` wherever known (it drops reasoning_content silently)
        (
            "vllm",
            [
                {"role": "assistant", "content": "hi", "reasoning": "old thought"},
                {"role": "assistant", "content": None, "tool_calls": [CALL], "reasoning": "I should call the tool"},
            ],
        ),
        (
            "openai",
            [{"role": "assistant", "content": "hi"}, {"role": "assistant", "content": None, "tool_calls": [CALL]}],
        ),
        (
            "generic",
            [{"role": "assistant", "content": "hi"}, {"role": "assistant", "content": None, "tool_calls": [CALL]}],
        ),
    ],
)
def test_each_profile_sends_reasoning_back_its_providers_way(
    sim_url: str, profile: Profile, assistant_turns: list[dict[str, Any]]
) -> None:
    request = GenerationCreate.model_validate(
        {"messages": CONVERSATION, "tools": TOOLS, "tool_choice": "auto", "parallel_tool_calls": False}
    )
    seen, outcome, body = _run(sim_url, request, profile)
    assert body == {
        "model": "reasonq-sim",
        "messages": [CONVERSATION[0], assistant_turns[0], CONVERSATION[2], assistant_turns[1], CONVERSATION[4]],
        "tools": TOOLS,
        "tool_choice": "auto",
        "parallel_tool_calls": False,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    assert outcome.finish_reason == "stop"  # a tool result is answered with text
    assert any(kind is CONTENT for kind, *_ in seen)


def test_streamed_tool_calls_reach_the_worker_whole(sim_url: str) -> None:
    prompt = 'weather sim:reasoning_tokens=3 sim:tool_calls=2 sim:tool_args={"city":"Paris","days":[1,2,3]}'
    request = GenerationCreate.model_validate({"messages": [{"role": "user", "content": prompt}], "tools": TOOLS})
    seen, outcome, _ = _run(sim_url, request, "generic")
    assert outcome.finish_reason == "tool_calls"
    starts = [s[1:] for s in seen if s[0] == "start"]
    calls: dict[int, list[str]] = {index: [arguments] for index, _, _, arguments in starts}
    for kind, *rest in seen:
        if kind != "start" and kind not in (REASONING, CONTENT):
            calls[kind.index].append(rest[0])
    body = {"model": "reasonq-sim", "messages": [{"role": "user", "content": prompt}], "tools": TOOLS}
    expected = build_script(body).tool_calls
    assert [(index, call_id, name) for index, call_id, name, _ in starts] == [
        (i, c["id"], c["function"]["name"]) for i, c in enumerate(expected)
    ]
    assert {i: orjson.loads("".join(parts)) for i, parts in calls.items()} == {
        0: {"city": "Paris", "days": [1, 2, 3]},
        1: {"city": "Paris", "days": [1, 2, 3]},
    }
    assert not any(kind is CONTENT for kind, *_ in seen)  # tool calls and no answer text
