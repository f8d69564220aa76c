"""The steps of one build as the worker runs them, decided from events alone: pure, no I/O and
no clock of its own (the caller passes ``now``).

Every step is a process the worker starts (a ``docker exec`` in the build container, or the
type-check container's own process), and its verdict is the exit code Docker reports for it.
What the project prints is only ever log text: no line of output can pass a step, end one,
move a deadline or name a step. Step names come from the plan (orchestrator.core.plan.STEPS).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from orchestrator.core.plan import STEP_BY_NAME
from orchestrator.core.status import StepName

SERVE = StepName.SERVE
"""The step whose process must keep running: the development server."""


@dataclass(frozen=True)
class Line:
    """A line of a step's output (only ever logged)."""

    step: str
    text: str


@dataclass(frozen=True)
class Exited:
    """A step's process ended, as Docker reports it."""

    step: str
    exit_code: int | None
    oom_killed: bool = False


class Why(StrEnum):
    EXIT = "exit"
    """The step's process ended with a non-zero code (the server's: at all)."""
    STEP_TIMEOUT = "step-timeout"
    BUILD_TIMEOUT = "build-timeout"


@dataclass(frozen=True)
class Failure:
    step: str
    why: Why
    exit_code: int | None = None
    oom_killed: bool = False
    seconds: float = 0
    """The limit that ran out (timeouts)."""


@dataclass
class Steps:
    """Which steps are running and which passed, each step's deadline, and the build's one
    wall-clock deadline, which no step and no output moves."""

    timeouts: Mapping[str, float]
    started_at: float
    build_timeout: float
    running: dict[str, float] = field(default_factory=dict)
    """Step → its deadline."""
    passed: set[str] = field(default_factory=set)
    required: set[str] = field(default_factory=set)
    """Steps that must pass before the preview goes live (the type check)."""
    answered: bool = False
    """The development server answered a request."""

    def start(self, step: str, now: float, *, required: bool = False) -> None:
        if step not in STEP_BY_NAME:
            raise ValueError(f"no such step: {step!r}")
        if step in self.running:
            raise ValueError(f"step {step!r} started twice")
        self.passed.discard(step)  # a step may run several processes in turn (the fill's two)
        self.running[step] = now + self.timeouts[step]
        if required:
            self.required.add(step)

    def exited(self, event: Exited) -> Failure | None:
        """A step's process ended: its failure, or None when it passed."""
        if event.step not in self.running:
            return None  # not a step of ours (or already judged)
        del self.running[event.step]
        if event.step == SERVE or event.exit_code != 0:
            return Failure(event.step, Why.EXIT, event.exit_code, event.oom_killed)
        self.passed.add(event.step)
        return None

    def overdue(self, now: float) -> Failure | None:
        """The step (or the build) whose time ran out, None while every clock has time left."""
        if now > self.started_at + self.build_timeout:
            step = next(iter(self.running), None) or "build"
            return Failure(step, Why.BUILD_TIMEOUT, seconds=self.build_timeout)
        for step, deadline in self.running.items():
            if step == SERVE and self.answered:
                continue  # the server's time is to answer; once it has, it runs on
            if now > deadline:
                return Failure(step, Why.STEP_TIMEOUT, seconds=self.timeouts[step])
        return None

    @property
    def should_probe(self) -> bool:
        """Time to ask the server whether it answers: it runs and hasn't answered yet."""
        return SERVE in self.running and not self.answered

    @property
    def live(self) -> bool:
        """The server answers and every required step passed."""
        return self.answered and SERVE in self.running and self.required <= self.passed
