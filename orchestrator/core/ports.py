"""Host ports for previews: a pool shared by every worker through one store.

The policy (which port to try next, what counts as free) is plain code over a
:class:`PortStore`; :class:`RedisPortStore` makes claims atomic across processes and hosts
(``SET NX``), :class:`MemoryPortStore` serves the unit tests.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable
from typing import Protocol

from redis import Redis

from orchestrator.adapters.redis_client import get_redis
from orchestrator.config import Settings
from orchestrator.core import defaults
from orchestrator.core.exceptions import NoFreePort

_RELEASE_IF_OWNER = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""

_TRANSFER_IF_OWNER = """
if redis.call('get', KEYS[1]) == ARGV[1] then redis.call('set', KEYS[1], ARGV[2]) return 1 end
return 0
"""


class PortStore(Protocol):
    def claim(self, port: int, owner: str) -> bool:
        """Take ``port`` for ``owner`` if nobody holds it; True when taken."""

    def release(self, port: int, owner: str) -> bool:
        """Give ``port`` back if ``owner`` holds it; True when released."""

    def transfer(self, port: int, owner: str, new_owner: str) -> bool:
        """Hand ``port`` from ``owner`` to ``new_owner`` in one step; True when done."""

    def owner(self, port: int) -> str | None: ...

    def held(self) -> dict[int, str]:
        """Every port held, with its owner."""


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
    def __init__(self, redis: Redis, prefix: str = defaults.PORT_KEY) -> None:
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
        value = self.redis.get(f"{self.prefix}{port}")
        return value.decode() if isinstance(value, bytes) else value

    def held(self) -> dict[int, str]:
        found = {}
        for key in self.redis.scan_iter(match=f"{self.prefix}*", count=500):
            key = key.decode() if isinstance(key, bytes) else key
            owner = self.owner(int(key[len(self.prefix) :]))
            if owner is not None:
                found[int(key[len(self.prefix) :])] = owner
        return found


def port_is_bindable(port: int, host: str = "0.0.0.0") -> bool:
    """True when no process on this host listens on ``port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


class PortPool:
    def __init__(
        self,
        store: PortStore,
        ports: Iterable[int],
        is_free: Callable[[int], bool] = port_is_bindable,
    ) -> None:
        self.store = store
        self.ports = list(ports)
        self.is_free = is_free

    def allocate(self, owner: str) -> int:
        """Claim the lowest port that nobody holds and no other process listens on."""
        for port in self.ports:
            if self.store.owner(port) is not None:
                continue
            if not self.is_free(port):
                continue  # held by a process outside the orchestrator
            if self.store.claim(port, owner):
                return port
        raise NoFreePort(f"all {len(self.ports)} preview ports ({self.ports[0]}-{self.ports[-1]}) are in use")

    def release(self, port: int, owner: str) -> bool:
        return self.store.release(port, owner)


def port_pool(settings: Settings) -> PortPool:
    """The preview ports of this installation, shared through its Redis."""
    return PortPool(
        RedisPortStore(get_redis()), range(settings.port_range_start, settings.port_range_end + 1)
    )
