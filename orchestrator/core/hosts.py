"""Hosts: the Docker engines builds run on, and what the rest of the service knows of each.

A host is one Docker engine and the workers that serve it. Its id names everything that is
per host: its RQ queue, its preview ports, its dependency-cache index, its scheduled gc. Its
record (HostInfo) is what its workers beat into Redis and write to the database; the gateway
reaches its previews at ``address``, and the API and the other workers drive its containers
through ``engine``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass
from typing import Any

from orchestrator.core import defaults

HOST_TTL = 30
"""A host none of whose workers beat for this long (seconds, Redis' clock) is lost."""

BEAT_SECONDS = 5
"""How often a worker beats its host's record."""

LOCAL_ENGINE = "unix:///var/run/docker.sock"

_SAFE = re.compile(r"[^a-z0-9-]+")


def default_host_id(hostname: str, engine: str | None) -> str:
    """A host's id when ORCHESTRATOR_HOST_ID is not set: the machine's name, and when the
    engine is not the machine's own socket, a short digest of its address (two engines on one
    machine are two hosts)."""
    name = _SAFE.sub("-", hostname.lower()).strip("-") or "host"
    if engine in (None, "", LOCAL_ENGINE):
        return name
    return f"{name}-{hashlib.sha256(engine.encode()).hexdigest()[:6]}"


def queue_name(host_id: str) -> str:
    """The RQ queue of the builds admitted to ``host_id``: only its own workers take them, since
    admission judged that host's room."""
    return f"{defaults.QUEUE_NAME}@{host_id}"


def check_host_id(host_id: str) -> str:
    """A host id usable in Redis keys, queue names and labels, or a ValueError saying why."""
    if not host_id or _SAFE.sub("", host_id.lower()) != host_id.lower() or len(host_id) > 63:
        raise ValueError(
            f"ORCHESTRATOR_HOST_ID {host_id!r}: use 1 to 63 letters, digits and dashes (it names "
            "the host's queue, ports and cache)"
        )
    return host_id


@dataclass(frozen=True)
class HostInfo:
    """What a host's workers say of it at each beat."""

    id: str
    address: str
    """Where the gateway and other hosts reach its preview ports."""
    engine: str
    """Its Docker engine's address, as the API and other hosts reach it."""
    public_host: str
    """The host name its preview URLs use."""
    memory_bytes: int
    cpus: int
    port_range: tuple[int, int]

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "port_range": list(self.port_range)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> HostInfo:
        start, end = data["port_range"]
        fields = {k: data[k] for k in ("id", "address", "engine", "public_host", "memory_bytes", "cpus")}
        return cls(**fields, port_range=(int(start), int(end)))


def lost_hosts(known: set[str], live: set[str], redis_kept_for: float) -> set[str]:
    """The known hosts whose record expired: none of their workers beat for HOST_TTL. Nothing is
    lost while Redis has been up for less than that (a restarted Redis forgot every beat)."""
    if redis_kept_for < HOST_TTL:
        return set()
    return known - live


def overlapping_ranges(mine: HostInfo, others: list[HostInfo]) -> list[str]:
    """Hosts on the same address whose preview ports overlap this host's: on one machine, two
    engines would publish the same port."""
    start, end = mine.port_range
    return [
        other.id
        for other in others
        if other.id != mine.id
        and other.address == mine.address
        and other.port_range[0] <= end
        and start <= other.port_range[1]
    ]


@dataclass(frozen=True)
class Placement:
    host: str
    why: str


def place(
    me: str, preferred: str | None, room: tuple[bool, str | None], live: set[str], lost_on: str | None = None
) -> Placement:
    """Where a build this host's worker just admitted runs. This host had room (it admits only
    then); a build whose website's previous build ran on another live host that has room too
    goes there (its previous preview, and likely its dependency-cache entry, are there), else
    it runs here. ``room``: what the preferred host last said (HostRegistry.room); ``lost_on``:
    the host this build's last attempt was lost on (never preferred: it may be going away)."""
    here = "this host had room"
    if lost_on is not None and lost_on != me:
        return Placement(me, f"{here}; its last attempt was lost on host {lost_on}")
    if preferred is None:
        return Placement(me, f"{here} (the website has no earlier build)")
    if preferred == me:
        return Placement(me, f"{here}, and the website's previous build ran here (its dependency cache too)")
    if preferred not in live:
        return Placement(me, f"{here}; the website's previous host {preferred} has no live worker")
    known, shortage = room
    if not known:
        return Placement(me, f"{here}; the website's previous host {preferred} has not said if it has room")
    if shortage is not None:
        return Placement(me, f"{here}; the website's previous host {preferred} is short ({shortage})")
    return Placement(preferred, "it has room, and the website's previous build ran there (its cache too)")
