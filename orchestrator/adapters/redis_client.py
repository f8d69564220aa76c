"""Connections to Redis: one client per process, made by the process's context."""

from __future__ import annotations

from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from redis.exceptions import RedisError

from orchestrator.core.exceptions import ServiceUnavailable

SOCKET_TIMEOUT = 15
"""Seconds a reply may take. redis-py's own default (5 s) equals the longest blocking read we
make (an event wait of 5 s), so such a wait could time out on the socket and fail the request
(a cancel answered 500); every blocking read is at most BLOCK_SECONDS."""

BLOCK_SECONDS = 5
"""The longest a blocking read (XREAD, BLPOP) may wait in one command: callers loop."""


def connect(url: str) -> Redis:
    return Redis.from_url(
        url, socket_connect_timeout=5, socket_timeout=SOCKET_TIMEOUT, health_check_interval=30
    )


def connect_async(url: str) -> AsyncRedis:
    """The asyncio client the API follows event streams with."""
    return AsyncRedis.from_url(
        url, socket_connect_timeout=5, socket_timeout=SOCKET_TIMEOUT, health_check_interval=30
    )


def check(redis: Redis, url: str) -> None:
    try:
        redis.ping()
    except RedisError as exc:
        raise ServiceUnavailable(f"Redis at {url} cannot be reached: {exc}") from exc
