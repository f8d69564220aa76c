"""Websites and their builds as callers see them: creation from an upload, and look-ups
that only show a caller what is theirs (admins see everything)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import PurePosixPath
from typing import IO

from sqlmodel import Session, col, select

from orchestrator.auth import is_admin
from orchestrator.config import Settings
from orchestrator.exceptions import NotFound
from orchestrator.jobs import enqueue_build
from orchestrator.models import ApiToken, BuildJob, Website, new_id
from orchestrator.states import Status, check_transition
from orchestrator.uploads import Limits, store_upload


def _default_name(uploads: Sequence[tuple[str, IO[bytes]]], package: dict | None) -> str:
    if package and isinstance(package.get("name"), str) and package["name"].strip():
        return package["name"].strip()[:100]
    if len(uploads) == 1 and uploads[0][0].lower().endswith(".zip"):
        return PurePosixPath(uploads[0][0].replace("\\", "/")).stem[:100] or "website"
    return "website"


def create_website(
    session: Session,
    settings: Settings,
    owner: ApiToken,
    uploads: Sequence[tuple[str, IO[bytes]]],
    name: str | None = None,
) -> tuple[Website, BuildJob]:
    """Store the upload, record the website and its first build, and queue the build.

    A refused upload raises InvalidUpload and leaves nothing behind. When Redis cannot take
    the job, the records stay (queued) and ServiceUnavailable is raised: a worker queues
    the build again when it starts.
    """
    build_id = new_id()
    limits = Limits(settings.max_upload_bytes, settings.max_unpacked_bytes, settings.max_files)
    archive = settings.uploads_dir / f"{build_id}.zip"
    summary = store_upload(uploads, archive, limits)
    assert owner.id is not None
    try:
        website = Website(
            owner_id=owner.id,
            name=(name or "").strip()[:100] or _default_name(uploads, summary.package),
            type=summary.project_type.value,
            build_job_id=build_id,
        )
        session.add(website)
        session.flush()
        build = BuildJob(
            id=build_id,
            website_id=website.id,
            owner_id=owner.id,
            project_type=summary.project_type.value,
            logs=list(summary.notes),
        )
        session.add(build)
        session.flush()
        build.status = check_transition(build.status, Status.QUEUED)
        build.current_step = "Queued"
        session.add(build)
        session.commit()
    except BaseException:
        session.rollback()
        archive.unlink(missing_ok=True)
        raise
    enqueue_build(build.id)
    return website, build


def _visible(principal: ApiToken, owner_id: int) -> bool:
    return is_admin(principal) or principal.id == owner_id


def get_website(session: Session, principal: ApiToken, website_id: str) -> Website:
    website = session.get(Website, website_id)
    if website is None or not _visible(principal, website.owner_id):
        raise NotFound(f"no website with id {website_id}")
    return website


def get_build(session: Session, principal: ApiToken, build_id: str) -> BuildJob:
    build = session.get(BuildJob, build_id)
    if build is None or not _visible(principal, build.owner_id):
        raise NotFound(f"no build with id {build_id}")
    return build


def list_websites(session: Session, principal: ApiToken) -> list[Website]:
    query = select(Website).order_by(col(Website.created_at).desc())
    if not is_admin(principal):
        query = query.where(Website.owner_id == principal.id)
    return list(session.exec(query).all())


def latest_build(session: Session, website: Website) -> BuildJob | None:
    return session.get(BuildJob, website.build_job_id) if website.build_job_id else None
