"""Tool calls end to end (issue 16): the unchanged openai SDK and LangChain's ``ChatDeepSeek.bind_tools`` pointed
at reasonq, the native event stream and record, and the agent loop's second turn (the tool's result answered)."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
from openai import OpenAI

from reasonq.simulator.script import build_script
from tests.helpers import read_events, text_of, wait_status

TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "kelvin"]}},
                "required": ["city"],
            },
        },
    },
    {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}},
]


def _expected(prompt: str) -> list[dict[str, Any]]:
    """The tool calls the simulator makes for a one-message request with ``TOOLS``."""
    body = {"model": "reasonq-sim", "messages": [{"role": "user", "content": prompt}], "tools": TOOLS}
    return build_script(body).tool_calls


def _sdk(api_url: str) -> OpenAI:
    return OpenAI(base_url=f"{api_url}/v1", api_key="unused", max_retries=0)


def test_streamed_tool_calls_come_out_as_openai_deltas_and_the_helper_accumulates_them(api_url: str) -> None:
    prompt = "weather and time sim:reasoning_tokens=5 sim:tool_calls=2"
    expected = _expected(prompt)
    assert [c["function"]["name"] for c in expected] == ["get_weather", "get_time"]
    client = _sdk(api_url)
    stream = client.chat.completions.create(
        model="reasonq-sim", messages=[{"role": "user", "content": prompt}], tools=TOOLS, stream=True
    )
    calls: dict[int, dict[str, Any]] = {}
    finish = None
    reasoning = ""
    for chunk in stream:
        choice = chunk.choices[0]
        reasoning += getattr(choice.delta, "reasoning_content", None) or ""
        for delta in choice.delta.tool_calls or ():
            call = calls.setdefault(delta.index, {"id": None, "name": "", "arguments": ""})
            if delta.id:
                assert call["id"] is None, "a call's id comes once"
                call |= {"id": delta.id, "name": delta.function.name}
            call["arguments"] += delta.function.arguments or ""
        finish = choice.finish_reason or finish
    assert finish == "tool_calls"
    assert reasoning.startswith("[simulated reasoning]")
    assert [calls[i] for i in sorted(calls)] == [
        {"id": c["id"], "name": c["function"]["name"], "arguments": c["function"]["arguments"]} for c in expected
    ]
    # the SDK's own helper accumulates the same calls and parses its final completion
    with client.chat.completions.stream(
        model="reasonq-sim", messages=[{"role": "user", "content": prompt}], tools=TOOLS
    ) as helper:
        final = helper.get_final_completion()
    message = final.choices[0].message
    assert final.choices[0].finish_reason == "tool_calls"
    assert [(t.id, t.function.name, t.function.arguments) for t in message.tool_calls or ()] == [
        (c["id"], c["function"]["name"], c["function"]["arguments"]) for c in expected
    ]


def test_a_tool_call_answer_is_a_native_event_type_and_kept_in_the_record(api_url: str) -> None:
    prompt = 'weather sim:tool_calls=1 sim:tool=get_weather sim:tool_args={"city":"Oslo","unit":"kelvin"}'
    client = _sdk(api_url)
    completion = client.chat.completions.create(
        model="reasonq-sim", messages=[{"role": "user", "content": prompt}], tools=TOOLS, tool_choice="required"
    )
    message = completion.choices[0].message
    assert completion.choices[0].finish_reason == "tool_calls"
    assert message.content is None
    assert message.tool_calls is not None and len(message.tool_calls) == 1
    call = message.tool_calls[0]
    assert (call.function.name, orjson.loads(call.function.arguments)) == (
        "get_weather",
        {"city": "Oslo", "unit": "kelvin"},
    )
    with httpx.Client(base_url=api_url, timeout=30) as http:
        record = wait_status(http, completion.id, {"completed"})
        events = read_events(http, completion.id)
    assert record["tool_calls"] == [call.model_dump(exclude_none=True)]
    assert record["content"] == "" and record["finish_reason"] == "tool_calls"
    tool_events = [e.data for e in events if e.type == "tool_call"]
    assert tool_events[0] == {"index": 0, "id": call.id, "name": "get_weather", "arguments": ""}
    assert all(set(e) == {"index", "arguments"} for e in tool_events[1:])
    assert "".join(e["arguments"] for e in tool_events) == call.function.arguments
    assert len(tool_events) < len(call.function.arguments) / 6  # fragments are joined like any delta
    assert text_of(events)[1] == ""


def test_the_agent_loop_sends_the_result_back_and_gets_an_answer(api_url: str) -> None:
    client = _sdk(api_url)
    messages: list[Any] = [{"role": "user", "content": "weather in Rome? sim:tool_calls=1"}]
    first = client.chat.completions.create(model="reasonq-sim", messages=messages, tools=TOOLS)
    turn = first.choices[0].message
    assert turn.tool_calls
    # the assistant turn goes back as the SDK returned it (reasoning_content included), then the tool's result
    messages += [
        turn.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": turn.tool_calls[0].id, "content": "21 C, sunny"},
    ]
    second = client.chat.completions.create(model="reasonq-sim", messages=messages, tools=TOOLS)
    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.content and not second.choices[0].message.tool_calls


def test_langchain_chat_deepseek_binds_tools_through_reasonq(api_url: str) -> None:
    from langchain_core.messages import HumanMessage, ToolMessage
    from langchain_core.tools import tool
    from langchain_deepseek import ChatDeepSeek

    @tool
    def get_weather(city: str, unit: str = "celsius") -> str:
        """The weather in a city."""
        return f"21 {unit} in {city}"

    llm = ChatDeepSeek(model="reasonq-sim", api_base=f"{api_url}/v1", api_key="unused", max_retries=0).bind_tools(
        [get_weather]
    )
    question = HumanMessage('weather in Lima? sim:tool_calls=1 sim:tool_args={"city":"Lima","unit":"celsius"}')
    answer = llm.invoke([question])
    assert [(c["name"], c["args"]) for c in answer.tool_calls] == [("get_weather", {"city": "Lima", "unit": "celsius"})]
    assert answer.additional_kwargs.get("reasoning_content", "").startswith("[simulated reasoning]")
    result = ToolMessage(get_weather.invoke(answer.tool_calls[0]["args"]), tool_call_id=answer.tool_calls[0]["id"])
    final = llm.invoke([question, answer, result])
    assert final.content and not final.tool_calls
    # streamed, LangChain gathers the same call from the chunks
    gathered = None
    for chunk in llm.stream([question]):
        gathered = chunk if gathered is None else gathered + chunk
    assert gathered is not None and [(c["name"], c["args"]) for c in gathered.tool_calls] == [
        ("get_weather", {"city": "Lima", "unit": "celsius"})
    ]
