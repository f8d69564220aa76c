"""Admission: which waiting build starts next, under the global and per-user limits.

Builds wait in a Redis sorted set scored by orchestrator.core.priority (lowest first). ``admit``
is one Lua script, so that any number of workers and API processes can admit at once
without ever exceeding a limit: it moves the first waiting build whose owner is under the
per-user limit into the active hash, if the active hash is under the global limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redis import Redis

from orchestrator.core import defaults

_ADMIT = """
local limit, per_user = tonumber(ARGV[1]), tonumber(ARGV[2])
local active = redis.call('HVALS', KEYS[3])
if #active >= limit then return false end
local counts = {}
for _, owner in ipairs(active) do counts[owner] = (counts[owner] or 0) + 1 end
for _, build in ipairs(redis.call('ZRANGE', KEYS[1], 0, 999)) do
  local owner = redis.call('HGET', KEYS[2], build) or ''
  if (counts[owner] or 0) < per_user then
    redis.call('ZREM', KEYS[1], build)
    redis.call('HDEL', KEYS[2], build)
    redis.call('HSET', KEYS[3], build, owner)
    return build
  end
end
return false
"""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


@dataclass(frozen=True)
class Limits:
    building: int
    per_user: int


class Admission:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._admit = redis.register_script(_ADMIT)

    def add(self, build_id: str, owner_id: int, score: float) -> None:
        """Put a build in the waiting set (again: it keeps the place its score gives it)."""
        pipe = self.redis.pipeline()
        pipe.hset(defaults.WAITING_OWNERS_KEY, build_id, str(owner_id))
        pipe.zadd(defaults.WAITING_KEY, {build_id: score})
        pipe.rpush(defaults.WAKE_KEY, "1")
        pipe.ltrim(defaults.WAKE_KEY, -100, -1)
        pipe.execute()

    def admit(self, limits: Limits) -> str | None:
        """Move the next admissible build to the active set; None when none may start."""
        keys = [defaults.WAITING_KEY, defaults.WAITING_OWNERS_KEY, defaults.ACTIVE_KEY]
        found = self._admit(keys=keys, args=[limits.building, limits.per_user])
        return _text(found) if found else None

    def withdraw(self, build_id: str) -> bool:
        """Take a build out of the waiting set; True when it was waiting there."""
        pipe = self.redis.pipeline()
        pipe.zrem(defaults.WAITING_KEY, build_id)
        pipe.hdel(defaults.WAITING_OWNERS_KEY, build_id)
        return bool(pipe.execute()[0])

    def release(self, build_id: str) -> None:
        """A build left the active set (live, failed, cancelled): wake a worker for its slot."""
        pipe = self.redis.pipeline()
        pipe.hdel(defaults.ACTIVE_KEY, build_id)
        pipe.rpush(defaults.WAKE_KEY, "1")
        pipe.ltrim(defaults.WAKE_KEY, -100, -1)
        pipe.execute()

    def position(self, build_id: str) -> int | None:
        """1 for the next build to be admitted; None when not waiting."""
        rank: Any = self.redis.zrank(defaults.WAITING_KEY, build_id)
        return None if rank is None else int(rank) + 1

    def waiting(self, count: int = 1000) -> list[str]:
        found: Any = self.redis.zrange(defaults.WAITING_KEY, 0, count - 1)
        return [_text(b) for b in found]

    def active(self) -> dict[str, str]:
        found: Any = self.redis.hgetall(defaults.ACTIVE_KEY)
        return {_text(k): _text(v) for k, v in found.items()}

    def owners(self, build_ids: list[str]) -> dict[str, str]:
        if not build_ids:
            return {}
        values: Any = self.redis.hmget(defaults.WAITING_OWNERS_KEY, build_ids)
        return {b: _text(v) for b, v in zip(build_ids, values, strict=True) if v is not None}
