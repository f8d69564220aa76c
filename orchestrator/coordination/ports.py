"""Who holds which host port: claims are atomic across processes and hosts (Redis ``SET NX``,
compare-and-delete in Lua), or kept in a dict for one process (tests). The policy of which port
to try lives in orchestrator.core.ports."""

from __future__ import annotations

from redis import Redis

from orchestrator.coordination import keys

_RELEASE_IF_OWNER = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""

_TRANSFER_IF_OWNER = """
if redis.call('get', KEYS[1]) == ARGV[1] then redis.call('set', KEYS[1], ARGV[2]) return 1 end
return 0
"""


class MemoryPortStore:
    def __init__(self) -> None:
        self._owners: dict[int, str] = {}

    def claim(self, port: int, owner: str) -> bool:
        if port in self._owners:
            return False
        self._owners[port] = owner
        return True

    def release(self, port: int, owner: str) -> bool:
        if self._owners.get(port) == owner:
            del self._owners[port]
            return True
        return False

    def transfer(self, port: int, owner: str, new_owner: str) -> bool:
        if self._owners.get(port) != owner:
            return False
        self._owners[port] = new_owner
        return True

    def owner(self, port: int) -> str | None:
        return self._owners.get(port)

    def held(self) -> dict[int, str]:
        return dict(self._owners)


class RedisPortStore:
    def __init__(self, redis: Redis, prefix: str) -> None:
        """``prefix``: one host's (keys.on_host(keys.PORT, host id))."""
        self.redis = redis
        self.prefix = prefix
        self._release = redis.register_script(_RELEASE_IF_OWNER)
        self._transfer = redis.register_script(_TRANSFER_IF_OWNER)

    def claim(self, port: int, owner: str) -> bool:
        return bool(self.redis.set(f"{self.prefix}{port}", owner, nx=True))

    def release(self, port: int, owner: str) -> bool:
        return bool(self._release(keys=[f"{self.prefix}{port}"], args=[owner]))

    def transfer(self, port: int, owner: str, new_owner: str) -> bool:
        return bool(self._transfer(keys=[f"{self.prefix}{port}"], args=[owner, new_owner]))

    def owner(self, port: int) -> str | None:
        return keys.text(self.redis.get(f"{self.prefix}{port}"))  # type: ignore[arg-type]

    def held(self) -> dict[int, str]:
        found = {}
        for key in self.redis.scan_iter(match=f"{self.prefix}*", count=500):
            port = int((keys.text(key) or "")[len(self.prefix) :])
            owner = self.owner(port)
            if owner is not None:
                found[port] = owner
        return found
