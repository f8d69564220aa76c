"""Priorities that age: a waiting build gains one level every ``aging_seconds`` (no I/O here).

The effective priority of build b at time t is ``p_b + (t - enqueued_b) / A``. Every waiting
build ages at the same rate, so their order never changes with t: it is the order of
``enqueued_b - p_b * A``, the score kept in Redis (lowest first). Unlike the seed's
``priority * min(waited / 60 s, 2)``, which is 0 for every build at t = 0, a new build starts
at its own priority and nothing is multiplied by zero.

**Starvation bound.** Build c is admitted before an earlier build b only if
``enqueued_c - p_c * A < enqueued_b - p_b * A``, i.e. ``enqueued_c - enqueued_b < (p_c - p_b) * A``.
So no build that arrived more than ``(p_max - p_min) * A`` seconds after b goes before b:
with the defaults (priorities 0-10, A = 30 s), 300 s.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from orchestrator.core import defaults


def score(enqueued_at: float, priority: int, aging_seconds: float) -> float:
    """The build's place in the waiting set: lower goes first."""
    return enqueued_at - priority * aging_seconds


def overtake_window(aging_seconds: float) -> float:
    """Seconds after a build's arrival past which no later build is admitted before it."""
    lows, highs = zip(*((lo, hi) for lo, hi, _ in defaults.PRIORITY_RANGES.values()), strict=True)
    return (max(highs) - min(lows)) * aging_seconds


def base_priority(role: str, requested: int | None) -> int:
    """The priority a caller gets: their role's default, or what they asked for, clamped to
    what their role may ask."""
    low, high, default = defaults.PRIORITY_RANGES.get(role, defaults.PRIORITY_RANGES["user"])
    if requested is None:
        return default
    return max(low, min(high, requested))


class Queued(Protocol):
    created_at: datetime
    priority: int


def build_score(build: Queued, aging_seconds: float) -> float:
    """A build's score in the waiting set, from its arrival and priority."""
    return score(build.created_at.timestamp(), build.priority, aging_seconds)
