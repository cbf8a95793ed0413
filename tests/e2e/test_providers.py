"""Several providers with their own limits (issue 16): two simulators as two providers, each limited to 2 streams
at once over two worker processes; generations wait in line (and say so) and start in submission order; a provider
that is down falls back before the first token, never after; each provider gets reasoning back its own way."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from reasonq.processes import ManagedProcess, free_port, http_ok, wait_until
from tests.conftest import python_m
from tests.helpers import read_events, text_of, wait_status

SIM_B_KEY = "sk-provider-b-SECRET-0123456789"


@pytest.fixture
def two_sims(logs_dir: Path) -> Iterator[tuple[str, str]]:
    sims = []
    for name in ("a", "b"):
        port = free_port()
        sim = ManagedProcess(
            f"sim-{name}",
            python_m("sim", "--port", str(port), "--tokens-per-s", "40"),
            log_path=logs_dir / f"sim-provider-{name}.log",
        ).start()
        sims.append((sim, f"http://127.0.0.1:{port}"))
    for sim, url in sims:
        wait_until(lambda url=url: http_ok(f"{url}/healthz"), timeout_s=20, what="simulator", process=sim)
    yield sims[0][1], sims[1][1]
    for sim, _ in sims:
        sim.stop()


def _stats(url: str) -> dict[str, Any]:
    return httpx.get(f"{url}/sim/stats", timeout=10).json()


def _waited(client: httpx.Client, generation_id: str) -> bool:
    """Whether the generation waited in a provider's line (and its status event said so)."""
    return any(
        e.data.get("reason", "").startswith("waiting for provider ")
        for e in read_events(client, generation_id)
        if e.type == "status" and e.data["status"] == "queued"
    )


def test_two_providers_hold_their_limits_across_workers_in_order_and_fall_back(
    cluster: Any, two_sims: tuple[str, str]
) -> None:
    sim_a, sim_b = two_sims
    providers = {
        "b": {
            "base_url": f"{sim_b}/v1",
            "api_key_env": "SIM_B_KEY",
            "profile": "vllm",
            "models": {"model-b": "upstream-b"},
            "max_concurrent": 2,
        },
        "down": {"base_url": f"http://127.0.0.1:{free_port()}/v1", "models": ["model-c"], "fallback": "b"},
    }
    c = cluster(
        {
            "REASONQ_MODEL_BASE_URL": f"{sim_a}/v1",
            "REASONQ_MODELS": "model-a",
            "REASONQ_DEFAULT_MODEL": "model-a",
            "REASONQ_MODEL_PROFILE": "deepseek",
            "REASONQ_MODEL_MAX_CONCURRENT": "2",
            "REASONQ_MODEL_FALLBACK": "b",
            "REASONQ_PROVIDERS": orjson.dumps(providers).decode(),
            "SIM_B_KEY": SIM_B_KEY,
            "REASONQ_PROVIDER_MAX_RETRIES": "3",
        }
    )
    c.start_api()
    c.add_worker(concurrency=20)
    c.add_worker(concurrency=20)
    with httpx.Client(base_url=c.url, timeout=30) as client:
        models = [m["id"] for m in client.get("/v1/models").json()["data"]]
        assert models == ["model-a", "model-b", "model-c"]
        ids: dict[str, list[str]] = {"model-a": [], "model-b": []}
        for i in range(10):
            for model in ids:
                # ~1.2 s each: the line is whole before the first slot frees, however late a task reaches a worker
                prompt = f"limits {model} {i} sim:reasoning_tokens=6 sim:content_tokens=6 sim:tokens_per_s=10"
                body = {"model": model, "messages": [{"role": "user", "content": prompt}]}
                r = client.post("/v1/generations", json=body)
                assert r.status_code == 202, r.text
                ids[model].append(r.json()["id"])
            time.sleep(0.003)  # distinct submission times: the order to keep
        records = {model: [wait_status(client, gid, {"completed"}) for gid in gids] for model, gids in ids.items()}
        for model, recs in records.items():
            # The first two to reach a worker start at once, whichever they are (a task can reach its worker late on
            # a busy machine: CI once saw the 6th submitted take a slot before the 2nd got in line). Every one that
            # waited in line starts in submission order, give or take the two that start together.
            waited = [gid for gid in ids[model] if _waited(client, gid)]
            assert len(waited) >= len(ids[model]) - 2, (len(waited), model)
            starts = [rec["started_at"] for gid, rec in zip(ids[model], recs, strict=True) if gid in waited]
            assert all(starts[i] <= starts[j] for i in range(len(starts)) for j in range(i + 2, len(starts))), starts
        for url in (sim_a, sim_b):
            stats = _stats(url)
            assert stats["max_active"] == 2, stats["max_active"]  # the limit held, and was used
        b_bodies = [b for b in _stats(sim_b)["bodies"] if "limits model-b" in b["messages"][0]["content"]]
        assert {b["model"] for b in b_bodies} == {"upstream-b"}  # the provider's own name for the model

        # a provider that is down: its generation moves to the fallback before the first token
        r = client.post("/v1/generations", json={"model": "model-c", "messages": [{"role": "user", "content": "fb"}]})
        gid = r.json()["id"]
        record = wait_status(client, gid, {"completed", "failed"})
        assert record["status"] == "completed", record
        reasons = [e.data.get("reason", "") for e in read_events(client, gid) if e.type == "status"]
        assert any(
            x.startswith("provider down failed before the first token (connection to provider failed")
            and x.endswith("; using b")
            for x in reasons
        ), reasons
        # a stream that breaks after tokens flowed is retried on its own provider, never the fallback
        prompt = "broken after tokens sim:reasoning_tokens=4 sim:content_tokens=4 sim:fail_after=3 sim:fail_times=1"
        r = client.post("/v1/generations", json={"model": "model-a", "messages": [{"role": "user", "content": prompt}]})
        gid = r.json()["id"]
        assert wait_status(client, gid, {"completed", "failed"})["status"] == "completed"
        events = read_events(client, gid)
        assert [e.data["reason"] for e in events if e.type == "restart"] == ["provider_error"]
        assert not any("using b" in e.data.get("reason", "") for e in events if e.type == "status")
        assert not any(prompt in str(b["messages"]) for b in _stats(sim_b)["bodies"])
        assert text_of(events)[1]

        # each provider gets reasoning back its way: DeepSeek's reasoning_content on the tool-call turn, vLLM's
        # `reasoning`
        call = {"id": "call_9", "type": "function", "function": {"name": "f", "arguments": "{}"}}
        conversation = [
            {"role": "user", "content": "profile check"},
            {"role": "assistant", "content": None, "reasoning_content": "R1", "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_9", "content": "ok"},
        ]
        for model in ("model-a", "model-b"):
            r = client.post("/v1/chat/completions", json={"model": model, "messages": conversation})
            assert r.status_code == 200, r.text
        sent_a = next(b for b in _stats(sim_a)["bodies"] if b["messages"][0]["content"] == "profile check")
        sent_b = next(b for b in _stats(sim_b)["bodies"] if b["messages"][0]["content"] == "profile check")
        assert sent_a["messages"][1] == {
            "role": "assistant",
            "content": None,
            "tool_calls": [call],
            "reasoning_content": "R1",
        }
        assert sent_b["messages"][1] == {"role": "assistant", "content": None, "tool_calls": [call], "reasoning": "R1"}
    for log in c.logs_dir.glob(f"*{c.name}*.log"):
        assert SIM_B_KEY not in log.read_text(errors="replace")
