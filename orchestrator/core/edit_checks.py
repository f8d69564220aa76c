"""A live edit's type check as the build shows it (``BuildJob.edit_check``).

The check runs beside the API process (orchestrator.service.edits.recheck). If that process
ends while it runs, nothing writes its result: a check still "running" well past the type
check's timeout is shown as interrupted, not as running forever.
"""

from __future__ import annotations

from typing import Any

GRACE_SECONDS = 30.0
"""Past the type check's timeout, how long a check may still be writing its result."""

INTERRUPTED = (
    "the type check was interrupted (the service restarted while it ran); the next edit checks again"
)


def begun(edit: int, checked: bool, now: float) -> dict[str, Any]:
    """A new edit's check: running since ``now``, or "none" for a project without one."""
    if not checked:
        return {"edit": edit, "status": "none", "errors": []}
    return {"edit": edit, "status": "running", "errors": [], "startedAt": now}


def as_shown(check: dict[str, Any] | None, now: float, timeout: float) -> dict[str, Any] | None:
    if check is None or check.get("status") != "running":
        return check
    started = check.get("startedAt")
    if started is None or now - float(started) <= timeout + GRACE_SECONDS:
        return check
    return {**check, "status": "error", "errors": [INTERRUPTED]}
