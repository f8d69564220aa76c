"""When a live preview should stop, and why: pure rules, no I/O (previews.py and gc.py apply them).

A preview is *idle* when nobody has sent it anything for a while. What it was sent is counted
outside it: the gateway's last request to it (orchestrator.coordination.traffic), and the host's
counter of its port (orchestrator.adapters.visits); each observation that finds the counter
moved marks the preview active at that moment.

With sleep on (``sleep_after`` set) a preview idle for ``sleep_after`` seconds, or awake for
``max_age``, goes to sleep; a sleeping one is removed after ``sleep_lifetime`` asleep. With
sleep off, an idle preview (``idle_ttl``) is stopped, and so is one live for ``max_age``
(*expired*). An ``idle_ttl`` shorter than ``sleep_after`` still stops (``gc --idle-ttl``).
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
    SLEPT_OUT = "slept-out"
    """It slept longer than a sleeping preview may (Settings.sleep_lifetime)."""
    ENGINE_RESTART = "engine-restart"
    """Its container stopped outside the orchestrator (a host reboot, an engine that was not
    restarted live) and could not be started again."""
    HOST_LOST = "host-lost"
    """Every worker of its host stopped beating (orchestrator.state.hosts.stop_lost_hosts)."""
    PURGED = "purged"
    """An operator took the installation off its host (``orchestrator purge``)."""


@dataclass(frozen=True)
class Activity:
    """The last traffic counter seen on a preview, and when it last moved."""

    counter: int | None
    active_at: float


def observe(
    previous: Activity | None, counter: int | None, now: float, last_request: float = 0.0
) -> Activity:
    """The activity after reading ``counter`` at ``now``, and the gateway's ``last_request``.

    A first observation counts as activity (the preview just went live, or its history was
    lost: it is not reaped on a guess). An unreadable counter changes nothing.
    """
    if previous is None:
        found = Activity(counter, now)
    elif counter is None or counter == previous.counter:
        found = Activity(previous.counter if counter is None else counter, previous.active_at)
    else:
        found = Activity(counter, now)
    if last_request > found.active_at:
        return Activity(found.counter, min(last_request, now))
    return found


@dataclass(frozen=True)
class Policy:
    idle_ttl: float
    """Seconds without traffic after which a preview is stopped."""
    max_age: float
    """Seconds a preview may stay awake at most."""
    sleep_after: float | None = None
    """Seconds idle after which a preview sleeps (None: never; it is stopped instead)."""
    sleep_lifetime: float = 7 * 24 * 3600.0
    """Seconds a sleeping preview is kept."""

    @property
    def sleeps(self) -> bool:
        return self.sleep_after is not None


def reap_reason(policy: Policy, age: float, idle: float, website_deleted: bool = False) -> StopReason | None:
    """Why a live (awake) preview should stop now, or None to keep it (or let it sleep)."""
    if website_deleted:
        return StopReason.DELETED
    if age >= policy.max_age and not policy.sleeps:
        return StopReason.EXPIRED
    if idle >= policy.idle_ttl and (policy.sleep_after is None or policy.sleep_after > policy.idle_ttl):
        return StopReason.IDLE
    return None


def sleep_reason(policy: Policy, age: float, idle: float) -> str | None:
    """Why a live preview should go to sleep now (the sentence its log gets), None to keep it awake."""
    if policy.sleep_after is None:
        return None
    if idle >= policy.sleep_after:
        return f"no requests for {duration(idle)} (sleeps after {duration(policy.sleep_after)})"
    if age >= policy.max_age:
        return f"awake for {duration(age)} (awake at most {duration(policy.max_age)})"
    return None


def sleeper_reason(policy: Policy, asleep: float, website_deleted: bool = False) -> StopReason | None:
    """Why a sleeping preview should be removed now, None to keep it asleep."""
    if website_deleted:
        return StopReason.DELETED
    if asleep >= policy.sleep_lifetime:
        return StopReason.SLEPT_OUT
    return None


def explain(reason: StopReason, policy: Policy, age: float, idle: float) -> str:
    """The sentence a person reads next to a stop."""
    if reason is StopReason.IDLE:
        return f"no traffic for {duration(idle)} (idle limit {duration(policy.idle_ttl)})"
    if reason is StopReason.EXPIRED:
        return f"live for {duration(age)} (lifetime limit {duration(policy.max_age)})"
    if reason is StopReason.DELETED:
        return "its website was deleted"
    if reason is StopReason.SLEPT_OUT:
        return f"asleep for {duration(idle)} (sleepers are kept {duration(policy.sleep_lifetime)})"
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
