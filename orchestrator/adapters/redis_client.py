"""The one Redis connection of a process, and the locks the orchestrator takes in it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from redis.exceptions import RedisError

from orchestrator.config import get_settings
from orchestrator.core import defaults
from orchestrator.core.exceptions import ServiceUnavailable


@lru_cache
def get_redis() -> Redis:
    return Redis.from_url(get_settings().redis_url, socket_connect_timeout=5, health_check_interval=30)


def check_redis() -> None:
    try:
        get_redis().ping()
    except RedisError as exc:
        raise ServiceUnavailable(f"Redis at {get_settings().redis_url} cannot be reached: {exc}") from exc


@contextmanager
def migration_lock() -> Iterator[None]:
    try:
        lock = get_redis().lock(defaults.MIGRATION_LOCK_KEY, timeout=300, blocking_timeout=300)
        acquired = lock.acquire()
    except RedisError as exc:
        raise ServiceUnavailable(f"Redis at {get_settings().redis_url} cannot be reached: {exc}") from exc
    try:
        yield
    finally:
        if acquired:
            lock.release()


@lru_cache
def get_async_redis() -> AsyncRedis:
    """The asyncio client the API follows event streams with."""
    return AsyncRedis.from_url(get_settings().redis_url, socket_connect_timeout=5, health_check_interval=30)
