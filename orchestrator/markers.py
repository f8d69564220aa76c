"""The lines the runner in the image (images/node/orchestrator-build) writes to announce steps.

::orchestrator:: <step> start | ok | failed <exit code> | skipped <reason>
"""

from __future__ import annotations

from dataclasses import dataclass

PREFIX = "::orchestrator:: "


@dataclass(frozen=True)
class Marker:
    step: str
    event: str
    """start, ok, failed or skipped."""
    detail: str = ""


def parse_marker(line: str) -> Marker | None:
    """The marker a log line carries, None for an ordinary line."""
    if not line.startswith(PREFIX):
        return None
    parts = line[len(PREFIX) :].split(" ", 2)
    if len(parts) < 2 or parts[1] not in ("start", "ok", "failed", "skipped"):
        return None
    return Marker(parts[0], parts[1], parts[2] if len(parts) > 2 else "")
