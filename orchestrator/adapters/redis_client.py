"""Connections to Redis: one client per process, made by the process's context."""

from __future__ import annotations

from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from redis.exceptions import RedisError

from orchestrator.core.exceptions import ServiceUnavailable


def connect(url: str) -> Redis:
    return Redis.from_url(url, socket_connect_timeout=5, health_check_interval=30)


def connect_async(url: str) -> AsyncRedis:
    """The asyncio client the API follows event streams with."""
    return AsyncRedis.from_url(url, socket_connect_timeout=5, health_check_interval=30)


def check(redis: Redis, url: str) -> None:
    try:
        redis.ping()
    except RedisError as exc:
        raise ServiceUnavailable(f"Redis at {url} cannot be reached: {exc}") from exc
