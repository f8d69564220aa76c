"""The build state machine: every status a build can have and the moves between them.

    pending ──► queued ──► building ──► running ──► stopped
       │          │           │  │        ▲ │         ▲
       │          │           │  │  wake  │ ▼ sleep   │
       │          │           │  │       sleeping ────┘
       │          │           │  └──► queued   (re-queued after a lost worker)
       └──────────┴───────────┴─────► failed | cancelled

``running`` is the success state: the preview is live. ``sleeping`` is a preview nobody used
for a while: its container is stopped, its files, port and URLs kept, and the next request
through the gateway wakes it. ``stopped`` is a preview that was taken down for good (replaced,
deleted, asleep past its lifetime...).
"""

from __future__ import annotations

from enum import StrEnum
from typing import TypedDict

from orchestrator.core.exceptions import InvalidTransition


class Status(StrEnum):
    PENDING = "pending"
    QUEUED = "queued"
    BUILDING = "building"
    RUNNING = "running"
    FAILED = "failed"
    CANCELLED = "cancelled"
    STOPPED = "stopped"
    SLEEPING = "sleeping"


TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.PENDING: frozenset({Status.QUEUED, Status.FAILED, Status.CANCELLED}),
    Status.QUEUED: frozenset({Status.BUILDING, Status.FAILED, Status.CANCELLED}),
    Status.BUILDING: frozenset({Status.RUNNING, Status.FAILED, Status.CANCELLED, Status.QUEUED}),
    Status.RUNNING: frozenset({Status.STOPPED, Status.SLEEPING}),
    Status.SLEEPING: frozenset({Status.RUNNING, Status.STOPPED}),
    Status.FAILED: frozenset(),
    Status.CANCELLED: frozenset(),
    Status.STOPPED: frozenset(),
}
"""For each status, the statuses a build may move to next."""

TERMINAL = frozenset(s for s, nxt in TRANSITIONS.items() if not nxt)
"""Statuses a build never leaves."""

ACTIVE = frozenset({Status.PENDING, Status.QUEUED, Status.BUILDING})
"""Statuses of a build that is still on its way to a preview."""

PREVIEW = frozenset({Status.RUNNING, Status.SLEEPING})
"""Statuses of a build that holds a preview (awake or asleep): its container, port and URLs."""


def can_transition(current: Status | str, new: Status | str) -> bool:
    return Status(new) in TRANSITIONS[Status(current)]


def check_transition(current: Status | str, new: Status | str) -> Status:
    """Return ``new`` as a Status, or raise InvalidTransition when the move is not allowed."""
    if not can_transition(current, new):
        raise InvalidTransition(f"a build cannot go from {current} to {new}")
    return Status(new)


END_STATUSES = frozenset({Status.RUNNING, Status.SLEEPING, Status.FAILED, Status.CANCELLED, Status.STOPPED})
"""A build's event stream ends with one of these: the preview is live, or the build is over."""


class StepName(StrEnum):
    """The steps of a build, in the order they start (orchestrator.core.plan.STEPS)."""

    EXTRACT = "extract"
    INSTALL = "install"
    INSTALL_SCRIPTS = "lifecycle"
    """The project's own install scripts (npm's lifecycle scripts), in its build container."""
    TYPECHECK = "typecheck"
    SERVE = "serve"


class Outcome(StrEnum):
    """How a step went, as its record says."""

    RUNNING = "running"
    OK = "ok"
    FAILED = "failed"
    SKIPPED = "skipped"
    CACHED = "cached"
    """Its result was in the dependency cache."""
    REUSED = "reused"
    """Its result came from an identical earlier build."""
    STOPPED = "stopped"
    """It ran beside a step that failed, and was stopped."""
    CANCELLED = "cancelled"


DONE_OUTCOMES = frozenset({Outcome.OK, Outcome.SKIPPED, Outcome.CACHED, Outcome.REUSED})
"""Outcomes of a step that is over and did not fail (what estimates learn from)."""


class StepRecord(TypedDict, total=False):
    """One step in ``BuildJob.steps``: ISO times and its outcome."""

    startedAt: str | None
    endedAt: str | None
    status: str


class EventType(StrEnum):
    STATUS = "status"
    PROGRESS = "progress"
    LOG = "log"
