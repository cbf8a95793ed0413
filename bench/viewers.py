"""A lean SSE load generator: ``python -m bench.viewers HOST PORT PATH N OUT [--slow]``.

PATH may be ``@FILE``: one path per line, viewer i follows line ``i % lines`` (many generations at once).
Opens N connections with raw asyncio streams (no HTTP library: the load generator must not be what is
measured), reads each event stream to ``done``, and writes every event's arrival time (``time.time()``) per
viewer to OUT as JSON lines of ``[ids, times, connected_at, status, opened_at]`` (when its status line arrived,
the HTTP status, when its TCP connection was open), or ``[[], [], error]``. With ``--slow`` each viewer reads 256
bytes at a time with a pause between reads: a deliberately slow client.
"""

from __future__ import annotations

import array
import asyncio
import json
import sys
import time
from pathlib import Path


async def _connect(host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    for attempt in range(50):  # a burst of thousands of connects can overflow the listen backlog: retry
        try:
            return await asyncio.open_connection(host, port, limit=2**20)
        except OSError:
            await asyncio.sleep(0.05 * (attempt + 1))
    raise ConnectionError("could not connect")


async def _view(
    host: str, port: int, path: str, slow: bool, start: asyncio.Event, first: list[int]
) -> tuple[list[int], list[float], float, int, float]:
    await start.wait()
    reader, writer = await _connect(host, port)
    opened_at = time.time()
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n".encode())
    ids: list[int] = []
    times = array.array("d")
    status_line = await reader.readline()
    connected_at = time.time()
    status = int(status_line.split(b" ", 2)[1]) if status_line.startswith(b"HTTP/") else 0
    pending = b""
    done = status != 200
    while not done:
        piece = await (reader.read(256) if slow else reader.read(65536))
        if not piece:
            break
        now = time.time()
        pending += piece
        *lines, pending = pending.split(b"\n")
        for line in lines:
            if line.startswith(b"id: "):
                if not ids:
                    first.append(1)
                ids.append(int(line[4:]))
                times.append(now)
            elif line.startswith(b"event: done"):
                done = True
        if slow:
            await asyncio.sleep(0.02)
    writer.close()
    return ids, list(times), connected_at, status, opened_at


async def main(host: str, port: int, path: str, n: int, out: str, slow: bool) -> None:
    start = asyncio.Event()
    first: list[int] = []
    paths = Path(path[1:]).read_text().split() if path.startswith("@") else [path]
    tasks = [asyncio.create_task(_view(host, port, paths[i % len(paths)], slow, start, first)) for i in range(n)]
    with open(out + ".start", "w") as f:  # when this process began connecting (join storms measure from here)
        f.write(str(time.time()))
    start.set()

    def failed(task: asyncio.Task[tuple[list[int], list[float], float, int, float]]) -> bool:
        return task.done() and (task.exception() is not None or not task.result()[0])

    async def report_ready() -> None:  # every viewer of this process has its first event (or failed): it is live
        while len(first) < n - sum(map(failed, tasks)):
            await asyncio.sleep(0.05)
        with open(out + ".ready", "w") as f:
            f.write(str(time.time()))

    ready = asyncio.create_task(report_ready())
    results = await asyncio.gather(*tasks, return_exceptions=True)
    await ready
    with open(out + ".cpu", "w") as f:
        f.write(str(time.process_time()))
    with open(out, "w") as f:
        for r in results:
            f.write(json.dumps(r if not isinstance(r, BaseException) else [[], [], repr(r)]) + "\n")


if __name__ == "__main__":
    import uvloop

    host, port, path, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5]
    uvloop.run(main(host, port, path, n, out, "--slow" in sys.argv))
