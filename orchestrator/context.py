"""One context per process: the settings, the database, the coordination stores and the
container runtime, made once where the process starts (the API's start-up, the worker's
start, a CLI command) and passed explicitly to everything below. Nothing under it reaches for
a global.

``Context.connect(settings)`` is the real one: the Docker engine, Redis, the database of
DATABASE_URL (SQLite by default). ``Context.in_memory()`` gives the same interfaces in memory:
the scripted runtime, the memory stores and an in-memory SQLite, for unit tests.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from redis import Redis
from redis.exceptions import RedisError
from sqlmodel import Session

from orchestrator.adapters import redis_client
from orchestrator.adapters.database import Database
from orchestrator.adapters.egress import Egress, MemoryEgress
from orchestrator.adapters.host import port_is_bindable
from orchestrator.adapters.runtime import Runtime
from orchestrator.adapters.visits import MemoryVisits, Visits
from orchestrator.config import Settings
from orchestrator.coordination import keys
from orchestrator.coordination.stores import Stores, memory_stores, redis_stores
from orchestrator.core.exceptions import RuntimeUnavailable, ServiceUnavailable
from orchestrator.core.hosts import HostInfo
from orchestrator.core.ports import PortPool

if TYPE_CHECKING:
    from orchestrator.adapters.memory_runtime import MemoryRuntime


@dataclass
class Context:
    settings: Settings
    database: Database
    stores: Stores
    runtime: Runtime
    redis: Redis | None = None
    """The Redis client of the real context (RQ's connection); None in memory."""
    port_is_free: Callable[[int], bool] = port_is_bindable
    worker_name: str | None = None
    """This process's worker name, when it is a build worker (its builds' heartbeats say it lives)."""
    egress: Egress = field(default_factory=MemoryEgress)
    """Where build containers may connect, as this host enforces it (the firewall when real)."""
    visits: Visits = field(default_factory=MemoryVisits)
    """Traffic to previews from outside their containers (what idleness is judged by)."""
    host_record: HostInfo | None = None
    """This host's record, when this process is one of its workers (it beats it, and so do the
    heartbeats of its builds: a worker busy with a long build keeps its host live)."""
    runtimes: dict[str, Runtime] = field(default_factory=dict)
    """The other hosts' engines this process has driven (runtime_for), by host id."""
    engine_of: Callable[[str, str], Runtime] | None = None
    """How to reach another host's engine: (host id, engine address) → its runtime."""

    @property
    def host_id(self) -> str:
        """The host this process's engine is (core.hosts)."""
        return self.settings.host

    @classmethod
    def connect(cls, settings: Settings) -> Context:
        from orchestrator.adapters.docker_runtime import DockerRuntime
        from orchestrator.adapters.firewall import IptablesEgress, IptablesVisits

        if settings.database_url is None:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
        redis = redis_client.connect(settings.redis_url)
        # The asyncio client is made in the event loop that first asks for it (the API's).
        async_redis = functools.cache(lambda: redis_client.connect_async(settings.redis_url))
        stores = redis_stores(redis, async_redis, settings.host)
        return cls(
            settings,
            Database(settings.sqlalchemy_url),
            stores,
            DockerRuntime(settings),
            redis,
            egress=IptablesEgress(),
            visits=IptablesVisits(),
            engine_of=lambda _host, engine: DockerRuntime(settings, engine=engine),
        )

    @classmethod
    def in_memory(
        cls,
        settings: Settings | None = None,
        runtime: MemoryRuntime | None = None,
        database_url: str = "sqlite://",
    ) -> Context:
        """Everything in memory, the database too unless ``database_url`` names one (the unit
        tests' PostgreSQL pass). The schema is not created: orchestrator.state.schema does."""
        from orchestrator.adapters.memory_runtime import MemoryRuntime

        settings = settings or Settings(npm_registry="http://127.0.0.1:4873/", redis_url="redis://")
        database = Database(database_url)
        return cls(
            settings,
            database,
            memory_stores(),
            runtime or MemoryRuntime(settings),
            port_is_free=lambda _: True,
        )

    def session(self) -> contextlib.AbstractContextManager[Session]:
        """A session that commits on success and rolls back on error."""
        return self.database.session()

    def port_pool(self, host_id: str | None = None) -> PortPool:
        """This host's preview ports, or (to release one) another host's."""
        s = self.settings
        store = self.stores.ports_of(host_id, self.host_id)
        return PortPool(store, range(s.port_range_start, s.port_range_end + 1), self.port_is_free)

    def is_here(self, host_id: str | None) -> bool:
        """Whether ``host_id`` is this process's host (None: a build from before hosts were)."""
        return host_id is None or host_id == self.host_id

    def reach(self, host_id: str | None) -> tuple[str, str]:
        """The address at which this process reaches host ``host_id``'s preview ports, and the
        host name those previews accept (their Host header)."""
        if self.is_here(host_id):
            return self.settings.preview_address, self.settings.public_host
        assert host_id is not None
        live = self.stores.hosts.get(host_id)
        if live is None:
            raise RuntimeUnavailable(f"host {host_id} has no live worker: its previews are not reachable")
        return live.address, live.public_host

    def runtime_for(self, host_id: str | None) -> Runtime:
        """The engine of host ``host_id``, where a build's containers are (None: a build recorded
        before hosts were, on this host). Another host's engine is reached at the address its
        record gives (core.hosts.HostInfo.engine)."""
        if host_id is None or self.is_here(host_id):
            return self.runtime
        live = self.stores.hosts.get(host_id)
        if live is None:  # (a host lost since: its engine is not driven any more)
            gone = self.runtimes.pop(host_id, None)
            if gone is not None:
                gone.close()
            raise RuntimeUnavailable(f"host {host_id} has no live worker: its engine is not reachable")
        if host_id not in self.runtimes:
            if self.engine_of is None:
                raise RuntimeUnavailable(f"host {host_id}'s engine is not reachable from this process")
            self.runtimes[host_id] = self.engine_of(host_id, live.engine)
        return self.runtimes[host_id]

    def check_redis(self) -> None:
        if self.redis is not None:
            redis_client.check(self.redis, self.settings.redis_url)

    @contextmanager
    def migration_lock(self) -> Iterator[None]:
        """Held while the schema is migrated, so that processes starting together migrate once."""
        if self.redis is None:
            yield
            return
        try:
            lock = self.redis.lock(keys.MIGRATION_LOCK, timeout=300, blocking_timeout=300)
            acquired = lock.acquire()
        except RedisError as exc:
            raise ServiceUnavailable(
                f"Redis at {redis_client.shown(self.settings.redis_url)} cannot be reached: {exc}"
            ) from exc
        try:
            yield
        finally:
            if acquired:
                lock.release()

    def after_fork(self) -> None:
        """In a forked child (an RQ work horse): new connections, none of the parent's."""
        self.database.after_fork()
        self.runtime.close()
        self.runtimes.clear()

    def close(self) -> None:
        self.runtime.close()
        for runtime in self.runtimes.values():
            runtime.close()
        self.database.close()
        if self.redis is not None:
            self.redis.close()


_process: Context | None = None


def install(ctx: Context) -> Context:
    """Make ``ctx`` the context of this process's entry points (the RQ job functions, which RQ
    calls with their arguments only). Only entry points read it back, with ``current()``."""
    global _process
    _process = ctx
    return ctx


def current() -> Context:
    """The context installed by this process's start (RQ job functions only)."""
    if _process is None:
        return install(Context.connect(Settings()))
    return _process
