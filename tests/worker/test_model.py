"""The worker's openai SDK path against the simulator over real HTTP: reasoning split, usage, errors, redaction."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from reasonq.shared.errors import ModelError
from reasonq.shared.schemas import GenerationCreate, UserMessage
from reasonq.shared.settings import Settings
from reasonq.worker.model import StreamLimits, create_model_client, stream_completion
from reasonq.worker.request import build_params
from tests.helpers import expected_text

KEY = "sk-model-key-should-never-leak-42"


def stream(
    sim_url: str, content: str, stall_s: float = 30, deadline_s: float = 60, continue_content: str | None = None
) -> tuple[list[tuple[str, str]], Any]:
    async def main() -> tuple[list[tuple[str, str]], Any]:
        settings = Settings(model_base_url=f"{sim_url}/v1", model_api_key=KEY, model_timeout_s=5)  # type: ignore[arg-type]
        client = create_model_client(settings)
        deltas: list[tuple[str, str]] = []
        request = GenerationCreate(messages=[UserMessage(role="user", content=content)])
        params = build_params(request, "reasonq-sim", continue_content)
        limits = StreamLimits(stall_timeout_s=stall_s, deadline=asyncio.get_running_loop().time() + deadline_s)
        try:
            outcome = await stream_completion(client, params, lambda k, t: deltas.append((k.name, t)), [KEY], limits)
        finally:
            await client.close()
        return deltas, outcome

    return asyncio.run(main())


def test_reasoning_and_content_are_separated(sim_url: str) -> None:
    prompt = "sep sim:reasoning_tokens=20 sim:content_tokens=10"
    deltas, outcome = stream(sim_url, prompt)
    reasoning = "".join(t for k, t in deltas if k == "reasoning")
    content = "".join(t for k, t in deltas if k == "content")
    assert (reasoning, content) == expected_text(prompt)
    assert len(deltas) == 30  # one delta per simulated token
    assert outcome.finish_reason == "stop"
    assert outcome.usage["completion_tokens"] == 30
    assert outcome.usage["completion_tokens_details"]["reasoning_tokens"] == 20


@pytest.mark.parametrize(("status", "retryable"), [(429, True), (500, True), (400, False)])
def test_http_errors_become_model_errors(sim_url: str, status: int, retryable: bool) -> None:
    with pytest.raises(ModelError) as info:
        stream(sim_url, f"x sim:status={status}")
    assert info.value.kind == "provider_http_error" and info.value.status_code == status
    assert info.value.retryable is retryable
    assert info.value.retry_after_s == (1.0 if status == 429 else None)
    assert KEY not in str(info.value.to_dict())


def test_a_broken_stream_is_a_connection_error(sim_url: str) -> None:
    with pytest.raises(ModelError) as info:
        stream(sim_url, "x sim:reasoning_tokens=10 sim:fail_after=5")
    assert info.value.kind == "provider_connection"


def test_a_stalled_stream_times_out(sim_url: str) -> None:
    with pytest.raises(ModelError) as info:
        stream(sim_url, "x sim:reasoning_tokens=10 sim:stall_after=3 sim:stall_s=5", stall_s=0.5)
    assert info.value.kind == "stall_timeout" and not info.value.retryable


def test_the_deadline_ends_a_stream_that_keeps_going(sim_url: str) -> None:
    with pytest.raises(ModelError) as info:
        stream(sim_url, "x sim:reasoning_tokens=100 sim:tokens_per_s=20", deadline_s=0.5)
    assert info.value.kind == "generation_timeout"


def test_a_continuation_streams_the_rest_of_the_answer(sim_url: str) -> None:
    prompt = "cont sim:reasoning_tokens=10 sim:content_tokens=20"
    reasoning, content = expected_text(prompt)
    cut = content[: len(content) // 2]
    cut = cut[: cut.rfind(" ")]  # a whole number of tokens, as the writer always stores
    deltas, outcome = stream(sim_url, prompt, continue_content=cut)
    assert [k for k, _ in deltas if k == "reasoning"] == []
    assert cut + "".join(t for _, t in deltas) == content
    assert outcome.finish_reason == "stop"


def test_an_unreachable_provider_is_a_connection_error() -> None:
    from reasonq.processes import free_port

    with pytest.raises(ModelError) as info:
        stream(f"http://127.0.0.1:{free_port()}", "x")
    assert info.value.kind == "provider_connection"
    assert KEY not in info.value.message


def test_redaction_of_a_provider_that_echoes_the_key() -> None:
    from reasonq.shared.errors import redact

    assert redact(f"bad key {KEY} given", [KEY]) == "bad key *** given"
    assert redact("nothing here", ["", "ab"]) == "nothing here"
