"""When each live preview was last used: its traffic counter when last read, and when it last
moved (orchestrator.core.expiry decides from it). A Redis hash, or a dict."""

from __future__ import annotations

import json
from typing import Protocol

from redis import Redis

from orchestrator.coordination import keys
from orchestrator.core.expiry import Activity


class ActivityStore(Protocol):
    def load(self, build_id: str) -> Activity | None: ...

    def save(self, build_id: str, activity: Activity) -> None: ...

    def move(self, from_build: str, to_build: str) -> None:
        """A preview handed over to another build keeps its history."""

    def forget(self, build_id: str) -> None: ...


def _encode(activity: Activity) -> str:
    return json.dumps({"counter": activity.counter, "activeAt": activity.active_at})


def _decode(raw: str) -> Activity:
    data = json.loads(raw)
    return Activity(data.get("counter"), float(data["activeAt"]))


class RedisActivity:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    def load(self, build_id: str) -> Activity | None:
        raw = keys.text(self.redis.hget(keys.ACTIVITY, build_id))  # type: ignore[arg-type]
        return None if raw is None else _decode(raw)

    def save(self, build_id: str, activity: Activity) -> None:
        self.redis.hset(keys.ACTIVITY, build_id, _encode(activity))

    def move(self, from_build: str, to_build: str) -> None:
        raw = self.redis.hget(keys.ACTIVITY, from_build)
        if raw is not None:
            self.redis.hset(keys.ACTIVITY, to_build, raw)  # type: ignore[arg-type]
            self.redis.hdel(keys.ACTIVITY, from_build)

    def forget(self, build_id: str) -> None:
        self.redis.hdel(keys.ACTIVITY, build_id)


class MemoryActivity:
    def __init__(self) -> None:
        self._raw: dict[str, str] = {}

    def load(self, build_id: str) -> Activity | None:
        raw = self._raw.get(build_id)
        return None if raw is None else _decode(raw)

    def save(self, build_id: str, activity: Activity) -> None:
        self._raw[build_id] = _encode(activity)

    def move(self, from_build: str, to_build: str) -> None:
        if from_build in self._raw:
            self._raw[to_build] = self._raw.pop(from_build)

    def forget(self, build_id: str) -> None:
        self._raw.pop(build_id, None)
