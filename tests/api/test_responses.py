"""The Responses API (issue 15), with the unchanged ``openai`` SDK: background mode, streaming cut and resumed with
``starting_after`` (exactly the rest), retrieve, cancel, delete, input items, tools; every object and event parsed
with the SDK's own types."""

from __future__ import annotations

import time
from typing import Any

import httpx
import openai
import orjson
import pytest
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from tests.helpers import expected_text

EVENT = TypeAdapter(ResponseStreamEvent)


@pytest.fixture
def sdk(api_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{api_url}/v1", api_key="unused", max_retries=0)


def _checked(events: list[Any]) -> list[Any]:
    """Every event validated as the SDK's own type (not only constructed)."""
    for event in events:
        EVENT.validate_python(event.to_dict())
    return events


def _text(events: list[Any]) -> tuple[str, str]:
    reasoning = "".join(e.delta for e in events if e.type == "response.reasoning_text.delta")
    content = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    return reasoning, content


def _wait(sdk: openai.OpenAI, response_id: str, statuses: set[str]) -> Response:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        response = sdk.responses.retrieve(response_id)
        if response.status in statuses:
            return response
        time.sleep(0.05)
    raise AssertionError(f"{response_id} did not reach {statuses}")


def test_a_background_stream_cut_and_resumed_with_starting_after_gives_exactly_the_rest(sdk: openai.OpenAI) -> None:
    prompt = "responses resume sim:reasoning_tokens=30 sim:content_tokens=20 sim:tokens_per_s=200"
    stream = sdk.responses.create(model="reasonq-sim", input=prompt, background=True, stream=True)
    first: list[Any] = []
    for event in stream:
        first.append(event)
        if len(first) == 12:
            break
    stream.close()
    response_id = first[0].response.id
    assert first[0].type == "response.created" and first[0].response.status == "queued"
    rest = list(sdk.responses.retrieve(response_id, stream=True, starting_after=first[-1].sequence_number))
    events = _checked(first + rest)
    assert [e.sequence_number for e in events] == list(range(len(events)))  # none lost, none repeated
    assert _text(events) == expected_text(prompt)
    types = [e.type for e in events]
    assert types[:2] == ["response.created", "response.in_progress"] and types[-1] == "response.completed"
    assert types.count("response.output_item.added") == types.count("response.output_item.done") == 2
    final = events[-1].response
    assert final.status == "completed" and final.output_text == expected_text(prompt)[1]
    assert final.output[0].type == "reasoning" and final.output[0].content[0].text == expected_text(prompt)[0]
    assert final.usage is not None and final.usage.output_tokens == 50
    assert final.usage.output_tokens_details.reasoning_tokens == 30
    # a second resume from the middle gives the same events again: the numbering is the stored events'
    again = list(sdk.responses.retrieve(response_id, stream=True, starting_after=5))
    assert [e.to_dict() for e in again] == [e.to_dict() for e in events[6:]]


def test_retrieve_background_and_plain(sdk: openai.OpenAI, client: httpx.Client) -> None:
    prompt = "responses plain sim:reasoning_tokens=5 sim:content_tokens=4"
    created = sdk.responses.create(
        model="reasonq-sim",
        input=prompt,
        background=True,
        instructions="be brief",
        max_output_tokens=300,
        reasoning={"effort": "low"},
        metadata={"k": "v"},
    )
    Response.model_validate(created.to_dict())
    assert created.status in ("queued", "in_progress") and created.background is True
    done = _wait(sdk, created.id, {"completed"})
    Response.model_validate(done.to_dict())
    assert done.output_text
    assert (done.instructions, done.max_output_tokens, done.metadata) == ("be brief", 300, {"k": "v"})
    assert done.reasoning is not None and done.reasoning.effort == "low"
    assert done.completed_at is not None and done.error is None
    # the response is a generation: the native record and stream have it too
    record = client.get(f"/v1/generations/{created.id}").json()
    assert record["messages"][0] == {"role": "system", "content": "be brief"}
    assert record["content"] == done.output_text
    # without background the call waits for the end
    plain = sdk.responses.create(model="reasonq-sim", input=[{"role": "user", "content": prompt}])
    assert plain.status == "completed" and plain.output_text == expected_text(prompt)[1]
    assert plain.background is False


def test_cancel_and_delete(sdk: openai.OpenAI) -> None:
    prompt = "responses cancel sim:reasoning_tokens=500 sim:content_tokens=5 sim:tokens_per_s=50"
    created = sdk.responses.create(model="reasonq-sim", input=prompt, background=True)
    _wait(sdk, created.id, {"in_progress"})
    cancelled = sdk.responses.cancel(created.id)
    Response.model_validate(cancelled.to_dict())
    assert cancelled.status == "cancelled"
    events = _checked(list(sdk.responses.retrieve(created.id, stream=True)))
    assert events[-1].type == "response.incomplete" and events[-1].response.status == "cancelled"
    assert sdk.responses.cancel(created.id).status == "cancelled"  # idempotent
    assert sdk.responses.delete(created.id) is None
    with pytest.raises(openai.NotFoundError):
        sdk.responses.retrieve(created.id)
    with pytest.raises(openai.NotFoundError):
        sdk.responses.delete(created.id)


def test_input_items_and_function_tools(sdk: openai.OpenAI, sim_url: str) -> None:
    tools: Any = [
        {
            "type": "function",
            "name": "get_weather",
            "description": "The weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        }
    ]
    marker = f"responses tools {time.time_ns()} sim:tool_calls=1"
    stream = sdk.responses.create(model="reasonq-sim", input=marker, tools=tools, stream=True)
    events = _checked(list(stream))
    final = events[-1].response
    call = [item for item in final.output if item.type == "function_call"][0]
    assert call.name == "get_weather" and call.arguments.startswith("{") and call.call_id
    deltas = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    assert deltas == call.arguments
    assert final.tools[0].name == "get_weather"  # type: ignore[union-attr]
    # the conversation goes back as items: reasoning, the call, its output
    reasoning = [item for item in final.output if item.type == "reasoning"][0]
    follow = f"{marker} then"
    answer = sdk.responses.create(
        model="reasonq-sim",
        instructions="use tools",
        tools=tools,
        input=[
            {"role": "user", "content": [{"type": "input_text", "text": follow}]},
            reasoning.to_dict(),  # type: ignore[list-item]
            call.to_dict(),  # type: ignore[list-item]
            {"type": "function_call_output", "call_id": call.call_id, "output": "21 C"},
        ],
    )
    assert answer.status == "completed"
    body = [b for b in httpx.get(f"{sim_url}/sim/stats", timeout=10).json()["bodies"] if follow in str(b)][-1]
    roles = [m["role"] for m in body["messages"]]
    assert roles == ["system", "user", "assistant", "tool"], body["messages"]
    assert body["messages"][2]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert body["messages"][3] == {"role": "tool", "content": "21 C", "tool_call_id": call.call_id}
    assert body["tools"][0]["function"]["name"] == "get_weather"


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"previous_response_id": "resp_1"}, "body previous_response_id"),
        ({"input": ""}, "body input"),
        ({"input": []}, "body input"),
        ({"input": [{"role": "wizard", "content": "x"}]}, "body input.0"),
        ({"tools": [{"type": "web_search"}]}, "body tools.0"),
        ({"input": [{"type": "reasoning", "content": [{"text": "hm"}]}]}, "body input"),
    ],
)
def test_bad_requests_name_the_field(client: httpx.Client, extra: dict[str, Any], field: str) -> None:
    body = {"model": "reasonq-sim", "input": "x", **extra}
    r = client.post("/v1/responses", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["message"].startswith(field), r.json()


def _stored(seq: int, kind: str, **data: Any) -> Any:
    from reasonq.shared.events import StoredEvent

    return StoredEvent(seq, kind, orjson.dumps(data))


def test_a_restart_after_text_ends_the_stream_with_an_error_and_one_before_text_is_invisible() -> None:
    from reasonq.api.responses_stream import ResponseEvents, Shell

    shell = Shell("gen_x", 1.0, "m", {}, {})
    made = ResponseEvents(shell)
    out = made.start()
    out += made.feed(_stored(1, "status", status="queued", attempt=0))[0]
    out += made.feed(_stored(2, "status", status="running", attempt=1))[0]
    # a worker lost before any text: the new attempt's status and restart show nothing
    out += made.feed(_stored(3, "status", status="running", attempt=2))[0]
    events, last = made.feed(_stored(4, "restart", attempt=2, reason="worker_lost"))
    assert (events, last) == ([], False)
    out += made.feed(_stored(5, "reasoning", delta="think"))[0]
    out += made.feed(_stored(6, "content", delta="ans"))[0]
    # lost after text: this format cannot take it back
    events, last = made.feed(_stored(7, "restart", attempt=3, reason="worker_lost"))
    assert last and [e["type"] for e in events] == ["error"] and events[0]["code"] == "generation_restarted"
    out += events
    for event in out:
        EVENT.validate_python(event)
    assert [e["sequence_number"] for e in out] == list(range(len(out)))
    types = [e["type"] for e in out]
    assert types.count("response.in_progress") == 1
    # the reasoning item was closed (done events) before the message item opened
    assert types.index("response.output_item.done") < types.index("response.output_text.delta")
