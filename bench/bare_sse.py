"""A bare SSE server, the join storm's baseline: ``python -m bench.bare_sse PORT EVENTS STALL_S``.

Raw asyncio streams on uvloop, no framework, no Redis: each connection gets its response headers the moment its
request arrives; STALL_S after the first connection, every viewer gets EVENTS events and ``done``. What the load
generator and the kernel cost on this machine, for the same viewers, so reasonq's connect time has a floor to be
read against.
"""

from __future__ import annotations

import asyncio
import sys

HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-store\r\n\r\n"


async def main(port: int, events: int, stall_s: float) -> None:
    viewers: list[asyncio.StreamWriter] = []
    first = asyncio.Event()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(HEAD)
        viewers.append(writer)
        first.set()

    server = await asyncio.start_server(accept, "127.0.0.1", port, backlog=4096)
    print("ready", flush=True)
    await first.wait()
    await asyncio.sleep(stall_s)
    frames = b"".join(b"id: %d\nevent: content\ndata: {}\n\n" % i for i in range(1, events + 1))
    frames += b"id: %d\nevent: done\ndata: {}\n\n" % (events + 1)
    for writer in viewers:
        writer.write(frames)
    for writer in viewers:
        await writer.drain()
        writer.close()
    server.close()


if __name__ == "__main__":
    import uvloop

    uvloop.run(main(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])))
