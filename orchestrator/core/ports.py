"""Host ports for previews: a pool shared by every worker through one store.

The policy (which port to try next, what counts as free) is plain code over a
:class:`PortStore` (orchestrator.coordination.ports: Redis, or memory) and a test of whether a
port is free on this host (orchestrator.adapters.host).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol

from orchestrator.core.exceptions import NoFreePort


def attempt_owner(build_id: str, attempt: int) -> str:
    """Who holds a port: one attempt of a build, not the build. An attempt declared lost and
    still running can then never free (or keep) the port its successor took."""
    return f"{build_id}@{attempt}"


def owner_build(owner: str) -> str:
    """The build an owner string belongs to."""
    return owner.partition("@")[0]


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


class PortPool:
    def __init__(
        self,
        store: PortStore,
        ports: Iterable[int],
        is_free: Callable[[int], bool],
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


def parse_ranges(text: str) -> list[tuple[int, int]]:
    """The kernel's port list (``ip_local_reserved_ports``: ``"8080,41000-41999"``) as ranges."""
    ranges = []
    for part in text.replace("\n", "").split(","):
        part = part.strip()
        if part:
            low, _, high = part.partition("-")
            ranges.append((int(low), int(high or low)))
    return ranges


def _merged(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for low, high in sorted(ranges):
        if merged and low <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    return merged


def with_reserved(current: str, start: int, end: int) -> str | None:
    """The reserved-port list with ``start``-``end`` added (ranges merged), or None when the
    list already holds all of it."""
    ranges = parse_ranges(current)
    merged = _merged([*ranges, (start, end)])
    if merged == _merged(ranges):
        return None
    return ",".join(f"{low}-{high}" if high > low else str(low) for low, high in merged)
