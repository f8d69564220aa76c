"""Admission: which waiting build starts next, under the global and per-user limits.

Builds wait in a sorted set scored by orchestrator.core.priority (lowest first), and in one
sorted set per owner. ``admit`` is one Lua script in Redis, so that any number of workers and
API processes can admit at once without ever exceeding a limit: it moves the first waiting
build whose owner is under the per-user limit into the active hash, if the active hash is
under the global limit. It looks at each owner's first build only (the heads), so the work of
one admission grows with the number of owners waiting, not of builds, and one owner's
thousands of waiting builds never hide another owner's: fair at any queue length, with the
priority-and-aging order kept within each owner's builds and across the heads.

A build retried after an infrastructure fault is *deferred*: it waits for admission again only
once its back-off is over (``due`` moves it back, at its old place).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any, Protocol

from redis import Redis

from orchestrator.coordination import keys

_HEADS = """
local prefix = ARGV[1]
local function refresh(owner)
  local head = redis.call('ZRANGE', prefix .. owner, 0, 0, 'WITHSCORES')
  if #head == 0 then redis.call('ZREM', KEYS[3], owner) else redis.call('ZADD', KEYS[3], head[2], owner) end
end
"""
"""Shared by the scripts below: KEYS[1] waiting, KEYS[2] waiting owners, KEYS[3] heads;
ARGV[1] the prefix of the per-owner sets."""

_ADD = (
    _HEADS
    + """
local build, owner, score = ARGV[2], ARGV[3], tonumber(ARGV[4])
local before = redis.call('HGET', KEYS[2], build)
if before and before ~= owner then redis.call('ZREM', prefix .. before, build); refresh(before) end
redis.call('HSET', KEYS[2], build, owner)
redis.call('ZADD', KEYS[1], score, build)
redis.call('ZADD', prefix .. owner, score, build)
refresh(owner)
"""
)

_ADMIT = (
    _HEADS
    + """
local limit, per_user = tonumber(ARGV[2]), tonumber(ARGV[3])
local active = redis.call('HVALS', KEYS[4])
if #active >= limit then return false end
if redis.call('ZCARD', KEYS[3]) == 0 and redis.call('ZCARD', KEYS[1]) > 0 then
  -- builds that waited before the per-owner sets existed: index them once
  for _, build in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
    local owner = redis.call('HGET', KEYS[2], build) or ''
    redis.call('ZADD', prefix .. owner, redis.call('ZSCORE', KEYS[1], build), build)
    refresh(owner)
  end
end
local counts = {}
for _, owner in ipairs(active) do counts[owner] = (counts[owner] or 0) + 1 end
for _, owner in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
  if (counts[owner] or 0) < per_user then
    local build = redis.call('ZRANGE', prefix .. owner, 0, 0)[1]
    redis.call('ZREM', KEYS[1], build)
    redis.call('HDEL', KEYS[2], build)
    redis.call('ZREM', prefix .. owner, build)
    refresh(owner)
    redis.call('HSET', KEYS[4], build, owner)
    return build
  end
end
return false
"""
)

_WITHDRAW = (
    _HEADS
    + """
local build = ARGV[2]
local owner = redis.call('HGET', KEYS[2], build)
local removed = redis.call('ZREM', KEYS[1], build)
redis.call('HDEL', KEYS[2], build)
if owner then redis.call('ZREM', prefix .. owner, build); refresh(owner) end
removed = removed + redis.call('ZREM', KEYS[4], build)
redis.call('HDEL', KEYS[5], build)
return removed
"""
)


@dataclass(frozen=True)
class SlotLimits:
    building: int
    per_user: int


class Admission(Protocol):
    def add(self, build_id: str, owner_id: int | str, score: float) -> None:
        """Put a build in the waiting set (again: it keeps the place its score gives it)."""

    def admit(self, limits: SlotLimits) -> str | None:
        """Move the next admissible build to the active set; None when none may start."""

    def withdraw(self, build_id: str) -> bool:
        """Take a build out of the waiting set; True when it was waiting there."""

    def release(self, build_id: str) -> None:
        """A build left the active set (live, failed, cancelled)."""

    def defer(self, build_id: str, owner_id: int | str, score: float, until: float) -> None:
        """Wait for admission again only from ``until`` (a retry backing off)."""

    def due(self, now: float) -> list[str]:
        """Move the deferred builds whose time came into the waiting set; returns them."""

    def position(self, build_id: str) -> int | None:
        """1 for the next build to be admitted; None when not waiting."""

    def waiting(self, count: int = 1000) -> list[str]: ...

    def deferred(self) -> list[str]:
        """Builds backing off before they wait again (see ``defer``)."""

    def active(self) -> dict[str, str]: ...

    def owners(self, build_ids: list[str]) -> dict[str, str]: ...


class RedisAdmission:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._add = redis.register_script(_ADD)
        self._admit = redis.register_script(_ADMIT)
        self._withdraw = redis.register_script(_WITHDRAW)
        self._waiting = [keys.WAITING, keys.WAITING_OWNERS, keys.WAITING_HEADS]

    def _wake(self, pipe: Any) -> None:
        pipe.rpush(keys.WAKE, "1")
        pipe.ltrim(keys.WAKE, -100, -1)

    def add(self, build_id: str, owner_id: int | str, score: float) -> None:
        pipe = self.redis.pipeline()
        self._add(
            keys=self._waiting, args=[keys.WAITING_OF, build_id, str(owner_id), repr(score)], client=pipe
        )
        self._wake(pipe)
        pipe.execute()

    def admit(self, limits: SlotLimits) -> str | None:
        found = self._admit(
            keys=[*self._waiting, keys.ACTIVE], args=[keys.WAITING_OF, limits.building, limits.per_user]
        )
        return keys.text(found) if found else None

    def withdraw(self, build_id: str) -> bool:
        removed = self._withdraw(
            keys=[*self._waiting, keys.DEFERRED, keys.DEFERRED_OWNERS], args=[keys.WAITING_OF, build_id]
        )
        return bool(removed)

    def release(self, build_id: str) -> None:
        pipe = self.redis.pipeline()
        pipe.hdel(keys.ACTIVE, build_id)
        self._wake(pipe)
        pipe.execute()

    def defer(self, build_id: str, owner_id: int | str, score: float, until: float) -> None:
        pipe = self.redis.pipeline()
        pipe.hset(keys.DEFERRED_OWNERS, build_id, json.dumps([str(owner_id), score]))
        pipe.zadd(keys.DEFERRED, {build_id: until})
        pipe.execute()

    def due(self, now: float) -> list[str]:
        moved = []
        for raw in self.redis.zrangebyscore(keys.DEFERRED, "-inf", now):  # type: ignore[union-attr]
            build_id = keys.text(raw) or ""  # type: ignore[arg-type]
            entry = keys.text(self.redis.hget(keys.DEFERRED_OWNERS, build_id))  # type: ignore[arg-type]
            if self.redis.zrem(keys.DEFERRED, build_id) and entry is not None:  # one mover wins
                owner, score = json.loads(entry)
                self.redis.hdel(keys.DEFERRED_OWNERS, build_id)
                self.add(build_id, owner, float(score))
                moved.append(build_id)
        return moved

    def position(self, build_id: str) -> int | None:
        rank: Any = self.redis.zrank(keys.WAITING, build_id)
        return None if rank is None else int(rank) + 1

    def waiting(self, count: int = 1000) -> list[str]:
        found: Any = self.redis.zrange(keys.WAITING, 0, count - 1)
        return [keys.text(b) or "" for b in found]

    def deferred(self) -> list[str]:
        found: Any = self.redis.zrange(keys.DEFERRED, 0, -1)
        return [keys.text(b) or "" for b in found]

    def active(self) -> dict[str, str]:
        found: Any = self.redis.hgetall(keys.ACTIVE)
        return {keys.text(k) or "": keys.text(v) or "" for k, v in found.items()}

    def owners(self, build_ids: list[str]) -> dict[str, str]:
        if not build_ids:
            return {}
        values: Any = self.redis.hmget(keys.WAITING_OWNERS, build_ids)
        return {b: keys.text(v) or "" for b, v in zip(build_ids, values, strict=True) if v is not None}


class MemoryAdmission:
    """The same rules over dicts, under one lock (one process)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[str, tuple[float, str]] = {}
        self._active: dict[str, str] = {}
        self._deferred: dict[str, tuple[float, str, float]] = {}
        self.wakes = 0

    def _order(self) -> list[str]:
        return [b for b, _ in sorted(self._waiting.items(), key=lambda item: (item[1][0], item[0]))]

    def add(self, build_id: str, owner_id: int | str, score: float) -> None:
        with self._lock:
            self._waiting[build_id] = (score, str(owner_id))
            self.wakes += 1

    def admit(self, limits: SlotLimits) -> str | None:
        with self._lock:
            if len(self._active) >= limits.building:
                return None
            counts: dict[str, int] = {}
            for owner in self._active.values():
                counts[owner] = counts.get(owner, 0) + 1
            heads: dict[str, tuple[float, str]] = {}  # owner → (score, build) of their first
            for build_id, (score, owner) in self._waiting.items():
                heads[owner] = min(heads.get(owner, (score, build_id)), (score, build_id))
            for owner, (_, build_id) in sorted(heads.items(), key=lambda item: (item[1][0], item[0])):
                if counts.get(owner, 0) < limits.per_user:
                    del self._waiting[build_id]
                    self._active[build_id] = owner
                    return build_id
            return None

    def withdraw(self, build_id: str) -> bool:
        with self._lock:
            waited = self._waiting.pop(build_id, None) is not None
            deferred = self._deferred.pop(build_id, None) is not None
            return waited or deferred

    def release(self, build_id: str) -> None:
        with self._lock:
            self._active.pop(build_id, None)
            self.wakes += 1

    def defer(self, build_id: str, owner_id: int | str, score: float, until: float) -> None:
        with self._lock:
            self._deferred[build_id] = (until, str(owner_id), score)

    def due(self, now: float) -> list[str]:
        with self._lock:
            ready = sorted(b for b, (until, _, _) in self._deferred.items() if until <= now)
            entries = {b: self._deferred.pop(b) for b in ready}
        for build_id, (_, owner, score) in entries.items():
            self.add(build_id, owner, score)
        return ready

    def position(self, build_id: str) -> int | None:
        with self._lock:
            order = self._order()
        return order.index(build_id) + 1 if build_id in order else None

    def waiting(self, count: int = 1000) -> list[str]:
        with self._lock:
            return self._order()[:count]

    def deferred(self) -> list[str]:
        with self._lock:
            return sorted(self._deferred)

    def active(self) -> dict[str, str]:
        with self._lock:
            return dict(self._active)

    def owners(self, build_ids: list[str]) -> dict[str, str]:
        with self._lock:
            return {b: self._waiting[b][1] for b in build_ids if b in self._waiting}
