"""The worker's openai SDK path against the simulator over real HTTP: reasoning split, usage, errors, redaction."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from shared.errors import ModelError
from shared.schemas import GenerationCreate, Message
from shared.settings import Settings
from tests.helpers import expected_text
from worker.model import create_model_client, stream_completion

KEY = "sk-model-key-should-never-leak-42"


def stream(sim_url: str, content: str, **params: Any) -> tuple[list[tuple[str, str]], Any]:
    async def main() -> tuple[list[tuple[str, str]], Any]:
        settings = Settings(model_base_url=f"{sim_url}/v1", model_api_key=KEY, model_timeout_s=5)  # type: ignore[arg-type]
        client = create_model_client(settings)
        deltas: list[tuple[str, str]] = []
        request = GenerationCreate(messages=[Message(role="user", content=content)], **params)
        try:
            outcome = await stream_completion(client, request, "reasonq-sim", lambda k, t: deltas.append((k, t)), [KEY])
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


@pytest.mark.parametrize(("status", "kind"), [(429, "provider_http_error"), (500, "provider_http_error")])
def test_http_errors_become_model_errors(sim_url: str, status: int, kind: str) -> None:
    with pytest.raises(ModelError) as info:
        stream(sim_url, f"x sim:status={status}")
    assert info.value.kind == kind and info.value.status_code == status
    assert KEY not in str(info.value.to_dict())


def test_a_broken_stream_is_a_connection_error(sim_url: str) -> None:
    with pytest.raises(ModelError) as info:
        stream(sim_url, "x sim:reasoning_tokens=10 sim:fail_after=5")
    assert info.value.kind == "provider_connection"


def test_an_unreachable_provider_is_a_connection_error() -> None:
    from reasonq.processes import free_port

    with pytest.raises(ModelError) as info:
        stream(f"http://127.0.0.1:{free_port()}", "x")
    assert info.value.kind == "provider_connection"
    assert KEY not in info.value.message


def test_redaction_of_a_provider_that_echoes_the_key() -> None:
    from shared.errors import redact

    assert redact(f"bad key {KEY} given", [KEY]) == "bad key *** given"
    assert redact("nothing here", ["", "ab"]) == "nothing here"
