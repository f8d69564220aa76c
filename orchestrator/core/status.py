"""The build state machine: every status a build can have and the moves between them.

    pending ──► queued ──► building ──► running ──► stopped
       │          │           │  │
       │          │           │  └──► queued   (re-queued after a lost worker)
       └──────────┴───────────┴─────► failed | cancelled

``running`` is the success state: the preview is live. ``stopped`` is a preview that was
live and has been taken down (idle, replaced, deleted...).
"""

from __future__ import annotations

from enum import StrEnum

from orchestrator.core.exceptions import InvalidTransition


class Status(StrEnum):
    PENDING = "pending"
    QUEUED = "queued"
    BUILDING = "building"
    RUNNING = "running"
    FAILED = "failed"
    CANCELLED = "cancelled"
    STOPPED = "stopped"


TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.PENDING: frozenset({Status.QUEUED, Status.FAILED, Status.CANCELLED}),
    Status.QUEUED: frozenset({Status.BUILDING, Status.FAILED, Status.CANCELLED}),
    Status.BUILDING: frozenset({Status.RUNNING, Status.FAILED, Status.CANCELLED, Status.QUEUED}),
    Status.RUNNING: frozenset({Status.STOPPED}),
    Status.FAILED: frozenset(),
    Status.CANCELLED: frozenset(),
    Status.STOPPED: frozenset(),
}
"""For each status, the statuses a build may move to next."""

TERMINAL = frozenset(s for s, nxt in TRANSITIONS.items() if not nxt)
"""Statuses a build never leaves."""

ACTIVE = frozenset({Status.PENDING, Status.QUEUED, Status.BUILDING})
"""Statuses of a build that is still on its way to a preview."""


def can_transition(current: Status | str, new: Status | str) -> bool:
    return Status(new) in TRANSITIONS[Status(current)]


def check_transition(current: Status | str, new: Status | str) -> Status:
    """Return ``new`` as a Status, or raise InvalidTransition when the move is not allowed."""
    if not can_transition(current, new):
        raise InvalidTransition(f"a build cannot go from {current} to {new}")
    return Status(new)
