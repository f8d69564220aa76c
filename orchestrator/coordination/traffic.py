"""What the preview gateway forwarded to each preview: requests, bytes each way, and when the
last request came (idleness is judged by it, orchestrator.state.previews). Every gateway process
adds its own counts every second; a Redis hash per build, or a dict."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from redis import Redis

from orchestrator.coordination import keys


@dataclass
class Counts:
    requests: int = 0
    bytes_in: int = 0
    """Request bytes (bodies and websocket messages) sent to the preview."""
    bytes_out: int = 0
    """Response bytes (bodies and websocket messages) sent back."""
    last_request: float = 0.0
    """Unix seconds of the newest request (0: none yet)."""

    def add(self, other: Counts) -> None:
        self.requests += other.requests
        self.bytes_in += other.bytes_in
        self.bytes_out += other.bytes_out
        self.last_request = max(self.last_request, other.last_request)


class Traffic(Protocol):
    def add(self, counts: dict[str, Counts]) -> None:
        """Add one gateway's counts since its last report, per build."""

    def get(self, build_id: str) -> Counts | None:
        """Everything counted for the build's preview, None when nothing was."""

    def move(self, from_build: str, to_build: str) -> None:
        """A preview handed over to another build keeps its counts."""

    def forget(self, build_id: str) -> None: ...


_ADD = """
redis.call('HINCRBY', KEYS[1], 'requests', ARGV[1])
redis.call('HINCRBY', KEYS[1], 'bytesIn', ARGV[2])
redis.call('HINCRBY', KEYS[1], 'bytesOut', ARGV[3])
local last = tonumber(redis.call('HGET', KEYS[1], 'lastRequest') or '0')
if tonumber(ARGV[4]) > last then redis.call('HSET', KEYS[1], 'lastRequest', ARGV[4]) end
"""
"""One gateway's counts added to a build's, keeping the newest last request of all gateways."""


class RedisTraffic:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._add = redis.register_script(_ADD)

    def add(self, counts: dict[str, Counts]) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for build_id, c in counts.items():
            args: list[int | str] = [c.requests, c.bytes_in, c.bytes_out, repr(c.last_request)]
            self._add(keys=[keys.TRAFFIC + build_id], args=args, client=pipe)
        pipe.execute()

    def get(self, build_id: str) -> Counts | None:
        raw = {keys.text(k): keys.text(v) for k, v in self.redis.hgetall(keys.TRAFFIC + build_id).items()}  # type: ignore[union-attr]
        if not raw:
            return None
        return Counts(
            int(raw.get("requests") or 0),
            int(raw.get("bytesIn") or 0),
            int(raw.get("bytesOut") or 0),
            float(raw.get("lastRequest") or 0),
        )

    def move(self, from_build: str, to_build: str) -> None:
        if self.redis.exists(keys.TRAFFIC + from_build):
            self.redis.rename(keys.TRAFFIC + from_build, keys.TRAFFIC + to_build)

    def forget(self, build_id: str) -> None:
        self.redis.delete(keys.TRAFFIC + build_id)


@dataclass
class MemoryTraffic:
    counts: dict[str, Counts] = field(default_factory=dict)

    def add(self, counts: dict[str, Counts]) -> None:
        for build_id, c in counts.items():
            self.counts.setdefault(build_id, Counts()).add(c)

    def get(self, build_id: str) -> Counts | None:
        found = self.counts.get(build_id)
        if found is None:
            return None
        return Counts(found.requests, found.bytes_in, found.bytes_out, found.last_request)

    def move(self, from_build: str, to_build: str) -> None:
        if from_build in self.counts:
            self.counts[to_build] = self.counts.pop(from_build)

    def forget(self, build_id: str) -> None:
        self.counts.pop(build_id, None)
