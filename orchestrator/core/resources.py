"""Is there room on this host for one more build? (The decision is plain code; the snapshot
comes from orchestrator.adapters.host and the containers' own memory use.)

A build that finds the host short **waits** (stays queued with the reason) and starts when
room frees up; it never fails for it. Running previews count by the memory they really use,
builds in progress by their limit (npm grows up to it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from orchestrator.core.defaults import LABEL_NAMESPACE

if TYPE_CHECKING:
    from orchestrator.config import Settings

MB = 1024 * 1024


@dataclass(frozen=True)
class Snapshot:
    host_memory_percent: float
    cpu_percent: float
    previews_memory_mb: float
    """What the orchestrator's containers that are not building really use."""
    building: int
    """Containers of builds in progress (at least one a build), each counted at its memory
    limit: a build's container and its type check's, while both run."""
    free_ports: int | None = None
    """Preview ports neither held nor about to be taken by a build in progress (None: unknown)."""
    free_disk: tuple[str, float] | None = None
    """The fullest of the folders builds write to, and the MB free there (None: unknown)."""


def split_containers(containers: list[dict], active: set[str]) -> tuple[list[str], int]:
    """Of our running containers (as Docker lists them): the ids of the previews, and how many
    containers builds in progress hold, at least one a build (its own, beside its type check's)."""
    previews: list[str] = []
    running: dict[str, int] = {}
    for container in containers:
        if container.get("State") != "running":
            continue
        build_id = (container.get("Labels") or {}).get(f"{LABEL_NAMESPACE}.build-id") or ""
        if build_id in active:
            running[build_id] = running.get(build_id, 0) + 1
        else:
            previews.append(container["Id"])
    return previews, sum(max(1, running.get(build_id, 0)) for build_id in active)


def memory_limit_mb(settings: Settings) -> float:
    text = settings.memory_limit.strip().lower().rstrip("b")
    factor = {"k": 1 / 1024, "m": 1, "g": 1024}.get(text[-1:], 1 / MB)
    return float(text.rstrip("kmg")) * factor


def shortage(snapshot: Snapshot, settings: Settings) -> str | None:
    """Why a build cannot start now, or None when it can."""
    if snapshot.host_memory_percent > settings.max_memory_percent:
        return f"waiting for resources: memory {snapshot.host_memory_percent:.0f}% used"
    limit = memory_limit_mb(settings)
    in_use = snapshot.previews_memory_mb + snapshot.building * limit
    if in_use + limit > settings.build_memory_budget_mb:
        return (
            f"waiting for resources: {in_use:.0f} MB of the {settings.build_memory_budget_mb} MB "
            f"build memory budget in use, a build needs {limit:.0f} MB"
        )
    if snapshot.cpu_percent > settings.max_cpu_percent:
        return f"waiting for resources: CPU {snapshot.cpu_percent:.0f}% busy"
    if snapshot.free_ports is not None and snapshot.free_ports <= 0:
        ports = settings.port_range_end - settings.port_range_start + 1
        return (
            f"waiting for a free preview port (all {ports} ports of "
            f"{settings.port_range_start}-{settings.port_range_end} in use)"
        )
    if snapshot.free_disk is not None and snapshot.free_disk[1] < settings.min_free_disk_mb:
        where, free = snapshot.free_disk
        return (
            f"waiting for disk space: {free:.0f} MB free on {where}, "
            f"{settings.min_free_disk_mb} MB are kept free"
        )
    return None


def wake_shortage(memory_percent: float, settings: Settings) -> str | None:
    """Why a sleeping preview may not wake now, or None when it may. Waking is not queued like
    a build (a visitor is waiting), but a host past the memory builds wait for would start a
    container it cannot hold."""
    if memory_percent > settings.max_memory_percent:
        return (
            f"this host's memory is {memory_percent:.0f}% used, and previews wake only below "
            f"{settings.max_memory_percent:.0f}%"
        )
    return None


def free_ports(settings: Settings, held: int, active_without_port: int) -> int:
    """Preview ports left for one more build: the range, less those held, less one for each
    build in progress that has not taken its port yet."""
    return settings.port_range_end - settings.port_range_start + 1 - held - active_without_port
