"""The uvicorn server of ``reasonq api``: its configuration, and a shutdown that ends streams before it waits."""

from __future__ import annotations

import sys
from types import FrameType

import uvicorn

from reasonq.api.protocol import GuardedHttpToolsProtocol

# uvicorn's exit status when the app failed to start.
STARTUP_FAILURE = 3


class DrainingServer(uvicorn.Server):
    """On SIGTERM or Ctrl-C, tell the hub to end every event stream before uvicorn waits for connections to close.

    uvicorn closes the listening socket, waits up to ``timeout_graceful_shutdown`` for open responses to finish,
    then cancels them, and only after that runs the lifespan shutdown: a live event stream never finishes by
    itself, so every viewer was cut bare (issue 12: the openai SDK raised ``APIConnectionError``). Draining first,
    native streams end with a ``retry`` hint and chat streams with an error chunk that says where to read on.
    """

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        from reasonq.api.main import app

        hub = getattr(app.state, "hub", None)
        if hub is not None:
            hub.drain_soon()  # from a signal handler: scheduled on the loop, not run in the middle of it
        super().handle_exit(sig, frame)


def run_api(host: str, port: int, *, log_level: str, access_log: bool, backlog: int) -> None:
    """Serve the API until a signal stops it."""
    config = uvicorn.Config(
        "reasonq.api.main:app",
        host=host,
        port=port,
        loop="uvloop",
        http=GuardedHttpToolsProtocol,
        log_level=log_level,
        log_config=None,  # uvicorn's loggers go through reasonq's handler (plain or JSON lines)
        access_log=access_log,
        timeout_graceful_shutdown=5,
        backlog=backlog,
    )
    config.load_app()
    server = DrainingServer(config)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    if not server.started:
        sys.exit(STARTUP_FAILURE)
