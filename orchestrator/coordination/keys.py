"""Every Redis key the orchestrator uses, and the one way to read Redis' answers as text.

RQ keeps its own ``rq:`` keys; everything of ours starts with PREFIX. Each key's protocol (who
writes it, who reads it, when it expires) is described beside it, and only the modules of
:mod:`orchestrator.coordination` touch them.
"""

from __future__ import annotations

PREFIX = "website-orchestrator:"

PORT = PREFIX + "port:"
"""``PORT + "<host id>:<port>"``: the attempt that owns that port of that host (SET NX;
released only by its owner, a Lua compare-and-delete). Before hosts were: ``PORT + port``
(taken over by the first host)."""

EVENTS = PREFIX + "events:"
"""``EVENTS + build_id``: the stream of one build's events (status, progress, logs), trimmed
at EVENTS_KEPT entries and expiring EVENTS_TTL after the build's end."""

WAITING = PREFIX + "waiting"
"""Sorted set of builds waiting for admission; the lowest score goes first (core.priority)."""

WAITING_OWNERS = PREFIX + "waiting-owners"
"""Hash: waiting build id → owner id (for the per-user limit)."""

WAITING_OF = PREFIX + "waiting-of:"
"""``WAITING_OF + owner id``: sorted set of that owner's waiting builds, scored as in WAITING."""

WAITING_HEADS = PREFIX + "waiting-heads"
"""Sorted set: owner id → the score of their first waiting build. Admission looks at each
owner's first build only, so one owner's thousands never hide another's."""

ACTIVE = PREFIX + "active"
"""Hash: admitted build id → owner id. Its size is the number of builds in progress."""

DEFERRED = PREFIX + "deferred"
"""Sorted set: build id → when it may wait for admission again (a retry backing off)."""

DEFERRED_OWNERS = PREFIX + "deferred-owners"
"""Hash: deferred build id → JSON [owner id, admission score]."""

WAKE = PREFIX + "wake"
"""List pushed to wake idle workers: a build was queued or a slot came free (kept short)."""

HEARTBEAT = PREFIX + "heartbeat:"
"""``HEARTBEAT + "<build id>:<attempt>"`` exists while a live worker runs that attempt of the
build (refreshed every HEARTBEAT_SECONDS, expiring after HEARTBEAT_TTL: judged by Redis' clock
alone). One key per attempt: a stale attempt's beats never keep its successor alive, nor its
end stop them."""

CANCEL = PREFIX + "cancel:"
"""``CANCEL + build_id``: who asked to cancel a build in progress (the worker polls it)."""

WORKERS = PREFIX + "workers"
"""Hash: worker name → when it was last seen (epoch seconds), written every round and by its
build's heartbeat; a worker not seen for WORKER_TTL is not counted."""

RECOVERING = PREFIX + "recovering:"
"""``RECOVERING + "<build id>:<attempt>"``: set NX for a minute by the worker recovering that
lost attempt."""

ACTIVITY = PREFIX + "activity"
"""Hash: live build id → JSON {"counter", "activeAt"}: the preview's traffic counter when last
read, and when it last moved (core.expiry)."""

SCHEDULE = PREFIX + "scheduled:"
"""``SCHEDULE + task`` (gc, reconcile): set NX, expiring after the task's interval, by the one
worker that runs the task this interval."""

DEPS_USED = PREFIX + "deps-used:"
"""``DEPS_USED + host id``: sorted set of dependency-cache key → when a build on that host last
used it (for LRU eviction; each host's entries are its own engine's images)."""

DEPS_USED_SINGLE_HOST = PREFIX + "deps-used"
"""The one index of the installations before hosts were (taken over by the first host)."""

DEPS_FILL_LOCK = PREFIX + "deps-fill:"
"""``DEPS_FILL_LOCK + "<host id>:<key>"``: held while one build on that host fills that cache
entry; the host's other builds wait for it."""

MIGRATION_LOCK = PREFIX + "migrate-lock"
"""Lock taken while the database schema is migrated."""

EVENTS_KEPT = 5000
"""Events kept in one build's stream (older ones are trimmed; the database keeps the record)."""

EVENTS_TTL = 7 * 24 * 3600
"""Seconds a finished build's event stream is kept."""

HEARTBEAT_SECONDS = 5
"""How often a running build refreshes its heartbeat."""

HEARTBEAT_TTL = 20
"""A build whose heartbeat is older than this has lost its worker."""

WORKER_TTL = 30
"""Seconds after which a worker not seen is counted as gone."""

CANCEL_TTL = 3600
RECOVERING_TTL = 60


def attempt_key(prefix: str, build_id: str, attempt: int) -> str:
    return f"{prefix}{build_id}:{attempt}"


def text(value: bytes | str | None) -> str | None:
    """A Redis answer as text (the client returns bytes)."""
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


TRAFFIC = PREFIX + "traffic:"
"""``TRAFFIC + build_id``: hash of what the gateway forwarded to that build's preview
(requests, bytesIn, bytesOut, lastRequest), added to by each gateway process every second;
deleted with the preview."""

HOST = PREFIX + "host:"
"""``HOST + host id``: the JSON record its workers beat (core.hosts.HostInfo), expiring after
core.hosts.HOST_TTL: a host whose key is gone has no live worker."""

HOST_ROOM = PREFIX + "host-room:"
"""``HOST_ROOM + host id``: what its last dispatch round found: "" (room for a build) or why
not; expiring with the host's record (placement reads it)."""

HOSTS = PREFIX + "hosts"
"""Set of the host ids that beat (where HOST keys are looked for; pruned as they expire)."""


def deps_used(host_id: str) -> str:
    """The key of a host's dependency-cache index (DEPS_USED)."""
    return f"{DEPS_USED}{host_id}"


def on_host(prefix: str, host_id: str) -> str:
    """A per-host key prefix: the host's ports, its cache index (``PORT`` → ``port:<host>:``)."""
    return f"{prefix}{host_id}:"
