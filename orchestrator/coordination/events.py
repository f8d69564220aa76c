"""A build's events — status changes, progress changes, log lines — in one ordered stream.

Workers append (``publish``); the API follows the stream for any number of watchers
(``follow``). Entry ids are the events' ids: a client that reconnects with ``Last-Event-ID``
resumes right after the last event it saw, and sees nothing twice. In Redis the stream is a
Redis stream (shared by every process); in memory, a list per build (one process, tests).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from redis.exceptions import RedisError

from orchestrator.adapters import redis_client
from orchestrator.coordination import keys
from orchestrator.core.status import END_STATUSES, EventType

log = logging.getLogger(__name__)

IsOver = Callable[[], Awaitable[dict[str, Any] | None]]
"""Returns the build's final status event when the database says it is over, else None: a
stream that lost its end (expired, or a worker died) still ends."""


@dataclass(frozen=True)
class Event:
    id: str | None
    type: str
    data: dict[str, Any]

    @property
    def ends_stream(self) -> bool:
        return self.type == EventType.STATUS and self.data.get("status") in END_STATUSES


def _ends(kind: str, data: dict[str, Any]) -> bool:
    return kind == EventType.STATUS and data.get("status") in END_STATUSES


class Events(Protocol):
    def publish(self, build_id: str, events: Iterable[tuple[str, dict[str, Any]]]) -> None:
        """Append events in order. Raises RedisError when Redis is away: the caller decides
        (the recorder holds them for later; the database stays the record of the build)."""

    def read(self, build_id: str, after: str | None = None) -> list[Event]:
        """The events after ``after`` (all when None), as they are now."""

    def last_id(self, build_id: str) -> str | None:
        """The id of the build's newest event, None when it has none."""

    def wait(self, build_id: str, after: str | None, timeout: float) -> list[Event]:
        """The events after ``after``, waiting up to ``timeout`` seconds for one to come."""

    def follow(
        self, build_id: str, after: str | None, is_over: IsOver, poll_seconds: float = 5.0
    ) -> AsyncIterator[Event]:
        """The events after ``after`` until one ends the stream (or ``is_over`` says so)."""


async def _follow(
    read: Callable[[str], Awaitable[list[Event]]],
    wait: Callable[[str], Awaitable[list[Event]]],
    after: str | None,
    is_over: IsOver,
) -> AsyncIterator[Event]:
    """The following both stores share: ``read(cursor)`` returns what is there now, ``wait(cursor)``
    what comes within one poll (maybe nothing)."""
    cursor = after or "0-0"
    final = await is_over()
    if final is not None:  # nothing more will come: what is left, then the end
        for event in await read(cursor):
            yield event
            if event.ends_stream:
                return
        yield Event(None, EventType.STATUS, final)
        return
    while True:
        found = await wait(cursor)
        for event in found:
            cursor = event.id or cursor
            yield event
            if event.ends_stream:
                return
        if not found:
            final = await is_over()
            if final is not None:
                yield Event(None, EventType.STATUS, final)
                return


class RedisEvents:
    def __init__(self, redis: Redis, async_redis: Callable[[], AsyncRedis]) -> None:
        self.redis = redis
        self.async_redis = async_redis
        """The asyncio client (made on first use, in the API's event loop)."""

    def publish(self, build_id: str, events: Iterable[tuple[str, dict[str, Any]]]) -> None:
        key = keys.EVENTS + build_id
        pipe = self.redis.pipeline(transaction=False)
        ends = False
        for kind, data in events:
            pipe.xadd(
                key, {"type": kind, "data": json.dumps(data)}, maxlen=keys.EVENTS_KEPT, approximate=True
            )
            ends = ends or _ends(kind, data)
        if ends:
            pipe.expire(key, keys.EVENTS_TTL)
        pipe.execute()

    @staticmethod
    def _decode(entry_id: Any, fields: Any) -> Event:
        values = {keys.text(k): keys.text(v) for k, v in fields.items()}
        return Event(
            keys.text(entry_id), values.get("type") or EventType.LOG, json.loads(values.get("data") or "{}")
        )

    def read(self, build_id: str, after: str | None = None) -> list[Event]:
        found: Any = self.redis.xrange(keys.EVENTS + build_id, min=f"({after}" if after else "-")
        return [self._decode(i, f) for i, f in found or []]

    def last_id(self, build_id: str) -> str | None:
        found: Any = self.redis.xrevrange(keys.EVENTS + build_id, count=1)
        return keys.text(found[0][0]) if found else None

    def wait(self, build_id: str, after: str | None, timeout: float) -> list[Event]:
        block = max(1, int(min(timeout, redis_client.BLOCK_SECONDS) * 1000))  # (within the socket's timeout)
        found: Any = self.redis.xread({keys.EVENTS + build_id: after or "0-0"}, count=500, block=block)
        return [self._decode(i, f) for _key, entries in found or [] for i, f in entries]

    def follow(
        self, build_id: str, after: str | None, is_over: IsOver, poll_seconds: float = 5.0
    ) -> AsyncIterator[Event]:
        key = keys.EVENTS + build_id
        redis = self.async_redis()

        async def read(cursor: str) -> list[Event]:
            rest: Any = await redis.xrange(key, min=f"({cursor}", count=keys.EVENTS_KEPT)
            return [self._decode(i, f) for i, f in rest or []]

        async def wait(cursor: str) -> list[Event]:
            try:
                block = int(min(poll_seconds, redis_client.BLOCK_SECONDS) * 1000)
                found: Any = await redis.xread({key: cursor}, count=500, block=block)
            except RedisError as exc:
                log.warning("could not read events of build %s: %s", build_id, exc)
                await asyncio.sleep(poll_seconds)
                return []
            return [self._decode(i, f) for _key, entries in found or [] for i, f in entries]

        return _follow(read, wait, after, is_over)


class MemoryEvents:
    """Events in lists, ids ``<n>-0`` like a Redis stream's."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._streams: dict[str, list[Event]] = {}
        self._next = 0

    def publish(self, build_id: str, events: Iterable[tuple[str, dict[str, Any]]]) -> None:
        with self._lock:
            stream = self._streams.setdefault(build_id, [])
            for kind, data in events:
                self._next += 1
                stream.append(Event(f"{self._next}-0", kind, json.loads(json.dumps(data))))
            del stream[: -keys.EVENTS_KEPT]
            self._lock.notify_all()  # wake the waiters: there is something to read

    def read(self, build_id: str, after: str | None = None) -> list[Event]:
        position = int((after or "0-0").split("-")[0])
        with self._lock:
            return [e for e in self._streams.get(build_id, []) if int((e.id or "0").split("-")[0]) > position]

    def last_id(self, build_id: str) -> str | None:
        with self._lock:
            stream = self._streams.get(build_id)
            return stream[-1].id if stream else None

    def wait(self, build_id: str, after: str | None, timeout: float) -> list[Event]:
        with self._lock:
            self._lock.wait_for(lambda: bool(self.read(build_id, after)), timeout)
        return self.read(build_id, after)

    def follow(
        self, build_id: str, after: str | None, is_over: IsOver, poll_seconds: float = 5.0
    ) -> AsyncIterator[Event]:
        async def read(cursor: str) -> list[Event]:
            return self.read(build_id, cursor)

        async def wait(cursor: str) -> list[Event]:
            deadline = asyncio.get_running_loop().time() + poll_seconds
            while True:
                found = self.read(build_id, cursor)
                if found or asyncio.get_running_loop().time() >= deadline:
                    return found
                await asyncio.sleep(min(0.01, poll_seconds))

        return _follow(read, wait, after, is_over)
