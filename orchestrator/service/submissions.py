"""Submitting a website: storing its upload, recording it and its build in one transaction
(older waiting builds of the website superseded), and queueing the build; rebuilds."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import PurePosixPath
from typing import IO

from sqlalchemy import update
from sqlmodel import Session, col, select

from orchestrator.adapters.uploads import store_upload
from orchestrator.context import Context
from orchestrator.core.exceptions import InvalidUpload, ServiceUnavailable
from orchestrator.core.priority import base_priority
from orchestrator.core.status import Status, check_transition
from orchestrator.core.upload_rules import UploadLimits
from orchestrator.scheduling.queue import submit
from orchestrator.service.lookups import get_website
from orchestrator.service.quotas import check_may_go_live
from orchestrator.state import logs
from orchestrator.state.models import ApiToken, BuildJob, Website, new_id, utcnow
from orchestrator.state.recorder import publish_status


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
        rebuild=rebuild,
        status=Status.QUEUED.value,
        current_step="Queued",
    )
    website.build_job_id = build.id
    superseded = _record(session, website, build, notes)
    publish_status(ctx, build)
    gate = ctx.stores.admission
    for old in superseded:
        gate.withdraw(old)
        superseded_build = session.get(BuildJob, old)
        if superseded_build is not None:
            publish_status(ctx, superseded_build)
    submit(ctx, build)
    return build


def _record(session: Session, website: Website, build: BuildJob, notes: list[str]) -> list[str]:
    """One transaction: the website, its new build, and its older waiting builds cancelled.
    Returns the ids of those."""
    session.add(website)
    session.flush()  # the website row first: the build refers to it
    session.add(build)
    session.flush()  # the build row first: its log lines refer to it
    logs.append(session, build.id, notes)
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
    check_may_go_live(ctx, session, owner, existing.id if existing else None)
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
