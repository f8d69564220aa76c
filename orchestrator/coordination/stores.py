"""Every coordination store of one process, in Redis (shared by every process and host) or in
memory (one process: the unit tests and the in-memory context)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from redis import Redis
from redis.asyncio import Redis as AsyncRedis

from orchestrator.coordination.activity import ActivityStore, MemoryActivity, RedisActivity
from orchestrator.coordination.admission import Admission, MemoryAdmission, RedisAdmission
from orchestrator.coordination.cache_index import CacheIndex, MemoryCacheIndex, RedisCacheIndex
from orchestrator.coordination.events import Events, MemoryEvents, RedisEvents
from orchestrator.coordination.ports import MemoryPortStore, RedisPortStore
from orchestrator.coordination.signals import MemorySignals, RedisSignals, Signals
from orchestrator.coordination.traffic import MemoryTraffic, RedisTraffic, Traffic
from orchestrator.core.ports import PortStore


@dataclass
class Stores:
    ports: PortStore
    admission: Admission
    events: Events
    signals: Signals
    activity: ActivityStore
    cache: CacheIndex
    traffic: Traffic


def redis_stores(redis: Redis, async_redis: Callable[[], AsyncRedis]) -> Stores:
    return Stores(
        ports=RedisPortStore(redis),
        admission=RedisAdmission(redis),
        events=RedisEvents(redis, async_redis),
        signals=RedisSignals(redis),
        activity=RedisActivity(redis),
        cache=RedisCacheIndex(redis),
        traffic=RedisTraffic(redis),
    )


def memory_stores() -> Stores:
    return Stores(
        ports=MemoryPortStore(),
        admission=MemoryAdmission(),
        events=MemoryEvents(),
        signals=MemorySignals(),
        activity=MemoryActivity(),
        cache=MemoryCacheIndex(),
        traffic=MemoryTraffic(),
    )
