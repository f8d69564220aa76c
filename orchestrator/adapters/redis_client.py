"""Connections to Redis: one client per process, made by the process's context.

``REDIS_URL`` names one Redis (``redis://``, ``rediss://``, ``unix://``), or the Sentinels that
know which Redis is the master: ``redis+sentinel://[:password@]host:26379,host:26379/<master
name>?db=0``. Through Sentinels, a client finds the master when it connects, and again after
a failover (redis-py's Sentinel support): only the URL changes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.exceptions import RedisError
from redis.sentinel import Sentinel

from orchestrator.core.exceptions import ServiceUnavailable

SOCKET_TIMEOUT = 15
"""Seconds a reply may take. redis-py's own default (5 s) equals the longest blocking read we
make (an event wait of 5 s), so such a wait could time out on the socket and fail the request
(a cancel answered 500); every blocking read is at most BLOCK_SECONDS."""

BLOCK_SECONDS = 5
"""The longest a blocking read (XREAD, BLPOP) may wait in one command: callers loop."""

SENTINEL_SCHEME = "redis+sentinel"
OPTIONS: dict[str, Any] = {
    "socket_connect_timeout": 5,
    "socket_timeout": SOCKET_TIMEOUT,
    "health_check_interval": 30,
}


@dataclass(frozen=True)
class SentinelUrl:
    """What a ``redis+sentinel://`` URL names."""

    sentinels: list[tuple[str, int]]
    master: str
    db: int = 0
    username: str | None = None
    password: str | None = None


def sentinel_url(url: str) -> SentinelUrl | None:
    """The Sentinels a URL names; None for a URL of one Redis. ValueError says what is wrong."""
    parts = urlsplit(url)
    if parts.scheme != SENTINEL_SCHEME:
        return None
    example = f"{SENTINEL_SCHEME}://[:password@]host:26379,host:26379/<master name>?db=0"
    userinfo, _, hosts = parts.netloc.rpartition("@")
    sentinels = []
    for node in filter(None, hosts.split(",")):
        host, _, port = node.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"REDIS_URL: {node!r} is not host:port (expected {example})")
        sentinels.append((host.strip("[]"), int(port)))
    master = parts.path.strip("/")
    if not sentinels or not master:
        raise ValueError(
            f"REDIS_URL names no {'Sentinel' if not sentinels else 'master'} (expected {example})"
        )
    query = parse_qs(parts.query)
    db = query.get("db", ["0"])[0]
    if not db.isdigit():
        raise ValueError(f"REDIS_URL: db={db!r} is not a number")
    username, _, password = userinfo.partition(":")
    return SentinelUrl(sentinels, master, int(db), unquote(username) or None, unquote(password) or None)


def shown(url: str) -> str:
    """The URL as messages may show it: without its password."""
    parts = urlsplit(url)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    return parts._replace(netloc=f"{userinfo.partition(':')[0]}:***@{hosts}").geturl()


def connect(url: str) -> Redis:
    found = sentinel_url(url)
    if found is None:
        return Redis.from_url(url, **OPTIONS)
    sentinels = Sentinel(found.sentinels, sentinel_kwargs={"socket_connect_timeout": 5, "socket_timeout": 5})
    auth: dict[str, Any] = {"db": found.db, "username": found.username, "password": found.password}
    return sentinels.master_for(found.master, **auth, **OPTIONS)


def connect_async(url: str) -> AsyncRedis:
    """The asyncio client the API follows event streams with."""
    found = sentinel_url(url)
    if found is None:
        return AsyncRedis.from_url(url, **OPTIONS)
    sentinels = AsyncSentinel(
        found.sentinels, sentinel_kwargs={"socket_connect_timeout": 5, "socket_timeout": 5}
    )
    auth: dict[str, Any] = {"db": found.db, "username": found.username, "password": found.password}
    return sentinels.master_for(found.master, **auth, **OPTIONS)


def check(redis: Redis, url: str) -> None:
    try:
        redis.ping()
    except RedisError as exc:
        raise ServiceUnavailable(f"Redis at {shown(url)} cannot be reached: {exc}") from exc
