"""How much a build's containers may write, and when to measure it again.

The engine on these hosts cannot bound a container's writable layer (Docker's overlay2 ``size``
option needs xfs with project quotas), so the worker measures each running container's layer
while the build runs and stops the build past its quota. It measures more often the closer a
container is to its quota: a writer is caught within about a second of writing at
``FAST_WRITE`` bytes a second. Pure: the measuring is orchestrator.pipeline.containers's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

FAST_WRITE = 1 << 30
"""Bytes a second a build might write (a fast disk): how fast it could use up its headroom."""

MIN_INTERVAL, MAX_INTERVAL = 1.0, 10.0
"""Seconds between two measurements, at the quota and far from it."""


def size_text(size: int) -> str:
    """2 GB, 512 MB: the quota as the user reads it."""
    gb, mb = size / (1 << 30), size / (1 << 20)
    return f"{gb:g} GB" if gb >= 1 and gb == int(gb) else f"{mb:.0f} MB"


def disk_mode(limit: int) -> str:
    """What is in force, for the build log."""
    if limit <= 0:
        return "no quota (ORCHESTRATOR_DISK_QUOTA_MB=0)"
    return (
        f"each container may write {size_text(limit)} on top of its image, measured every "
        f"{MIN_INTERVAL:g} to {MAX_INTERVAL:g} s and stopped past it (the engine does not enforce a size)"
    )


@dataclass
class DiskQuota:
    limit: int
    """Bytes one container may write on top of its image; 0: no quota."""
    next_at: float = 0.0
    largest: int = field(default=0)
    """The most any container was seen to write (for the log)."""

    def due(self, now: float) -> bool:
        return self.limit > 0 and now >= self.next_at

    def observe(self, used: list[int], now: float) -> str | None:
        """Take the containers' measured writes at ``now``: why the build must stop, or None
        (the next measurement is then scheduled by the headroom left)."""
        biggest = max(used, default=0)
        self.largest = max(self.largest, biggest)
        if biggest > self.limit:
            return f"wrote more than {size_text(self.limit)} (a build's disk quota)"
        headroom = (self.limit - biggest) / FAST_WRITE
        self.next_at = now + min(MAX_INTERVAL, max(MIN_INTERVAL, headroom))
        return None
