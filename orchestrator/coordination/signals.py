"""Small signals between processes: cancel requests, build heartbeats, recovery claims, the
schedule of periodic tasks and worker wake-ups. Each is a Redis key of
orchestrator.coordination.keys, or a dict with deadlines for one process."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from redis import Redis

from orchestrator.coordination import keys


class Signals(Protocol):
    def request_cancel(self, build_id: str, by: str) -> None:
        """Ask the worker running a build to stop it."""

    def cancel_requested(self, build_id: str) -> str | None:
        """Who asked to cancel the build, None when nobody did."""

    def clear_cancel(self, build_id: str) -> None: ...

    def beat(self, build_id: str, attempt: int) -> None:
        """The worker running this attempt of the build is alive (for HEARTBEAT_TTL seconds)."""

    def alive(self, build_id: str, attempt: int) -> bool: ...

    def stop_beating(self, build_id: str, attempt: int) -> None: ...

    def kept_for(self) -> float:
        """Seconds the heartbeats have been kept without a loss (Redis' uptime: a restarted Redis
        forgot them all, and a silence is evidence only once every worker had time to beat)."""

    def claim_recovery(self, build_id: str, attempt: int) -> bool:
        """True for the one process that may recover this lost attempt now."""

    def due(self, task: str, interval: int) -> bool:
        """True for the one process that runs ``task`` (gc, reconcile) this interval."""

    def done(self, task: str) -> None:
        """``task`` is over before its interval: the next ``due`` is true at once (a wake)."""

    def worker_seen(self, name: str) -> None:
        """Worker ``name`` is alive now."""

    def workers(self) -> dict[str, float]:
        """The workers seen within WORKER_TTL, with when (epoch seconds)."""

    def wake(self) -> None:
        """Wake an idle worker."""

    def wait_for_wake(self, timeout: float) -> None:
        """Sleep until woken or ``timeout`` seconds passed."""


class RedisSignals:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    def request_cancel(self, build_id: str, by: str) -> None:
        self.redis.set(keys.CANCEL + build_id, by, ex=keys.CANCEL_TTL)

    def cancel_requested(self, build_id: str) -> str | None:
        return keys.text(self.redis.get(keys.CANCEL + build_id))  # type: ignore[arg-type]

    def clear_cancel(self, build_id: str) -> None:
        self.redis.delete(keys.CANCEL + build_id)

    def beat(self, build_id: str, attempt: int) -> None:
        self.redis.set(keys.attempt_key(keys.HEARTBEAT, build_id, attempt), "1", ex=keys.HEARTBEAT_TTL)

    def alive(self, build_id: str, attempt: int) -> bool:
        return bool(self.redis.exists(keys.attempt_key(keys.HEARTBEAT, build_id, attempt)))

    def stop_beating(self, build_id: str, attempt: int) -> None:
        self.redis.delete(keys.attempt_key(keys.HEARTBEAT, build_id, attempt))

    def kept_for(self) -> float:
        info: Any = self.redis.info("server")
        return float(info["uptime_in_seconds"])

    def claim_recovery(self, build_id: str, attempt: int) -> bool:
        key = keys.attempt_key(keys.RECOVERING, build_id, attempt)
        return bool(self.redis.set(key, "1", nx=True, ex=keys.RECOVERING_TTL))

    def due(self, task: str, interval: int) -> bool:
        return bool(self.redis.set(keys.SCHEDULE + task, "1", nx=True, ex=interval))

    def done(self, task: str) -> None:
        self.redis.delete(keys.SCHEDULE + task)

    def _now(self) -> float:
        """Redis' clock: every host judges "last seen" by the same one."""
        seconds, micros = self.redis.time()  # type: ignore[misc]
        return seconds + micros / 1e6

    def worker_seen(self, name: str) -> None:
        self.redis.hset(keys.WORKERS, name, str(self._now()))

    def workers(self) -> dict[str, float]:
        found: Any = self.redis.hgetall(keys.WORKERS)
        now, alive = self._now(), {}
        for name, seen in found.items():
            if now - float(seen) <= keys.WORKER_TTL:
                alive[keys.text(name) or ""] = float(seen)
            else:
                self.redis.hdel(keys.WORKERS, name)
        return alive

    def wake(self) -> None:
        pipe = self.redis.pipeline()
        pipe.rpush(keys.WAKE, "1")
        pipe.ltrim(keys.WAKE, -100, -1)
        pipe.execute()

    def wait_for_wake(self, timeout: float) -> None:
        self.redis.blpop([keys.WAKE], timeout=timeout)


class MemorySignals:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._expiring: dict[str, tuple[str, float]] = {}
        self._woken = threading.Event()
        self._seen: dict[str, float] = {}

    def _set(self, key: str, value: str, ttl: float, nx: bool = False) -> bool:
        if nx and self._get(key) is not None:
            return False
        self._expiring[key] = (value, self.clock() + ttl)
        return True

    def _get(self, key: str) -> str | None:
        entry = self._expiring.get(key)
        if entry is None or entry[1] <= self.clock():
            self._expiring.pop(key, None)
            return None
        return entry[0]

    def request_cancel(self, build_id: str, by: str) -> None:
        self._set(keys.CANCEL + build_id, by, keys.CANCEL_TTL)

    def cancel_requested(self, build_id: str) -> str | None:
        return self._get(keys.CANCEL + build_id)

    def clear_cancel(self, build_id: str) -> None:
        self._expiring.pop(keys.CANCEL + build_id, None)

    def beat(self, build_id: str, attempt: int) -> None:
        self._set(keys.attempt_key(keys.HEARTBEAT, build_id, attempt), "1", keys.HEARTBEAT_TTL)

    def alive(self, build_id: str, attempt: int) -> bool:
        return self._get(keys.attempt_key(keys.HEARTBEAT, build_id, attempt)) is not None

    def stop_beating(self, build_id: str, attempt: int) -> None:
        self._expiring.pop(keys.attempt_key(keys.HEARTBEAT, build_id, attempt), None)

    def kept_for(self) -> float:
        return float("inf")  # lives and dies with the one process whose builds beat in it

    def claim_recovery(self, build_id: str, attempt: int) -> bool:
        key = keys.attempt_key(keys.RECOVERING, build_id, attempt)
        return self._set(key, "1", keys.RECOVERING_TTL, nx=True)

    def due(self, task: str, interval: int) -> bool:
        return self._set(keys.SCHEDULE + task, "1", interval, nx=True)

    def done(self, task: str) -> None:
        self._expiring.pop(keys.SCHEDULE + task, None)

    def worker_seen(self, name: str) -> None:
        self._seen[name] = time.time()

    def workers(self) -> dict[str, float]:
        now = time.time()
        return {name: seen for name, seen in self._seen.items() if now - seen <= keys.WORKER_TTL}

    def wake(self) -> None:
        self._woken.set()

    def wait_for_wake(self, timeout: float) -> None:
        self._woken.wait(timeout)
        self._woken.clear()
