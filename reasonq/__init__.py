"""reasonq: durable, resumable, multi-viewer streaming of reasoning-model generations.

``from reasonq import Client, AsyncClient`` for the Python clients.
"""

from reasonq.client import AsyncClient, Client, ReasonqClientError, StreamEvent

__all__ = ["AsyncClient", "Client", "ReasonqClientError", "StreamEvent"]
__version__ = "0.1.0"
