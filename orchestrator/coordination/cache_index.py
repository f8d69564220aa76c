"""What the dependency cache keeps beside its images: when each entry was last used (for LRU
eviction), and one lock per entry being filled, so that builds with the same dependencies fill
it once. The lock is renewed while held and free LOCK_SECONDS after its holder died."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol

from redis import Redis
from redis.exceptions import LockError, RedisError

from orchestrator.coordination import keys

LOCK_SECONDS = 15
"""A fill lock whose holder stopped renewing it is free after this long."""


class CacheIndex(Protocol):
    def touch(self, key: str) -> None:
        """The entry was used now."""

    def last_used(self, key: str) -> float | None: ...

    def forget(self, key: str) -> None: ...

    def filling(self, key: str, timeout: float) -> contextlib.AbstractContextManager[None]:
        """Held while one build fills ``key``; others wait up to ``timeout`` + 60 s for it."""


class RedisCacheIndex:
    """One host's index: its entries are images on its own engine, so each host keeps its own
    (``deps-used:<host>``, ``deps-fill:<host>:<key>``)."""

    def __init__(self, redis: Redis, host_id: str) -> None:
        self.redis = redis
        self.used_key = keys.deps_used(host_id)
        self.lock_prefix = keys.on_host(keys.DEPS_FILL_LOCK, host_id)

    def touch(self, key: str) -> None:
        self.redis.zadd(self.used_key, {key: time.time()})

    def last_used(self, key: str) -> float | None:
        used = self.redis.zscore(self.used_key, key)
        return None if used is None else float(used)  # type: ignore[arg-type]

    def forget(self, key: str) -> None:
        self.redis.zrem(self.used_key, key)

    @contextmanager
    def filling(self, key: str, timeout: float) -> Iterator[None]:
        lock = self.redis.lock(
            self.lock_prefix + key,
            timeout=LOCK_SECONDS,
            blocking_timeout=timeout + 60,
            thread_local=False,  # renewed from another thread
        )
        acquired = lock.acquire()
        done = threading.Event()

        def renew() -> None:
            while not done.wait(LOCK_SECONDS / 3):
                with contextlib.suppress(RedisError):
                    lock.reacquire()

        renewer = threading.Thread(target=renew, name=f"fill-lock-{key[:8]}", daemon=True)
        if acquired:
            renewer.start()
        try:
            yield
        finally:
            done.set()
            if acquired:
                renewer.join()
                with contextlib.suppress(LockError):
                    lock.release()


class MemoryCacheIndex:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._used: dict[str, float] = {}
        self._locks: dict[str, threading.Lock] = {}

    def touch(self, key: str) -> None:
        self._used[key] = self.clock()

    def last_used(self, key: str) -> float | None:
        return self._used.get(key)

    def forget(self, key: str) -> None:
        self._used.pop(key, None)

    @contextmanager
    def filling(self, key: str, timeout: float) -> Iterator[None]:
        lock = self._locks.setdefault(key, threading.Lock())
        acquired = lock.acquire(timeout=timeout + 60)
        try:
            yield
        finally:
            if acquired:
                lock.release()
