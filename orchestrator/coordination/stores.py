"""Every coordination store of one process, in Redis (shared by every process and host) or in
memory (one process: the unit tests and the in-memory context)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from redis import Redis
from redis.asyncio import Redis as AsyncRedis

from orchestrator.coordination import keys
from orchestrator.coordination.activity import ActivityStore, MemoryActivity, RedisActivity
from orchestrator.coordination.admission import Admission, MemoryAdmission, RedisAdmission
from orchestrator.coordination.cache_index import CacheIndex, MemoryCacheIndex, RedisCacheIndex
from orchestrator.coordination.events import Events, MemoryEvents, RedisEvents
from orchestrator.coordination.hosts import HostRegistry, MemoryHostRegistry, RedisHostRegistry
from orchestrator.coordination.ports import MemoryPortStore, RedisPortStore
from orchestrator.coordination.signals import MemorySignals, RedisSignals, Signals
from orchestrator.coordination.traffic import MemoryTraffic, RedisTraffic, Traffic
from orchestrator.core.ports import PortStore


@dataclass
class Stores:
    ports: PortStore
    """This host's preview ports (each host has its own: core.hosts)."""
    admission: Admission
    events: Events
    signals: Signals
    activity: ActivityStore
    cache: CacheIndex
    """This host's dependency-cache index (its entries are images on its own engine)."""
    traffic: Traffic
    hosts: HostRegistry
    ports_on: Callable[[str], PortStore] = field(repr=False, default=lambda _host: MemoryPortStore())
    """Another host's ports (a lost build's, a stopped preview's)."""

    def ports_of(self, host_id: str | None, mine: str) -> PortStore:
        """The ports of ``host_id`` (None: a build recorded before hosts were, this host's)."""
        return self.ports if host_id in (None, mine) else self.ports_on(host_id)


def redis_stores(redis: Redis, async_redis: Callable[[], AsyncRedis], host_id: str = "local") -> Stores:
    return Stores(
        ports=RedisPortStore(redis, keys.on_host(keys.PORT, host_id)),
        admission=RedisAdmission(redis),
        events=RedisEvents(redis, async_redis),
        signals=RedisSignals(redis),
        activity=RedisActivity(redis),
        cache=RedisCacheIndex(redis, host_id),
        traffic=RedisTraffic(redis),
        hosts=RedisHostRegistry(redis),
        ports_on=lambda other: RedisPortStore(redis, keys.on_host(keys.PORT, other)),
    )


def memory_stores() -> Stores:
    others: dict[str, MemoryPortStore] = {}
    return Stores(
        ports=MemoryPortStore(),
        admission=MemoryAdmission(),
        events=MemoryEvents(),
        signals=MemorySignals(),
        activity=MemoryActivity(),
        cache=MemoryCacheIndex(),
        traffic=MemoryTraffic(),
        hosts=MemoryHostRegistry(),
        ports_on=lambda other: others.setdefault(other, MemoryPortStore()),
    )
