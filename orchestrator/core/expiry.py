"""When a live preview should stop, and why: pure rules, no I/O (previews.py and gc.py apply them).

A preview is *idle* when nobody has sent it anything for ``idle_ttl`` seconds. What it was
sent is read from the container itself (the TCP segments its network namespace received,
see Runtime.traffic): each observation that finds the counter moved marks the preview active
at that moment. A preview is *expired* once it has been live for ``max_age`` seconds, traffic
or not.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class StopReason(StrEnum):
    """Why a preview was stopped; recorded on the build (``stop_reason``)."""

    IDLE = "idle"
    EXPIRED = "expired"
    REPLACED = "replaced"
    DELETED = "deleted"
    GC = "gc"
    DISK_QUOTA = "disk-quota"
    """It wrote more than a container may (Settings.disk_quota_mb)."""
    ENGINE_RESTART = "engine-restart"
    """Its container stopped outside the orchestrator (a host reboot, an engine that was not
    restarted live) and could not be started again."""


@dataclass(frozen=True)
class Activity:
    """The last traffic counter seen on a preview, and when it last moved."""

    counter: int | None
    active_at: float


def observe(previous: Activity | None, counter: int | None, now: float) -> Activity:
    """The activity after reading ``counter`` at ``now``.

    A first observation counts as activity (the preview just went live, or its history was
    lost: it is not reaped on a guess). An unreadable counter changes nothing.
    """
    if previous is None:
        return Activity(counter, now)
    if counter is None or counter == previous.counter:
        return Activity(previous.counter if counter is None else counter, previous.active_at)
    return Activity(counter, now)


@dataclass(frozen=True)
class Policy:
    idle_ttl: float
    """Seconds without traffic after which a preview is stopped."""
    max_age: float
    """Seconds a preview may live at most."""


def reap_reason(policy: Policy, age: float, idle: float, website_deleted: bool = False) -> StopReason | None:
    """Why a live preview should stop now, or None to keep it."""
    if website_deleted:
        return StopReason.DELETED
    if age >= policy.max_age:
        return StopReason.EXPIRED
    if idle >= policy.idle_ttl:
        return StopReason.IDLE
    return None


def explain(reason: StopReason, policy: Policy, age: float, idle: float) -> str:
    """The sentence a person reads next to a stop."""
    if reason is StopReason.IDLE:
        return f"no traffic for {duration(idle)} (idle limit {duration(policy.idle_ttl)})"
    if reason is StopReason.EXPIRED:
        return f"live for {duration(age)} (lifetime limit {duration(policy.max_age)})"
    if reason is StopReason.DELETED:
        return "its website was deleted"
    return str(reason)


def duration(seconds: float) -> str:
    """3725 → '1 h 2 min', 90 → '1 min 30 s', 4.2 → '4 s'."""
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    if minutes:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    return f"{secs} s"
