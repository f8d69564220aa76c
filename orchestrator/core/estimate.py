"""How long a build still needs, from measured history (no I/O here).

The typical duration of each step is the median over recent successful builds of the same
website, or, when it has none, of all builds of its type. The estimate is what the steps still
ahead typically take, plus what the current step typically takes beyond the time already spent
in it.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from orchestrator.core.plan import STEPS
from orchestrator.core.status import DONE_OUTCOMES, END_STATUSES, Status, StepName, StepRecord

STEP_ORDER = [s.name for s in STEPS]
"""Every step, for step_durations."""


def step_durations(steps: Mapping[str, StepRecord]) -> dict[str, float]:
    """Seconds each finished step of one build took (skipped, cached and reused steps: about 0)."""
    found = {}
    for name in STEP_ORDER:
        info: StepRecord = steps.get(name) or {}
        began, end = info.get("startedAt"), info.get("endedAt")
        if info.get("status") not in DONE_OUTCOMES or not began or not end:
            continue
        started, ended = datetime.fromisoformat(began), datetime.fromisoformat(end)
        found[name] = max(0.0, (ended - started).total_seconds())
    return found


def typical_durations(history: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """The median duration of each step over the builds that ran it."""
    samples: dict[str, list[float]] = {}
    for durations in history:
        for name, seconds in durations.items():
            samples.setdefault(name, []).append(seconds)
    return {name: statistics.median(values) for name, values in samples.items()}


PHASES: tuple[tuple[str, ...], ...] = (
    (StepName.EXTRACT,),
    (StepName.INSTALL,),
    (StepName.INSTALL_SCRIPTS,),
    (StepName.TYPECHECK, StepName.SERVE),
)
"""Steps in order; the steps of one phase run side by side (the type check beside the server)."""


def remaining_seconds(
    typical: Mapping[str, float], status: str, steps: Mapping[str, Any], now: datetime
) -> float | None:
    """Seconds left until the preview is live; None when there is nothing to go on."""
    if status in END_STATUSES:
        return 0.0 if status == Status.RUNNING else None
    if not typical:
        return None

    def phase_seconds(phase: tuple[str, ...]) -> float:
        return max(typical.get(name, 0.0) for name in phase)  # a step never seen took 0 s

    if status in ("pending", "queued"):
        return round(sum(phase_seconds(p) for p in PHASES), 1)
    reached = [i for i, phase in enumerate(PHASES) if any(name in steps for name in phase)]
    if not reached:
        return round(sum(phase_seconds(p) for p in PHASES), 1)
    index = reached[-1]
    later = sum(phase_seconds(p) for p in PHASES[index + 1 :])
    running = [n for n in PHASES[index] if (steps.get(n) or {}).get("status") == "running"]
    if not running:  # between phases: the next one not yet recorded
        return round(later, 1)
    started = min(datetime.fromisoformat(steps[n]["startedAt"]) for n in PHASES[index] if n in steps)
    spent = (now - started).total_seconds()
    return round(max(0.0, phase_seconds(PHASES[index]) - spent) + later, 1)
