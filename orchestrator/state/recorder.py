"""Writes one build's progress: status moves, steps, progress and log lines go to the database
(the record) and, as events, to the build's Redis stream (for live watchers).

A recorder made for one attempt of a build (``attempt``) is fenced: each of its writes first
locks the build's row with a conditional UPDATE (this attempt, still building) in the same
transaction, and raises Superseded when the build is no longer this attempt's — declared lost
and queued again, cancelled, failed — so a stale attempt can never report anything.

Log lines are buffered and written at most every ``flush_interval`` seconds; only the newest
``Settings.log_lines_kept`` are kept, each cut to LOG_LINE_MAX_CHARS, so a noisy build
cannot bloat the database. Pending lines are always written before a step or status event,
so watchers see everything in order.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from redis.exceptions import RedisError
from sqlalchemy import update
from sqlmodel import Session, col

from orchestrator.context import Context
from orchestrator.core import defaults
from orchestrator.core.exceptions import NotFound, Superseded
from orchestrator.core.plan import READY, STEP_BY_NAME
from orchestrator.core.status import EventType, Outcome, Status, StepRecord, check_transition
from orchestrator.state import logs
from orchestrator.state.models import BuildJob, utcnow

T = TypeVar("T")
log = logging.getLogger(__name__)


def _iso(moment: datetime) -> str:
    return moment.isoformat()


def status_event(build: BuildJob) -> dict[str, object]:
    """The data of a status event: what a watcher needs to show the build's state."""
    return {
        "status": build.status,
        "progress": build.progress,
        "currentStep": build.current_step,
        "error": build.error,
        "errorStep": build.error_step,
        "previewUrl": build.preview_url,
    }


def publish_status(ctx: Context, build: BuildJob) -> None:
    """Tell the build's live watchers its status, if Redis answers: the record has it anyway."""
    try:
        ctx.stores.events.publish(build.id, [(EventType.STATUS, status_event(build))])
    except RedisError as exc:
        log.warning("could not publish the status of build %s: %s", build.id, exc)


def held_by(build_id: str, attempt: int, statuses: tuple[Status, ...] = (Status.BUILDING,)) -> list[Any]:
    """The conditions under which attempt ``attempt`` still holds a build: still its attempt,
    in one of ``statuses``. Every fenced write is made under them."""
    return [
        col(BuildJob.id) == build_id,
        col(BuildJob.attempts) == attempt,
        col(BuildJob.status).in_([status.value for status in statuses]),
    ]


def claim(
    ctx: Context,
    build_id: str,
    current: Status,
    new: Status,
    *,
    session: Session | None = None,
    attempt: int | None = None,
    **fields: object,
) -> bool:
    """Move a build from ``current`` to ``new`` only if it is still ``current`` (and, with
    ``attempt``, still at that attempt): one conditional UPDATE, so that two processes racing (a
    worker starting it, a user cancelling it) cannot both win. True for the winner. With
    ``session``, inside the caller's transaction."""
    check_transition(current, new)
    if attempt is not None:
        conditions = held_by(build_id, attempt, (current,))
    else:
        conditions = [col(BuildJob.id) == build_id, col(BuildJob.status) == current.value]
    statement = update(BuildJob).where(*conditions).values(status=new.value, updated_at=utcnow(), **fields)
    if session is not None:
        return session.exec(statement).rowcount == 1  # type: ignore[call-overload,attr-defined]
    with ctx.session() as own:
        return own.exec(statement).rowcount == 1  # type: ignore[call-overload,attr-defined]


def _assign(build: BuildJob, fields: dict[str, object]) -> None:
    for key, value in fields.items():
        setattr(build, key, value)


class BuildRecorder:
    def __init__(
        self, ctx: Context, build_id: str, attempt: int | None = None, flush_interval: float = 0.5
    ) -> None:
        self.ctx = ctx
        self.build_id = build_id
        self.attempt = attempt
        """The attempt whose writes these are (fenced), or None (not an attempt's: unfenced)."""
        self._holds: tuple[Status, ...] = (Status.BUILDING,)
        """The statuses in which the build is still this attempt's: building, and once this
        attempt made it live, whatever became of the preview (its last log lines)."""
        self.superseded = False
        """Set once a write was refused: the lines logged from then on (the stale attempt
        cleaning up after itself) are dropped."""
        self.lines_kept = ctx.settings.log_lines_kept
        self.flush_interval = flush_interval
        self._pending: list[str] = []
        self._unpublished: list[tuple[str, dict[str, object]]] = []
        self._unpruned = 0
        """Lines appended since the build's log was last pruned to ``lines_kept``."""
        self._last_flush = 0.0
        self.current_step: str | None = None
        """The step started last (the one a failure is blamed on unless a marker says otherwise)."""
        self.open_steps: list[str] = []
        """Steps started and not ended (the type check and the server run side by side)."""

    def _hold(self, session: Session) -> None:
        """Lock the build's row for this transaction if this attempt still holds the build;
        raise Superseded if not. Nothing for a recorder of no attempt."""
        if self.attempt is None:
            return
        statement = (
            update(BuildJob)
            .where(*held_by(self.build_id, self.attempt, self._holds))
            .values(updated_at=utcnow())
        )
        if session.exec(statement).rowcount != 1:  # type: ignore[call-overload,attr-defined]
            self.superseded = True
            self._pending = []  # never written: not this attempt's to write
            raise Superseded(self.build_id, self.attempt)

    def _write(self, work: Callable[[Session], T]) -> T:
        """``work`` in one transaction that this attempt holds the build for, tried again while
        the database is locked or unreachable (orchestrator.adapters.database)."""

        def held(session: Session) -> T:
            self._hold(session)
            return work(session)

        return self.ctx.database.patiently(held)

    def _edit(self, change: Callable[[BuildJob], None]) -> BuildJob:
        """Change the build's record in one held transaction; the record as written."""

        def edit(session: Session) -> BuildJob:
            build = session.get(BuildJob, self.build_id)
            if build is None:
                raise NotFound(
                    f"build {self.build_id} is not in this worker's database: the worker and the "
                    "API must share one DATABASE_URL (and ORCHESTRATOR_DATA_DIR)"
                )
            change(build)
            build.updated_at = utcnow()
            session.add(build)
            return build

        return self._write(edit)

    def _publish(self, events: list[tuple[str, dict[str, object]]]) -> None:
        """Events for live watchers. With Redis away they wait here, in order, for the next
        publish (the record in the database has them all already); the build goes on."""
        self._unpublished.extend(events)
        del self._unpublished[: -defaults.EVENTS_HELD]
        try:
            self.ctx.stores.events.publish(self.build_id, self._unpublished)
        except RedisError:
            return
        self._unpublished = []

    # -- status ----------------------------------------------------------------

    def announce(self, line: str) -> None:
        """After claim() moved the build elsewhere: log why, and publish its status as it now is."""
        self.log(line)
        self.flush()
        with self.ctx.session() as session:
            build = session.get(BuildJob, self.build_id)
            assert build is not None
            publish_status(self.ctx, build)

    def begin(self) -> BuildJob | None:
        """queued → building for this recorder's attempt, atomically (a cancel may race it). None
        when the build is not queued at this attempt any more (cancelled, say, or admitted again)."""
        if not claim(
            self.ctx,
            self.build_id,
            Status.QUEUED,
            Status.BUILDING,
            attempt=self.attempt,
            started_at=utcnow(),
            wait_reason=None,
        ):
            return None
        with self.ctx.session() as session:
            build = session.get(BuildJob, self.build_id)
        assert build is not None
        self._publish([(EventType.STATUS, status_event(build))])
        return build

    def update(self, **fields: object) -> None:
        self._edit(lambda build: _assign(build, fields))

    def running(self, preview_url: str) -> None:
        self.end_step(Outcome.OK)
        self._change_status(
            Status.RUNNING,
            lambda b: setattr(b, "preview_url", preview_url),
            progress=READY.progress,
            current_step=READY.label,
        )
        self._holds = tuple(Status)  # live: its own outcome, whatever becomes of the preview

    def fail(self, step: str | None, message: str, *, infrastructure: bool = False) -> None:
        """The build failed in ``step``; ``infrastructure``: through no fault of its files (an
        engine, a registry, a worker that gave out), so that no identical upload is told so."""
        self.end_step(Outcome.FAILED, step or self.current_step)
        self.end_step(Outcome.STOPPED)  # a step that ran beside it (the server beside the type check)
        self.log(f"Build failed: {message}")

        def record(build: BuildJob) -> None:
            build.error, build.error_step, build.allocated_port = message, step, None
            build.infrastructure_fault = infrastructure

        self._change_status(Status.FAILED, record)

    def cancelled(self, by: str) -> None:
        self.end_step(Outcome.CANCELLED)
        self.log(f"Cancelled by {by}")

        def record(build: BuildJob) -> None:
            build.cancelled_by, build.allocated_port, build.error = by, None, f"cancelled by {by}"

        self._change_status(Status.CANCELLED, record)

    def requeued(self, message: str) -> None:
        """building → queued: the build starts over (a lost worker, an engine fault)."""
        self.end_step(Outcome.FAILED)
        self.log(message)
        self.flush()

        def requeue(build: BuildJob) -> None:
            build.status = check_transition(build.status, Status.QUEUED)
            build.current_step, build.wait_reason = "Queued", message
            build.allocated_port = build.container_id = None
            build.progress = 0

        self._publish([(EventType.STATUS, status_event(self._edit(requeue)))])

    def _change_status(self, status: Status, change: Callable[[BuildJob], None], **fields: object) -> None:
        self.flush()
        # the build is over: its log takes its final size
        self._write(lambda session: logs.prune(session, self.build_id, self.lines_kept))

        def end(build: BuildJob) -> None:
            build.status = check_transition(build.status, status)
            build.completed_at = utcnow()
            _assign(build, fields)
            change(build)

        self._publish([(EventType.STATUS, status_event(self._edit(end)))])

    # -- steps -----------------------------------------------------------------

    def start_step(self, name: str, alongside: bool = False) -> None:
        """Record the start of ``name``. Unless ``alongside``, the steps still open end first
        (as ``ok``). Progress only rises."""
        if name in self.open_steps:
            return
        if not alongside:
            self.end_step(Outcome.OK)
        self.flush()
        step = STEP_BY_NAME[name]
        self.current_step = name
        self.open_steps.append(name)
        started: StepRecord = {"startedAt": _iso(utcnow()), "endedAt": None, "status": Outcome.RUNNING}

        def start(build: BuildJob) -> None:
            build.steps = {**build.steps, name: started}
            build.progress = max(build.progress, step.progress)
            build.current_step = step.label

        progress = self._edit(start).progress
        self._publish([(EventType.PROGRESS, {"progress": progress, "currentStep": step.label, "step": name})])

    def end_step(self, status: Outcome, name: str | None = None) -> None:
        """End step ``name`` (None: every open step) with ``status``."""
        ending = [n for n in self.open_steps if name is None or n == name]
        if not ending:
            return
        self.open_steps = [n for n in self.open_steps if n not in ending]
        if self.current_step in ending:
            self.current_step = self.open_steps[-1] if self.open_steps else None
        now = _iso(utcnow())
        for step in ending:
            self._set_step(step, {"status": status, "endedAt": now})

    def skip_step(self, name: str, reason: str, status: Outcome = Outcome.SKIPPED) -> None:
        """A step that did not run: ``skipped``, or ``cached``/``reused`` when its result was
        already there."""
        if reason:
            self.log(reason)
        now = _iso(utcnow())
        self._set_step(name, {"startedAt": now, "endedAt": now, "status": status})

    def _set_step(self, name: str, values: StepRecord) -> None:
        def set_step(build: BuildJob) -> None:
            record: StepRecord = {**build.steps.get(name, {}), **values}
            build.steps = {**build.steps, name: record}

        self._edit(set_step)

    # -- logs ------------------------------------------------------------------

    def log(self, line: str) -> None:
        if self.superseded:
            return
        line = line[: defaults.LOG_LINE_MAX_CHARS]
        self._pending.append(line)
        if time.monotonic() - self._last_flush >= self.flush_interval:
            self.flush()

    def flush(self) -> None:
        self._last_flush = time.monotonic()
        if not self._pending:
            return
        lines, self._pending = self._pending, []
        prune = self._unpruned + len(lines) > self.lines_kept  # at most twice the lines kept

        def append(session: Session) -> None:
            logs.append(session, self.build_id, lines)
            if prune:
                logs.prune(session, self.build_id, self.lines_kept)

        self._write(append)
        self._unpruned = 0 if prune else self._unpruned + len(lines)
        self._publish([(EventType.LOG, {"line": line}) for line in lines])
