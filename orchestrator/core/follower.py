"""Following a build: a pure state machine, events in, decisions out.

The worker feeds it what the step processes report (orchestrator.core.steps: a line of
output, a process's exit as Docker reports it) and the clock; it answers with what to do:
log a line, record a step as passed, ask the dev server whether it answers, or stop the build
with a verdict. It does no I/O and has no clock of its own, so every path is a unit test.
"""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass, field

from orchestrator.core import defaults
from orchestrator.core.failures import (
    build_timeout_message,
    failure_cause,
    failure_message,
    is_network_fault,
    timeout_message,
)
from orchestrator.core.status import StepName
from orchestrator.core.steps import Exited, Failure, Line, Steps, Why

PROBE_EVERY = 0.2
"""Seconds between two questions to a dev server that has not answered yet."""


@dataclass(frozen=True)
class Log:
    text: str


@dataclass(frozen=True)
class Passed:
    step: str


@dataclass(frozen=True)
class Probe:
    """Ask the dev server whether it answers, then call ``Follower.answered``."""


@dataclass(frozen=True)
class Verdict:
    """The build stops here: what the user reads, and whose fault it is."""

    step: str
    message: str
    infrastructure: bool = False
    """True: not the project's fault (the registry unreachable, a container lost): retried."""


Decision = Log | Passed | Probe | Verdict


def explain(failure: Failure, lines: list[str], memory_limit: str = defaults.MEMORY_LIMIT) -> Verdict:
    """The verdict of a failed step, from the way it failed and its last lines of output."""
    if failure.why is Why.BUILD_TIMEOUT:
        return Verdict(failure.step, build_timeout_message(failure.step, failure.seconds))
    if failure.why is Why.STEP_TIMEOUT:
        return Verdict(failure.step, timeout_message(failure.step, failure.seconds))
    if failure.step == StepName.INSTALL and is_network_fault(lines):
        cause = f"the package registry could not be reached: {failure_cause(lines)}"
        return Verdict(failure.step, cause, infrastructure=True)
    return Verdict(
        failure.step,
        failure_message(failure.step, failure.exit_code, lines, failure.oom_killed, memory_limit),
    )


@dataclass
class Follower:
    steps: Steps
    memory_limit: str = defaults.MEMORY_LIMIT
    lines: dict[str, deque[str]] = field(default_factory=lambda: defaultdict(lambda: deque(maxlen=200)))
    """Each step's newest lines of output (what a failure is explained with)."""
    probe_at: float = 0.0

    def feed(self, event: Line | Exited | None, now: float) -> list[Decision]:
        """What to do after ``event`` (None: nothing happened) at ``now``. A Verdict, when
        there is one, is the last decision."""
        decisions: list[Decision] = []
        if isinstance(event, Line):
            self.lines[event.step].append(event.text)
            decisions.append(Log(event.text))
        elif isinstance(event, Exited):
            if event.exit_code is None:
                message = f"the container of step {event.step} disappeared while it ran"
                return [*decisions, Verdict(event.step, message, infrastructure=True)]
            failure = self.steps.exited(event)
            if failure is not None:
                return [*decisions, explain(failure, list(self.lines[failure.step]), self.memory_limit)]
            if event.step in self.steps.passed:
                decisions.append(Passed(event.step))
        overdue = self.steps.overdue(now)
        if overdue is not None:
            return [*decisions, explain(overdue, list(self.lines[overdue.step]), self.memory_limit)]
        if self.steps.should_probe and now >= self.probe_at:
            self.probe_at = now + PROBE_EVERY
            decisions.append(Probe())
        return decisions

    def answered(self, answers: bool) -> None:
        """The dev server's answer to a Probe."""
        self.steps.answered = answers
