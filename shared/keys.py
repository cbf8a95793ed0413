"""Every Redis key reasonq uses, in one place, with its lifetime and its hash slot.

A generation owns four keys. They have no TTL while the generation is live and all expire ``retention_s`` after
it ends (set atomically by the ``finish`` script).

Redis Cluster (issue 13): a Lua script may touch only keys of one hash slot, and claim, finish and cancel change a
generation's keys and the lease/queued indexes together. So generations are spread over ``SHARDS`` shards, each a
hash tag (``{...}``) shared by its generations' keys and its own ``leases`` and ``queued`` indexes: every script
stays in one slot, and sweeps and renewals run per shard. On one Redis the tags change nothing. The shard of a
generation is a function of its id alone and the tags are fixed, so ``SHARDS`` can never change without moving
every key.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Iterable
from typing import Any, TypeVar

from redis.crc import key_slot

PREFIX = "rq:"
_Item = TypeVar("_Item", bound=tuple[str, Any])
SHARDS = 16
_SLOTS = 16_384


def _shard_tags() -> tuple[str, ...]:
    # Shard i's tag hashes into the i-th sixteenth of the slot space, so a cluster that splits slots evenly between
    # its masters (as `redis-cli --cluster create` does) gives each master an even share of shards. Deterministic:
    # the same tags on every machine and version (tests/shared/test_keys_and_settings.py pins them).
    tags = []
    width = _SLOTS // SHARDS
    for shard in range(SHARDS):
        n = 0
        while key_slot(f"g{shard}.{n}".encode()) // width != shard:
            n += 1
        tags.append(f"g{shard}.{n}")
    return tuple(tags)


SHARD_TAGS = _shard_tags()


def shard_of(generation_id: str) -> int:
    """The shard a generation's keys live in (a function of its id alone)."""
    return zlib.crc32(generation_id.encode()) % SHARDS


def by_shard(items: Iterable[_Item]) -> dict[int, list[_Item]]:
    """Items whose first element is a generation id, grouped by that generation's shard (one call per shard)."""
    groups: dict[int, list[_Item]] = {}
    for item in items:
        groups.setdefault(shard_of(item[0]), []).append(item)
    return groups


def _gen(generation_id: str) -> str:
    return f"{PREFIX}{{{SHARD_TAGS[shard_of(generation_id)]}}}:gen:{generation_id}"


def record_key(generation_id: str) -> str:
    """Hash: the generation's record (status, attempt, last event seq, request). Lives until retention after the end."""
    return _gen(generation_id)


def events_key(generation_id: str) -> str:
    """Stream: the generation's events; entry id ``N-0`` is event id N. Lives until retention after the end."""
    return f"{_gen(generation_id)}:events"


def reasoning_key(generation_id: str) -> str:
    """String: the current attempt's reasoning text so far (APPENDed with each write). Same lifetime as the record."""
    return f"{_gen(generation_id)}:reasoning"


def content_key(generation_id: str) -> str:
    """String: the current attempt's answer text so far. Same lifetime as the record."""
    return f"{_gen(generation_id)}:content"


def generation_keys(generation_id: str) -> list[str]:
    """The four keys a generation owns: record, events, reasoning, content (one hash slot)."""
    return [
        record_key(generation_id),
        events_key(generation_id),
        reasoning_key(generation_id),
        content_key(generation_id),
    ]


def leases_key(shard: int) -> str:
    """Sorted set: one shard's running generation ids scored by lease deadline (ms, Redis clock). Member removed at
    the end."""
    return f"{PREFIX}{{{SHARD_TAGS[shard]}}}:leases"


def queued_key(shard: int) -> str:
    """Sorted set: one shard's queued generation ids scored by last dispatch (ms). Member removed when claimed or
    ended."""
    return f"{PREFIX}{{{SHARD_TAGS[shard]}}}:queued"


def script_keys(generation_id: str) -> list[str]:
    """KEYS of the claim, finish, cancel and restore scripts: the generation's four keys, then its shard's four
    indexes (leases, queued, webhook outbox, activity)."""
    shard = shard_of(generation_id)
    return [
        *generation_keys(generation_id),
        leases_key(shard),
        queued_key(shard),
        webhook_due_key(shard),
        activity_key(shard),
    ]


def append_keys(generation_id: str) -> list[str]:
    """KEYS of the append script: the generation's four keys, then its shard's activity index."""
    return [*generation_keys(generation_id), activity_key(shard_of(generation_id))]


def wait_keys(generation_id: str) -> list[str]:
    """KEYS of the wait script: the generation's record and events, then its shard's queued and activity indexes."""
    shard = shard_of(generation_id)
    return [record_key(generation_id), events_key(generation_id), queued_key(shard), activity_key(shard)]


def activity_key(shard: int) -> str:
    """Stream: one shard's activity index (issue 14). Every script that appends to a stream the hub follows (a
    generation's events, a durable stream's data) adds one entry here in the same call, ``k`` = that stream's key,
    capped at about ``ACTIVITY_MAXLEN`` entries (the scripts' ``XADD … MAXLEN ~``); no TTL (it is bounded). An API
    process watching many live streams blocks on the activity indexes and reads only the streams that moved,
    instead of one XREAD over every stream it watches (O(streams) per call: 14 ms at 10,000)."""
    return f"{PREFIX}{{{SHARD_TAGS[shard]}}}:activity"


# The activity index's cap, as written in every script that appends to it (tests/shared check they agree). A hub
# that fell this far behind re-reads every stream it watches (api/hub_reader.py).
ACTIVITY_MAXLEN = 10_000


def webhook_due_key(shard: int) -> str:
    """Sorted set: one shard's webhook outbox, event ids scored by when their next delivery is due (ms, Redis
    clock). The generation's end adds its event in the same script (so no end is ever without its event); a
    deliverer holds an event by moving its score past the attempt; the member goes when every endpoint is done."""
    return f"{PREFIX}{{{SHARD_TAGS[shard]}}}:webhooks"


def webhook_event_key(event_id: str, object_id: str) -> str:
    """Hash: a webhook event (type, body, owner) and each endpoint's delivery state, in the slot of its object's
    shard (beside its outbox). Expires after the retention time once written."""
    return f"{PREFIX}{{{SHARD_TAGS[shard_of(object_id)]}}}:whevt:{event_id}"


def webhook_log_key(event_id: str, object_id: str) -> str:
    """List: a webhook event's delivery attempts (JSON, newest last, the last ``WEBHOOK_LOG_KEPT``)."""
    return f"{webhook_event_key(event_id, object_id)}:log"


WEBHOOK_LOG_KEPT = 100


def cancel_channel() -> str:
    """Pub/sub channel: generation ids whose cancel was requested (workers listen; no storage)."""
    return f"{PREFIX}cancel"


def hub_wake_key(hub_id: str, shard: int) -> str:
    """Stream: wakes one API process's blocked reader of one shard when a viewer starts watching a new generation
    (in the shard's slot: one XREAD reads it with the shard's event streams).

    Deleted when that process stops; expires ``HUB_WAKE_TTL_S`` after its last use if the process dies.
    """
    return f"{PREFIX}{{{SHARD_TAGS[shard]}}}:hub:{hub_id}:wake"


HUB_WAKE_TTL_S = 3_600


def recent_key(owner: str) -> str:
    """Sorted set: one owner's generation ids scored by creation time, newest ``RECENT_KEPT`` kept (trimmed at
    each submit). ``owner`` is a client key's name (``anonymous`` in open mode)."""
    return f"{PREFIX}recent:{owner}"


RECENT_KEPT = 1_000


def viewers_key(generation_id: str) -> str:
    """Hash: API process id -> "count expiry_ms" of its viewers of one generation. Expires 10 s after the last
    update (viewers are refreshed every 2 s while any watch)."""
    return f"{_gen(generation_id)}:viewers"


VIEWERS_TTL_MS = 10_000


def idempotency_key(scope: str, client_key: str) -> str:
    """String: "<body hash> <generation id>" for a client's Idempotency-Key on one route (``scope``), hashed so
    any key text is safe. Expires after the retention time."""
    digest = hashlib.sha256(f"{scope}\x00{client_key}".encode()).hexdigest()
    return f"{PREFIX}idem:{digest}"


def batch_key(batch_id: str) -> str:
    """Hash: a batch's record (status, counts at creation, times). Expires with its generations' retention."""
    return f"{PREFIX}batch:{{{batch_id}}}"


def batch_items_key(batch_id: str) -> str:
    """List: "custom_id<TAB>generation_id" per input line, in input order. Same lifetime as the batch."""
    return f"{PREFIX}batch:{{{batch_id}}}:items"


def batches_index_key(owner: str) -> str:
    """Sorted set: one owner's batch ids scored by creation time (``GET /v1/batches``), newest ``RECENT_KEPT``
    kept; ids whose batch expired are dropped when a listing meets them."""
    return f"{PREFIX}batches:{owner}"


def batch_ended_key(batch_id: str) -> str:
    """Set: the batch's generations whose end the webhook deliverer has counted (the batch ends when all have).
    Same lifetime as the batch."""
    return f"{PREFIX}batch:{{{batch_id}}}:ended"


def batch_deadlines_key() -> str:
    """Sorted set: batches that send webhooks, scored by the end of their completion window (s), so an expiry is
    noticed without a read; removed once the batch ended."""
    return f"{PREFIX}batches:deadlines"


def file_key(file_id: str) -> str:
    """Hash: an uploaded file's metadata (owner, filename, purpose, bytes, created_at). Expires after the
    retention time, with its content."""
    return f"{PREFIX}file:{{{file_id}}}"


def file_content_key(file_id: str) -> str:
    """String: an uploaded file's content. Same lifetime as ``file_key``."""
    return f"{PREFIX}file:{{{file_id}}}:content"


def files_index_key(owner: str) -> str:
    """Sorted set: one owner's file ids scored by upload time (``GET /v1/files``), newest ``RECENT_KEPT`` kept."""
    return f"{PREFIX}files:{owner}"


def workers_key() -> str:
    """Sorted set: worker process ids scored by their last heartbeat (ms). Members older than
    ``WORKERS_KEPT_MS`` are trimmed by the heartbeat itself."""
    return f"{PREFIX}workers"


def queue_workers_key(queue: str) -> str:
    """Sorted set: ids of the worker processes that consume one Celery queue, scored by their last heartbeat
    (ms); trimmed like ``workers_key`` by the heartbeat itself."""
    return f"{PREFIX}workers:queue:{queue}"


WORKERS_KEPT_MS = 60_000
LIVE_WORKER_MS = 30_000  # a worker whose last beat is older is not counted as live (readiness, metrics)


def key_rate_key(owner: str) -> str:
    """Sorted set: one client key's creating requests of the last ``RATE_WINDOW_MS`` (member: the id created,
    score: ms). Trimmed at each admission; expires ``RATE_WINDOW_MS`` after the last one."""
    return f"{PREFIX}key:{{{owner}}}:rate"


RATE_WINDOW_MS = 60_000


def key_active_key(owner: str) -> str:
    """Sorted set: one client key's interactive generations that may still be queued or running (score: ms).
    Ended ones are pruned when the set is full, and members with no record after ``PENDING_CREATE_MS`` (a
    creation that failed); expires after the retention time without admissions."""
    return f"{PREFIX}key:{{{owner}}}:active"


PENDING_CREATE_MS = 60_000


def share_secret_key() -> str:
    """String: the random secret that signs share links when ``REASONQ_SHARE_SECRET`` is not set. No TTL."""
    return f"{PREFIX}share-secret"


def metrics_key() -> str:
    """Hash: deployment-wide counters and histogram buckets (tokens, ends by status, time to first token, pickup)
    that workers add to with their heartbeat and ``GET /metrics`` reads. No TTL."""
    return f"{PREFIX}metrics"


def metrics_batch_key(batch_id: str) -> str:
    """String: marks one batch of metric deltas as added, so a retried batch is not counted twice. Expires
    ``METRICS_BATCH_TTL_S`` after it was added. Its hash tag puts it in ``metrics_key()``'s slot."""
    return f"{{{metrics_key()}}}:batch:{batch_id}"


METRICS_BATCH_TTL_S = 3_600


def _provider(name: str) -> str:
    return f"{PREFIX}{{p:{name}}}:provider"


def provider_keys(name: str) -> list[str]:
    """A provider's capacity keys, all in one slot (its own tag), in the order ``capacity.lua`` takes them:

    - ZSET ``slots``: generations holding one of its concurrent streams, scored by the slot's expiry (ms); the
      holder's heartbeat extends it, so a lost worker's slot frees itself within a lease;
    - ZSET ``waiting:i`` / ``waiting:b``: interactive and batch generations waiting for a slot, scored by submission
      time (ms): the order they start in;
    - ZSET ``alive``: each waiting generation's liveness expiry (ms), refreshed while its worker waits;
    - string ``rate``: the rate limiter's theoretical arrival time (ms, GCRA), expiring after a minute idle.
    """
    base = _provider(name)
    return [f"{base}:slots", f"{base}:waiting:i", f"{base}:waiting:b", f"{base}:alive", f"{base}:rate"]


def capacity_channel() -> str:
    """Pub/sub channel: a provider's name, published when one of its slots frees (waiting workers try at once)."""
    return f"{PREFIX}capacity"


def durable_stream_id(owner: str, path: str) -> str:
    """The id of a Durable Streams stream (issue 17): a digest of its owner and path, so each client key has its
    own namespace (404 across keys, no existence leak) and any path text is a safe, short key part."""
    return hashlib.sha256(f"{owner}\x00{path}".encode()).hexdigest()[:32]


def _durable(stream_id: str) -> str:
    # In a generation shard's slot: the hub's per-shard reader XREADs durable streams with that shard's generations.
    return f"{PREFIX}{{{SHARD_TAGS[shard_of(stream_id)]}}}:ds:{stream_id}"


def durable_keys(stream_id: str) -> list[str]:
    """A durable stream's keys, one slot, in the order its scripts take them:

    - hash ``meta``: content type, TTL / expiry, tail, closure, Stream-Seq, owner, path, fork origin, soft-delete;
    - stream ``data``: one entry ``N-0`` per append (``t`` = ``data``, ``d`` = its bytes), and a ``done`` entry
      when the stream is closed (the hub's end of stream);
    - hash ``producers``: producer id -> "epoch seq" (idempotent producers);
    - set ``forks``: ids of the streams forked from it (a deleted stream with forks stays soft-deleted);
    - set ``subs``: the subscriptions linked to it (``ds_subscription_keys`` ids), so an append knows in its own
      script whether anyone is to be woken.

    No TTL unless the stream has one (``Stream-TTL``: every read and write slides it; ``Stream-Expires-At``: an
    absolute deadline); deleted by ``DELETE``.
    """
    base = _durable(stream_id)
    return [base, f"{base}:data", f"{base}:producers", f"{base}:forks", f"{base}:subs"]


def durable_script_keys(stream_id: str) -> list[str]:
    """KEYS of the scripts that append to a durable stream (create, append): ``durable_keys`` then the activity
    index of its shard."""
    return [*durable_keys(stream_id), activity_key(shard_of(stream_id))]


def durable_data_key(stream_id: str) -> str:
    """The data stream of a durable stream (see ``durable_keys``)."""
    return f"{_durable(stream_id)}:data"


def _owner_digest(owner: str) -> str:
    return hashlib.sha256(owner.encode()).hexdigest()[:16]


def ds_subscription_id(owner: str, subscription: str) -> str:
    """The id of a Durable Streams subscription (PROTOCOL.md section 6): a digest of its owner and client-given id,
    as for streams (each client key has its own subscriptions)."""
    return hashlib.sha256(f"{owner}\x00{subscription}".encode()).hexdigest()[:32]


def ds_subscription_keys(sub_id: str) -> list[str]:
    """A subscription's keys, one slot of its own, in the order its scripts take them:

    - hash ``state``: configuration (and its hash, for idempotent PUT), owner, client id, the wake in flight
      (generation, wake id, snapshot of tails, token digest, holder, lease deadline), webhook retry state, deleted;
    - hash ``links``: stream path -> ``<link types> <acked offset>`` (``e`` explicit, ``g`` glob).

    No TTL while the subscription lives; a deleted one's tombstone (its generation, so an old token stays fenced if
    the id is used again) expires after ``DS_SUBSCRIPTION_TOMBSTONE_S``.
    """
    base = f"{PREFIX}{{dss:{sub_id}}}"
    return [f"{base}:state", f"{base}:links"]


DS_SUBSCRIPTION_TOMBSTONE_S = 86_400


def ds_owner_patterns_key(owner: str) -> str:
    """Hash: id -> glob ``pattern`` of an owner's subscriptions that have one (matched when a stream is created)."""
    return f"{PREFIX}ds:owner:{_owner_digest(owner)}:patterns"


def ds_owner_paths_key(owner: str) -> str:
    """Set: an owner's stream paths (a new subscription's pattern is matched against them: the protocol's
    backfill). Added at creation, removed at deletion; a stream that expired is dropped when a backfill meets it."""
    return f"{PREFIX}ds:owner:{_owner_digest(owner)}:paths"


def ds_subscriptions_due_key() -> str:
    """ZSET: subscription id -> when it next needs looking at (ms): a wake to issue or deliver, a retry, a lease
    to expire. Every API process's waker claims due members (``webhook_claim.lua``); no TTL."""
    return f"{PREFIX}ds:subs:due"


def ds_signing_keys_key() -> str:
    """Hash: webhook signing key id -> its public JWK and when a process last announced it (the JWKS every API
    process serves). Private keys never leave their process."""
    return f"{PREFIX}ds:jwks"
