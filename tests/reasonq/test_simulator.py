"""The simulated reasoning model speaks the OpenAI protocol (checked with the openai SDK itself)."""

from __future__ import annotations

import openai
import pytest

from reasonq.simulator.script import build_script, parse_directives


def test_same_request_same_text_and_seed_changes_it() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hello"}], "seed": 1}
    assert build_script(body).reasoning == build_script(dict(body)).reasoning
    assert build_script({**body, "seed": 2}).reasoning != build_script(body).reasoning


def test_max_tokens_cuts_and_says_length() -> None:
    body = {"messages": [{"role": "user", "content": "sim:reasoning_tokens=10 sim:content_tokens=10"}]}
    script = build_script({**body, "max_tokens": 15})
    assert (len(script.reasoning), len(script.content), script.finish_reason) == (10, 5, "length")
    assert build_script(body).finish_reason == "stop"


def test_directives() -> None:
    d = parse_directives([{"role": "user", "content": "sim:fail_after=3 sim:tokens_per_s=2.5 sim:status=429"}])
    assert (d.fail_after, d.tokens_per_s, d.status) == (3, 2.5, 429)


def test_streams_like_deepseek_through_the_openai_sdk(sim_url: str) -> None:
    client = openai.OpenAI(base_url=f"{sim_url}/v1", api_key="x")
    messages = [{"role": "user", "content": "sim:reasoning_tokens=5 sim:content_tokens=4"}]
    chunks = list(
        client.chat.completions.create(
            model="reasonq-sim", messages=messages, stream=True, stream_options={"include_usage": True}
        )
    )
    extras = [c.choices[0].delta.model_extra or {} for c in chunks if c.choices]
    reasoning = "".join(e.get("reasoning_content") or "" for e in extras)
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    script = build_script({"model": "reasonq-sim", "messages": messages})
    assert reasoning == "".join(script.reasoning) and reasoning.startswith("[simulated reasoning]")
    assert content == "".join(script.content) and content.startswith("[simulated answer]")
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 9
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == ["stop"]

    full = client.chat.completions.create(model="reasonq-sim", messages=messages)
    assert full.choices[0].message.content == content
    assert client.models.list().data[0].id == "reasonq-sim"

    with pytest.raises(openai.RateLimitError):
        client.with_options(max_retries=0).chat.completions.create(
            model="reasonq-sim", messages=[{"role": "user", "content": "sim:status=429"}]
        )
