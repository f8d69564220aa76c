"""Which hosts are alive: each host's workers beat its record into Redis (expiring after
HOST_TTL, judged by Redis' clock), and anyone reads the live ones. The database keeps every
host ever seen (orchestrator.state.hosts); this store says which of them still has workers."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, Protocol

from redis import Redis

from orchestrator.coordination import keys
from orchestrator.core.hosts import HOST_TTL, HostInfo


class HostRegistry(Protocol):
    def beat(self, info: HostInfo) -> None:
        """``info``'s host has a live worker now."""

    def live(self) -> dict[str, HostInfo]:
        """Every host with a worker that beat within HOST_TTL."""

    def get(self, host_id: str) -> HostInfo | None:
        """One live host's record."""

    def report_room(self, host_id: str, shortage: str | None) -> None:
        """What the host's last dispatch round found: None when it had room for a build, else
        why not (core.resources.shortage). Kept for HOST_TTL."""

    def room(self, host_id: str) -> tuple[bool, str | None]:
        """(known, shortage): whether the host reported lately, and what it said."""

    def adopt_single_host_keys(self, host_id: str) -> int:
        """The first host takes over what the one host of an older installation kept without a
        host in its keys (its port claims, its cache index). Returns the keys taken over."""


class RedisHostRegistry:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    def beat(self, info: HostInfo) -> None:
        pipe = self.redis.pipeline()
        pipe.set(keys.HOST + info.id, json.dumps(info.as_json()), ex=HOST_TTL)
        pipe.sadd(keys.HOSTS, info.id)
        pipe.execute()

    def live(self) -> dict[str, HostInfo]:
        ids = sorted(keys.text(member) or "" for member in self.redis.smembers(keys.HOSTS))  # type: ignore[union-attr]
        if not ids:
            return {}
        found: Any = self.redis.mget([keys.HOST + host_id for host_id in ids])
        live = {}
        for host_id, value in zip(ids, found, strict=True):
            if value is None:
                self.redis.srem(keys.HOSTS, host_id)
            else:
                live[host_id] = HostInfo.from_json(json.loads(value))
        return live

    def get(self, host_id: str) -> HostInfo | None:
        value: Any = self.redis.get(keys.HOST + host_id)
        return None if value is None else HostInfo.from_json(json.loads(value))

    def report_room(self, host_id: str, shortage: str | None) -> None:
        self.redis.set(keys.HOST_ROOM + host_id, shortage or "", ex=HOST_TTL)

    def room(self, host_id: str) -> tuple[bool, str | None]:
        value = keys.text(self.redis.get(keys.HOST_ROOM + host_id))  # type: ignore[arg-type]
        return (False, None) if value is None else (True, value or None)

    def adopt_single_host_keys(self, host_id: str) -> int:
        moved = 0
        for raw in self.redis.scan_iter(match=keys.PORT + "*", count=500):
            key = keys.text(raw) or ""
            port = key[len(keys.PORT) :]
            if port.isdigit() and self.redis.renamenx(key, keys.on_host(keys.PORT, host_id) + port):
                moved += 1
        if self.redis.exists(keys.DEPS_USED_SINGLE_HOST):
            target = keys.deps_used(host_id)
            self.redis.zunionstore(target, [target, keys.DEPS_USED_SINGLE_HOST], aggregate="MAX")
            self.redis.delete(keys.DEPS_USED_SINGLE_HOST)
            moved += 1
        return moved


class MemoryHostRegistry:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._beats: dict[str, tuple[HostInfo, float]] = {}
        self._room: dict[str, tuple[str | None, float]] = {}

    def beat(self, info: HostInfo) -> None:
        self._beats[info.id] = (info, self.clock() + HOST_TTL)

    def live(self) -> dict[str, HostInfo]:
        now = self.clock()
        return {host_id: info for host_id, (info, until) in sorted(self._beats.items()) if until > now}

    def get(self, host_id: str) -> HostInfo | None:
        return self.live().get(host_id)

    def report_room(self, host_id: str, shortage: str | None) -> None:
        self._room[host_id] = (shortage, self.clock() + HOST_TTL)

    def room(self, host_id: str) -> tuple[bool, str | None]:
        shortage, until = self._room.get(host_id, (None, 0.0))
        return (True, shortage) if until > self.clock() else (False, None)

    def adopt_single_host_keys(self, host_id: str) -> int:
        return 0  # one process's memory was never shared by hosts
