"""Writes one build's progress to the database: status moves, steps, progress, log lines.

Log lines are buffered and written at most every ``flush_interval`` seconds; only the newest
``Settings.log_lines_kept`` are kept, each cut to LOG_LINE_MAX_CHARS, so a noisy build
cannot bloat the database.
"""

from __future__ import annotations

import time
from datetime import datetime

from orchestrator import defaults
from orchestrator.db import session_scope
from orchestrator.exceptions import NotFound
from orchestrator.models import BuildJob, utcnow
from orchestrator.plan import READY, STEP_BY_NAME
from orchestrator.states import Status, check_transition


def _iso(moment: datetime) -> str:
    return moment.isoformat()


class BuildRecorder:
    def __init__(
        self, build_id: str, lines_kept: int = defaults.LOG_LINES_KEPT, flush_interval: float = 0.5
    ) -> None:
        self.build_id = build_id
        self.lines_kept = lines_kept
        self.flush_interval = flush_interval
        self._pending: list[str] = []
        self._last_flush = 0.0
        self.current_step: str | None = None
        self.step_lines: list[str] = []
        """Log lines of the current step (the newest ones), to explain a failure."""

    # -- status ----------------------------------------------------------------

    def begin(self) -> BuildJob | None:
        """queued → building. None when the build is no longer queued (cancelled, say)."""
        with session_scope() as session:
            build = session.get(BuildJob, self.build_id)
            if build is None:
                raise NotFound(
                    f"build {self.build_id} is not in this worker's database: the worker and the "
                    "API must share one DATABASE_URL (and ORCHESTRATOR_DATA_DIR)"
                )
            if build.status != Status.QUEUED:
                return None
            build.status = check_transition(build.status, Status.BUILDING)
            build.started_at = build.updated_at = utcnow()
            session.add(build)
            return build

    def update(self, **fields: object) -> None:
        with session_scope() as session:
            build = session.get(BuildJob, self.build_id)
            assert build is not None
            for key, value in fields.items():
                setattr(build, key, value)
            build.updated_at = utcnow()
            session.add(build)

    def running(self, preview_url: str) -> None:
        self.end_step("ok")
        self.flush()
        with session_scope() as session:
            build = session.get(BuildJob, self.build_id)
            assert build is not None
            build.status = check_transition(build.status, Status.RUNNING)
            build.progress, build.current_step = READY.progress, READY.label
            build.preview_url = preview_url
            build.completed_at = build.updated_at = utcnow()
            session.add(build)

    def fail(self, step: str | None, message: str) -> None:
        if self.current_step:
            self.end_step("failed")
        self.log(f"Build failed: {message}")
        self.flush()
        with session_scope() as session:
            build = session.get(BuildJob, self.build_id)
            assert build is not None
            build.status = check_transition(build.status, Status.FAILED)
            build.error, build.error_step = message, step
            build.completed_at = build.updated_at = utcnow()
            build.allocated_port = None
            session.add(build)

    # -- steps -----------------------------------------------------------------

    def start_step(self, name: str) -> None:
        """Record the end of the current step and the start of ``name``; progress only rises."""
        if self.current_step == name:
            return
        if self.current_step:
            self.end_step("ok")
        self.flush()
        step = STEP_BY_NAME[name]
        self.current_step = name
        self.step_lines = []
        with session_scope() as session:
            build = session.get(BuildJob, self.build_id)
            assert build is not None
            steps = dict(build.steps)
            steps[name] = {"startedAt": _iso(utcnow()), "endedAt": None, "status": "running"}
            build.steps = steps
            build.progress = max(build.progress, step.progress)
            build.current_step = step.label
            build.updated_at = utcnow()
            session.add(build)

    def end_step(self, status: str) -> None:
        if not self.current_step:
            return
        name, self.current_step = self.current_step, None
        self._set_step(name, status=status, endedAt=_iso(utcnow()))

    def skip_step(self, name: str, reason: str) -> None:
        self.log(reason)
        now = _iso(utcnow())
        self._set_step(name, startedAt=now, endedAt=now, status="skipped")

    def _set_step(self, name: str, **values: object) -> None:
        with session_scope() as session:
            build = session.get(BuildJob, self.build_id)
            assert build is not None
            steps = dict(build.steps)
            steps[name] = {**steps.get(name, {}), **values}
            build.steps = steps
            session.add(build)

    # -- logs ------------------------------------------------------------------

    def log(self, line: str) -> None:
        line = line[: defaults.LOG_LINE_MAX_CHARS]
        self._pending.append(line)
        self.step_lines = (self.step_lines + [line])[-200:]
        if time.monotonic() - self._last_flush >= self.flush_interval:
            self.flush()

    def flush(self) -> None:
        self._last_flush = time.monotonic()
        if not self._pending:
            return
        lines, self._pending = self._pending, []
        with session_scope() as session:
            build = session.get(BuildJob, self.build_id)
            assert build is not None
            build.logs = (list(build.logs) + lines)[-self.lines_kept :]
            build.updated_at = utcnow()
            session.add(build)
