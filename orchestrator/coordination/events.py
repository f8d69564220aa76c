"""A build's events — status changes, progress changes, log lines — in one Redis stream.

Workers append (``publish``); the API follows the stream for any number of watchers, in any
process (``follow``). Stream entry ids are the events' ids: a client that reconnects with
``Last-Event-ID`` resumes right after the last event it saw, and sees nothing twice.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from redis.exceptions import RedisError

from orchestrator.core import defaults

log = logging.getLogger(__name__)

STATUS, PROGRESS, LOG = "status", "progress", "log"
END_STATUSES = frozenset({"running", "failed", "cancelled", "stopped"})
"""A build's stream ends with one of these: the preview is live, or the build is over."""


def stream_key(build_id: str) -> str:
    return defaults.EVENTS_KEY + build_id


@dataclass(frozen=True)
class Event:
    id: str | None
    type: str
    data: dict[str, Any]

    @property
    def ends_stream(self) -> bool:
        return self.type == STATUS and self.data.get("status") in END_STATUSES


def publish(redis: Redis, build_id: str, events: Iterable[tuple[str, dict[str, Any]]]) -> None:
    """Append events in order. A Redis failure is logged, never raised: the database stays the
    record of the build, and polling still works."""
    key = stream_key(build_id)
    try:
        pipe = redis.pipeline(transaction=False)
        ends = False
        for kind, data in events:
            pipe.xadd(
                key, {"type": kind, "data": json.dumps(data)}, maxlen=defaults.EVENTS_KEPT, approximate=True
            )
            ends = ends or (kind == STATUS and data.get("status") in END_STATUSES)
        if ends:
            pipe.expire(key, defaults.EVENTS_TTL)
        pipe.execute()
    except RedisError as exc:
        log.warning("could not publish events of build %s: %s", build_id, exc)


def _decode(entry_id: Any, fields: Any) -> Event:
    def text(value: Any) -> str:
        return value.decode() if isinstance(value, bytes) else str(value)

    values = {text(k): text(v) for k, v in fields.items()}
    return Event(text(entry_id), values.get("type", LOG), json.loads(values.get("data", "{}")))


async def follow(
    redis: AsyncRedis,
    build_id: str,
    after: str | None,
    is_over: Callable[[], Awaitable[dict[str, Any] | None]],
    poll_seconds: float = 5.0,
) -> AsyncIterator[Event]:
    """The build's events after ``after`` (all of them when None), until one ends the stream.

    ``is_over`` returns the build's final status event data when the database says the build
    is over (or None): a stream that lost its end (expired, or a worker died) still ends.
    """
    key = stream_key(build_id)
    cursor = after or "0-0"
    final = await is_over()
    if final is not None:  # nothing more will come: what is left, then the end
        rest: Any = await redis.xrange(key, min=f"({cursor}", count=defaults.EVENTS_KEPT)
        for entry_id, fields in rest or []:
            event = _decode(entry_id, fields)
            yield event
            if event.ends_stream:
                return
        yield Event(None, STATUS, final)
        return
    while True:
        try:
            found: Any = await redis.xread({key: cursor}, count=500, block=int(poll_seconds * 1000))
        except RedisError as exc:
            log.warning("could not read events of build %s: %s", build_id, exc)
            found = []
            await asyncio.sleep(poll_seconds)
        for _key, entries in found or []:
            for entry_id, fields in entries:
                event = _decode(entry_id, fields)
                cursor = event.id or cursor
                yield event
                if event.ends_stream:
                    return
        if not found:
            final = await is_over()
            if final is not None:
                yield Event(None, STATUS, final)
                return
