"""Build reuse: an upload whose files are identical to a recent build of the same owner gets
that build's outcome instead of a rebuild.

- its website's preview is live: the new build takes it over (hand_over), at once;
- it failed: the failure is reported again (an explicit rebuild builds anyway);
- it went live elsewhere or was stopped since: the build runs, without the type check that
  these very files already passed.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update
from sqlmodel import col, select

from orchestrator.context import Context
from orchestrator.core.exceptions import Superseded
from orchestrator.core.expiry import StopReason
from orchestrator.core.status import Status, StepName
from orchestrator.state.models import BuildJob, utcnow
from orchestrator.state.recorder import claim, held_by

REUSABLE = (Status.RUNNING.value, Status.STOPPED.value, Status.FAILED.value)
USER_FAILURES = (StepName.INSTALL, StepName.INSTALL_SCRIPTS, StepName.TYPECHECK, StepName.SERVE)
"""Steps whose failure is the files' fault (not the machine's): worth reporting again."""


def find_identical(ctx: Context, build: BuildJob, files_hash: str) -> BuildJob | None:
    """The newest build of the same owner with these files, within the reuse window, whose
    outcome says something about the files: it went live, or failed in a step of its own."""
    since = utcnow() - timedelta(seconds=ctx.settings.reuse_seconds)
    with ctx.session() as session:
        candidates = session.exec(
            select(BuildJob)
            .where(
                BuildJob.owner_id == build.owner_id,
                BuildJob.files_hash == files_hash,
                BuildJob.id != build.id,
                col(BuildJob.status).in_(REUSABLE),
                col(BuildJob.completed_at) >= since,
            )
            .order_by(col(BuildJob.created_at).desc())
            .limit(5)
        ).all()
    for candidate in candidates:
        if candidate.status == Status.FAILED and (
            candidate.infrastructure_fault or candidate.error_step not in USER_FAILURES
        ):
            continue  # cancelled, lost worker, engine down: not the files' fault
        return candidate
    return None


def hand_over(ctx: Context, previous: BuildJob, build_id: str, attempt: int) -> bool:
    """In one transaction: ``previous`` (running) stops with reason ``replaced`` and attempt
    ``attempt`` of ``build_id`` (building) takes its container and port. False when ``previous``
    was stopped meanwhile; Superseded when the attempt no longer holds its build. gc never sees
    the container without a live owner."""
    with ctx.session() as session:
        if not claim(
            ctx,
            previous.id,
            Status.RUNNING,
            Status.STOPPED,
            session=session,
            stopped_at=utcnow(),
            stop_reason=StopReason.REPLACED.value,
            allocated_port=None,
        ):
            return False
        taken = session.exec(  # type: ignore[call-overload]
            update(BuildJob)
            .where(*held_by(build_id, attempt))
            .values(
                container_id=previous.container_id,
                allocated_port=previous.allocated_port,
                reused_from=previous.id,
                updated_at=utcnow(),
            )
        )
        if taken.rowcount != 1:  # rolls the claim back: the previous preview stays live
            raise Superseded(build_id, attempt)
    return True
