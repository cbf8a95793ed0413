"""The *direct proxy* baseline: ``python -m bench.proxy PORT SIM_URL``.

A minimal FastAPI endpoint that calls the same simulator with the ``openai`` SDK and relays each delta as
SSE (sse-starlette): no queue, no Redis. What a naive one-connection design costs, to compare reasonq with.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator

import orjson
import uvicorn
from fastapi import FastAPI
from openai import AsyncOpenAI
from sse_starlette import EventSourceResponse


def create_app(sim_url: str) -> FastAPI:
    app = FastAPI()
    client = AsyncOpenAI(base_url=f"{sim_url}/v1", api_key="bench", max_retries=0)

    @app.get("/proxy")
    async def proxy(prompt: str) -> EventSourceResponse:
        async def relay() -> AsyncIterator[bytes]:
            stream = await client.chat.completions.create(
                model="reasonq-sim", messages=[{"role": "user", "content": prompt}], stream=True
            )
            n = 0
            async for chunk in stream:
                for choice in chunk.choices:
                    extra = choice.delta.model_extra or {}
                    text = extra.get("reasoning_content") or choice.delta.content
                    if text:
                        n += 1
                        yield b"id: %d\nevent: delta\ndata: %s\n\n" % (n, orjson.dumps({"delta": text}))
            yield b"event: done\ndata: {}\n\n"

        return EventSourceResponse(relay(), sep="\n")

    return app


if __name__ == "__main__":
    uvicorn.run(
        create_app(sys.argv[2]),
        host="127.0.0.1",
        port=int(sys.argv[1]),
        log_level="warning",
        loop="uvloop",
        http="httptools",
    )
