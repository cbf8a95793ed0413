"""A pickup round's gate (worker/pickup.py, issue 14): the generations one round took all claim before any asks the
model, and one that never claims (waiting for provider capacity, refused) holds the others back only briefly."""

from __future__ import annotations

import asyncio
import time

from reasonq.worker import pickup
from reasonq.worker.pickup import _Round


def test_claimed_generations_wait_for_the_rest_of_their_round() -> None:
    async def main() -> None:
        taken = _Round(["a", "b", "c"])
        order: list[str] = []

        async def run(name: str, claim_after_s: float) -> None:
            await asyncio.sleep(claim_after_s)
            order.append(f"claimed {name}")
            await taken.claimed(name)
            order.append(f"model {name}")

        async def refused() -> None:  # stopped before its claim (another worker had it): it only arrives
            await asyncio.sleep(0.03)
            order.append("refused c")
            taken.arrive("c")

        await asyncio.gather(run("a", 0.0), run("b", 0.01), refused())
        assert order[:3] == ["claimed a", "claimed b", "refused c"]
        assert sorted(order[3:]) == ["model a", "model b"]

    asyncio.run(main())


def test_a_generation_that_never_claims_holds_its_round_back_at_most_the_gate() -> None:
    async def main() -> None:
        taken = _Round(["a", "b"])
        started = time.perf_counter()
        await taken.claimed("a")  # b waits for capacity and never arrives
        waited_s = time.perf_counter() - started
        assert pickup.ROUND_GATE_S * 0.9 <= waited_s < pickup.ROUND_GATE_S + 0.2
        started = time.perf_counter()
        await _Round(["a"]).claimed("a")  # nothing else to wait for
        assert time.perf_counter() - started < 0.05

    asyncio.run(main())
