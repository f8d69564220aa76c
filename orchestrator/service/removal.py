"""Stopping what a caller asks to stop: a build (queued: at once; building: its worker is
told and the answer waits for it a few seconds), or a whole website."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass

from sqlmodel import Session, select

from orchestrator.context import Context
from orchestrator.core.exceptions import InvalidTransition
from orchestrator.core.expiry import StopReason
from orchestrator.core.status import PREVIEW, EventType, Status
from orchestrator.service.lookups import get_build, get_website
from orchestrator.state.models import ApiToken, BuildJob, Website, utcnow
from orchestrator.state.previews import stop_preview
from orchestrator.state.recorder import BuildRecorder, claim


def cancel_queued(ctx: Context, build_id: str, by: str, reason: str = "cancelled") -> bool:
    """Cancel a build that has not started; True when it was still queued."""
    if not claim(
        ctx,
        build_id,
        Status.QUEUED,
        Status.CANCELLED,
        cancelled_by=by,
        completed_at=utcnow(),
        error=f"{reason} by {by}",
        wait_reason=None,
    ):
        return False
    ctx.stores.admission.withdraw(build_id)
    BuildRecorder(ctx, build_id).announce(f"{reason.capitalize()} by {by}")
    return True


def cancel_build(
    ctx: Context, session: Session, principal: ApiToken, build_id: str, wait_seconds: float = 5.0
) -> BuildJob:
    """Cancel a queued build at once, or stop a building one (its container within seconds)."""
    build = get_build(session, principal, build_id)
    by = principal.name
    if build.status in (Status.PENDING, Status.QUEUED) and cancel_queued(ctx, build.id, by):
        session.refresh(build)
        return build
    session.refresh(build)
    if build.status != Status.BUILDING:
        raise InvalidTransition(
            f"the build is {build.status}: only a queued or building build can be cancelled"
        )
    events = ctx.stores.events
    cursor = events.last_id(build.id)
    ctx.stores.signals.request_cancel(build.id, by)  # the worker checks every 0.25 s
    deadline = time.monotonic() + wait_seconds
    while (left := deadline - time.monotonic()) > 0:  # its status event says when it stopped
        found = events.wait(build.id, cursor, left)
        cursor = found[-1].id if found else cursor
        if any(e.type == EventType.STATUS and e.data.get("status") != Status.BUILDING for e in found):
            break
    session.refresh(build)
    return build


@dataclass
class Deleted:
    website: Website
    cancelled: list[str]
    stopped: list[str]
    files_removed: int


def delete_website(ctx: Context, session: Session, principal: ApiToken, website_id: str) -> Deleted:
    """Delete a website: its waiting builds are cancelled, a build in progress is told to stop,
    its live preview is stopped (reason ``deleted``) and its files removed. Its builds stay as
    history. A build that ends meanwhile is caught by gc (its website is deleted)."""
    settings = ctx.settings
    website = get_website(session, principal, website_id)
    website.deleted_at = utcnow()
    session.add(website)
    session.commit()
    by = principal.name
    builds = session.exec(select(BuildJob).where(BuildJob.website_id == website.id)).all()
    result = Deleted(website, [], [], 0)
    for build in builds:
        if build.status in (Status.PENDING, Status.QUEUED):
            if cancel_queued(ctx, build.id, by, reason="website deleted"):
                result.cancelled.append(build.id)
        elif build.status == Status.BUILDING:
            ctx.stores.signals.request_cancel(build.id, f"{by} (website deleted)")
            result.cancelled.append(build.id)
        elif build.status in PREVIEW and stop_preview(
            ctx, build.id, StopReason.DELETED, f"the website was deleted by {by}"
        ):
            result.stopped.append(build.id)
    for build in builds:
        if build.id in result.cancelled and build.status == Status.BUILDING:
            continue  # its worker still reads them; gc removes them once it has stopped
        for path in (settings.workspaces_dir / build.id, settings.uploads_dir / f"{build.id}.zip"):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
                result.files_removed += 1
            elif path.exists():
                path.unlink(missing_ok=True)
                result.files_removed += 1
    return result
