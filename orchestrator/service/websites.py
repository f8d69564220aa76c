"""Websites and their builds as callers see them: creation from an upload, rebuilds, estimates,
and look-ups that only show a caller what is theirs (admins see everything)."""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import IO

from sqlalchemy import update
from sqlmodel import Session, col, select

from orchestrator.adapters.uploads import UploadLimits, store_upload
from orchestrator.context import Context
from orchestrator.core.estimate import remaining_seconds, step_durations, typical_durations
from orchestrator.core.exceptions import InvalidTransition, InvalidUpload, NotFound, ServiceUnavailable
from orchestrator.core.expiry import StopReason
from orchestrator.core.priority import base_priority
from orchestrator.core.status import Status, check_transition
from orchestrator.scheduling.queue import submit
from orchestrator.service.auth import is_admin
from orchestrator.state.models import ApiToken, BuildJob, Website, new_id, utcnow
from orchestrator.state.previews import stop_preview
from orchestrator.state.recorder import BuildRecorder, claim, publish_status

HISTORY_SAME_SITE = 10
HISTORY_SAME_TYPE = 20


def _default_name(uploads: Sequence[tuple[str, IO[bytes]]], package: dict | None) -> str:
    if package and isinstance(package.get("name"), str) and package["name"].strip():
        return package["name"].strip()[:100]
    if len(uploads) == 1 and uploads[0][0].lower().endswith(".zip"):
        return PurePosixPath(uploads[0][0].replace("\\", "/")).stem[:100] or "website"
    return "website"


def _queue_new_build(
    ctx: Context,
    session: Session,
    website: Website,
    build_id: str,
    priority: int,
    notes: list[str],
    rebuild: bool = False,
) -> BuildJob:
    """Record a queued build of ``website`` (its upload already stored) and submit it. Older
    builds of the website still waiting are superseded by it, in the same transaction: one
    write per upload keeps uploads fast when many arrive at once."""
    check_transition(Status.PENDING, Status.QUEUED)
    build = BuildJob(
        id=build_id,
        website_id=website.id,
        owner_id=website.owner_id,
        project_type=website.type,
        priority=priority,
        logs=notes,
        rebuild=rebuild,
        status=Status.QUEUED.value,
        current_step="Queued",
    )
    website.build_job_id = build.id
    superseded = _record(session, website, build)
    publish_status(ctx, build)
    gate = ctx.stores.admission
    for old in superseded:
        gate.withdraw(old)
        superseded_build = session.get(BuildJob, old)
        if superseded_build is not None:
            publish_status(ctx, superseded_build)
    submit(ctx, build)
    return build


def _record(session: Session, website: Website, build: BuildJob) -> list[str]:
    """One transaction: the website, its new build, and its older waiting builds cancelled.
    Returns the ids of those."""
    session.add(website)
    session.flush()  # the website row first: the build refers to it
    session.add(build)
    older = session.exec(
        select(BuildJob.id).where(
            BuildJob.website_id == website.id, BuildJob.id != build.id, BuildJob.status == Status.QUEUED
        )
    ).all()
    superseded: list[str] = []
    if older:
        by = f"a newer build of this website ({build.id})"
        cancelled = session.exec(  # type: ignore[call-overload]
            update(BuildJob)
            .where(col(BuildJob.id).in_(older), col(BuildJob.status) == Status.QUEUED.value)
            .values(
                status=Status.CANCELLED.value,
                cancelled_by=by,
                error=f"superseded by {by}",
                completed_at=utcnow(),
                wait_reason=None,
                updated_at=utcnow(),
            )
        ).rowcount
        superseded = list(older) if cancelled else []
    session.commit()
    return superseded


def create_website(
    ctx: Context,
    session: Session,
    owner: ApiToken,
    uploads: Sequence[tuple[str, IO[bytes]]],
    name: str | None = None,
    priority: int | None = None,
    website_id: str | None = None,
) -> tuple[Website, BuildJob]:
    """Store the upload, record the website (or, with ``website_id``, a new version of one) and
    its build, and queue the build.

    A refused upload raises InvalidUpload and leaves nothing behind. When Redis cannot take
    the build, the records stay (queued) and ServiceUnavailable is raised: a worker queues
    the build again when it starts.
    """
    settings = ctx.settings
    existing = get_website(session, owner, website_id) if website_id else None
    build_id = new_id()
    limits = UploadLimits(settings.max_upload_bytes, settings.max_unpacked_bytes, settings.max_files)
    archive = settings.uploads_dir / f"{build_id}.zip"
    summary = store_upload(uploads, archive, limits)
    assert owner.id is not None
    try:
        website = existing or Website(
            owner_id=owner.id,
            name=(name or "").strip()[:100] or _default_name(uploads, summary.package),
            type=summary.project_type.value,
        )
        if existing is not None:
            website.type = summary.project_type.value
            if name and name.strip():
                website.name = name.strip()[:100]
        return website, _queue_new_build(
            ctx, session, website, build_id, base_priority(owner.role, priority), list(summary.notes)
        )
    except ServiceUnavailable:
        raise  # recorded, not queued: the upload stays for the worker that queues it
    except BaseException:
        session.rollback()
        archive.unlink(missing_ok=True)
        raise


def rebuild_website(
    ctx: Context, session: Session, principal: ApiToken, website_id: str, priority: int | None = None
) -> tuple[Website, BuildJob]:
    """A new build of the files of the website's newest build."""
    settings = ctx.settings
    website = get_website(session, principal, website_id)
    source = settings.uploads_dir / f"{website.build_job_id}.zip"
    if not source.exists():
        raise InvalidUpload("the files of this website are no longer kept: upload it again")
    build_id = new_id()
    shutil.copyfile(source, settings.uploads_dir / f"{build_id}.zip")
    notes = [f"Rebuild of build {website.build_job_id}"]
    return website, _queue_new_build(
        ctx, session, website, build_id, base_priority(principal.role, priority), notes, rebuild=True
    )


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
    ctx.stores.signals.request_cancel(build.id, by)  # the worker checks every 0.25 s
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        session.refresh(build)
        if build.status != Status.BUILDING:
            break
        time.sleep(0.1)
    return build


def _visible(principal: ApiToken, owner_id: int) -> bool:
    return is_admin(principal) or principal.id == owner_id


def get_website(session: Session, principal: ApiToken, website_id: str) -> Website:
    website = session.get(Website, website_id)
    if website is None or website.deleted_at is not None or not _visible(principal, website.owner_id):
        raise NotFound(f"no website with id {website_id}")
    return website


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
        elif build.status == Status.RUNNING and stop_preview(
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


def get_build(session: Session, principal: ApiToken, build_id: str) -> BuildJob:
    build = session.get(BuildJob, build_id)
    if build is None or not _visible(principal, build.owner_id):
        raise NotFound(f"no build with id {build_id}")
    return build


def list_websites(session: Session, principal: ApiToken) -> list[Website]:
    query = select(Website).where(col(Website.deleted_at).is_(None)).order_by(col(Website.created_at).desc())
    if not is_admin(principal):
        query = query.where(Website.owner_id == principal.id)
    return list(session.exec(query).all())


def list_builds(
    session: Session, principal: ApiToken, website_id: str | None = None, limit: int = 50
) -> list[BuildJob]:
    query = select(BuildJob).order_by(col(BuildJob.created_at).desc()).limit(limit)
    if website_id is not None:
        query = query.where(BuildJob.website_id == website_id)
    if not is_admin(principal):
        query = query.where(BuildJob.owner_id == principal.id)
    return list(session.exec(query).all())


def latest_build(session: Session, website: Website) -> BuildJob | None:
    return session.get(BuildJob, website.build_job_id) if website.build_job_id else None


def live_build(session: Session, website: Website) -> BuildJob | None:
    """The build whose preview is live (while a newer one builds, the previous one's is)."""
    return session.exec(
        select(BuildJob)
        .where(BuildJob.website_id == website.id, BuildJob.status == Status.RUNNING)
        .order_by(col(BuildJob.created_at).desc())
    ).first()


def estimate(session: Session, build: BuildJob) -> float | None:
    """Seconds until the preview is live, from the step timings of earlier successful builds:
    of this website when it has some, else of every website of its type. A website that went
    live before most likely finds its dependencies in the cache: its install counts 0 s."""
    done = col(BuildJob.status).in_([Status.RUNNING.value, Status.STOPPED.value])
    same_site = select(BuildJob.steps).where(
        done, BuildJob.website_id == build.website_id, BuildJob.id != build.id
    )
    history = session.exec(same_site.order_by(col(BuildJob.created_at).desc()).limit(HISTORY_SAME_SITE)).all()
    cached_likely = bool(history)
    if not history:
        same_type = select(BuildJob.steps).where(done, BuildJob.project_type == build.project_type)
        history = session.exec(
            same_type.order_by(col(BuildJob.created_at).desc()).limit(HISTORY_SAME_TYPE)
        ).all()
    typical = typical_durations(step_durations(steps) for steps in history)
    if cached_likely:
        typical["install"] = 0.0  # a hit takes no time
    return remaining_seconds(typical, build.status, build.steps, utcnow())
