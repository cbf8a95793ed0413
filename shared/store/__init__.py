"""The store: every read and write of reasonq's Redis keys, one noun per module, shared by the API and worker.

``GenerationStore`` holds one of each part over one client; ``api/`` reaches Redis only through these parts
(STYLE: no reach-through to the raw client), so a part is where a change of topology (Cluster) lands.

- ``records``: generation records (create, read, list, cancel, text so far);
- ``streams``: event streams (a worker's fenced appends and final write; reads viewers replay from);
- ``leases``: which worker runs which attempt, hand-backs, re-dispatch of the queued;
- ``presence``: viewers per generation, worker beats, deployment counters, health;
- ``batches``, ``files``, ``idempotency``, ``admission``: batches, uploaded files, ``Idempotency-Key`` claims,
  per-key limits' counts;
- ``capacity``: providers' concurrent-stream slots and start rates, across every worker;
- ``webhooks``: the webhook outbox, events and their delivery states;
- ``durable``: Durable Streams protocol streams (issue 17);
- ``subscriptions``: their subscriptions (webhook and pull-wake cursors over streams).
"""

from __future__ import annotations

from redis.asyncio import Redis

from reasonq.shared.batching import ScriptBatcher
from reasonq.shared.redis import is_cluster
from reasonq.shared.store.admission import AdmissionCounts
from reasonq.shared.store.batches import Batches, BatchOptions, BatchState
from reasonq.shared.store.capacity import Grant, ProviderCapacity
from reasonq.shared.store.durable import DurableStreams
from reasonq.shared.store.files import FileMeta, Files
from reasonq.shared.store.idempotency import IdempotencyKeys
from reasonq.shared.store.leases import ClaimResult, ClaimTarget, Leases
from reasonq.shared.store.presence import Presence
from reasonq.shared.store.records import ANONYMOUS, Access, Records
from reasonq.shared.store.streams import EventLog, Fence, Outcome
from reasonq.shared.store.subscriptions import Subscriptions
from reasonq.shared.store.webhooks import WebhookEvent, WebhookOutbox

__all__ = [
    "ANONYMOUS",
    "Access",
    "AdmissionCounts",
    "BatchOptions",
    "BatchState",
    "Batches",
    "ClaimResult",
    "ClaimTarget",
    "DurableStreams",
    "EventLog",
    "Fence",
    "FileMeta",
    "Files",
    "GenerationStore",
    "Grant",
    "IdempotencyKeys",
    "Leases",
    "Outcome",
    "Presence",
    "ProviderCapacity",
    "Records",
    "Subscriptions",
    "WebhookEvent",
    "WebhookOutbox",
]


class GenerationStore:
    """Every part of the store over one Redis client.

    Args:
        redis: an asyncio Redis client with ``decode_responses=False``.
        batcher: when given, the hot-path writes (append, finish) and a start's read and claim are pipelined with
            other callers'.
        simulated: the deployment's model is the built-in simulator: each generation created is labelled so.
        notify: webhooks are configured: each generation created sends an event when it ends.
    """

    def __init__(
        self,
        redis: Redis,
        batcher: ScriptBatcher | None = None,
        *,
        simulated: bool = False,
        notify: bool = False,
    ) -> None:
        # The raw client, for tests that look at keys directly. api/ never uses it (tests/packaging checks).
        self.redis = redis
        # A Redis Cluster: readers of several generations' streams read per shard (one slot per call).
        self.sharded = is_cluster(redis)
        self.records = Records(redis, batcher, simulated=simulated, notify=notify)
        self.streams = EventLog(redis, batcher)
        self.leases = Leases(redis, batcher)
        self.presence = Presence(redis)
        self.batches = Batches(redis, self.records)
        self.files = Files(redis)
        self.durable = DurableStreams(redis)
        self.subscriptions = Subscriptions(redis)
        self.idempotency = IdempotencyKeys(redis)
        self.admission = AdmissionCounts(redis)
        self.capacity = ProviderCapacity(redis)
        self.webhooks = WebhookOutbox(redis, self.batches)
