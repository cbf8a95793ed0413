"""``Coalescer``: callers of one key at once share reads, and none gets a read that started before its call."""

from __future__ import annotations

import asyncio

import pytest

from reasonq.api.coalesce import Coalescer


class Source:
    """A value that changes, read through a gate the test opens: counts the reads and when each started."""

    def __init__(self) -> None:
        self.value = 0
        self.reads = 0
        self.gate = asyncio.Event()
        self.fail = False

    async def read(self, key: str) -> tuple[str, int]:
        self.reads += 1
        seen = self.value  # what the read sees is the value when it starts
        await self.gate.wait()
        if self.fail:
            raise ConnectionError("lost Redis")
        return key, seen


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_callers_at_once_share_one_read_and_later_callers_the_next() -> None:
    async def main() -> None:
        source = Source()
        reader = Coalescer(source.read)
        first = asyncio.create_task(reader.get("g"))
        await _settle()
        at_once = [asyncio.create_task(reader.get("g")) for _ in range(100)]  # while the first read runs
        source.value = 1  # a write these callers may have seen before they asked
        later = [asyncio.create_task(reader.get("g")) for _ in range(100)]
        other = asyncio.create_task(reader.get("h"))
        await _settle()
        assert source.reads == 2  # "g" once, "h" once: the other "g" callers wait for the first read to end
        source.gate.set()
        assert await first == ("g", 0)
        # 200 callers, one read, which started after each of them asked: never the read that started before
        assert set(await asyncio.gather(*at_once, *later)) == {("g", 1)}
        assert await other == ("h", 1)
        assert source.reads == 3
        assert await reader.get("g") == ("g", 1) and source.reads == 4  # nothing cached once no read is running

    asyncio.run(main())


def test_a_caller_that_leaves_does_not_cancel_the_others_read() -> None:
    async def main() -> None:
        source = Source()
        reader = Coalescer(source.read)
        leaving, staying = (asyncio.create_task(reader.get("g")) for _ in range(2))
        await _settle()
        leaving.cancel()
        await _settle()
        source.gate.set()
        assert await staying == ("g", 0)
        with pytest.raises(asyncio.CancelledError):
            await leaving

    asyncio.run(main())


def test_a_failed_read_fails_its_callers_only() -> None:
    async def main() -> None:
        source = Source()
        source.fail = True
        reader = Coalescer(source.read)
        first = asyncio.create_task(reader.get("g"))
        await _settle()
        queued = asyncio.create_task(reader.get("g"))
        await _settle()
        source.gate.set()
        with pytest.raises(ConnectionError):
            await first
        with pytest.raises(ConnectionError):  # the next read failed too
            await queued
        source.fail = False
        assert await reader.get("g") == ("g", 0)

    asyncio.run(main())
