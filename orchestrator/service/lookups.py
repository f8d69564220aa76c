"""Looking websites and builds up as callers see them: only what is theirs (admins see
everything), and how long a build will take."""

from __future__ import annotations

from sqlmodel import Session, col, select

from orchestrator.core.estimate import remaining_seconds, step_durations, typical_durations
from orchestrator.core.exceptions import NotFound
from orchestrator.core.status import PREVIEW, Status, StepName
from orchestrator.service.auth import is_admin
from orchestrator.state.models import ApiToken, BuildJob, Website, utcnow

HISTORY_SAME_SITE = 10
HISTORY_SAME_TYPE = 20


def _visible(principal: ApiToken, owner_id: int) -> bool:
    return is_admin(principal) or principal.id == owner_id


def get_website(session: Session, principal: ApiToken, website_id: str) -> Website:
    website = session.get(Website, website_id)
    if website is None or website.deleted_at is not None or not _visible(principal, website.owner_id):
        raise NotFound(f"no website with id {website_id}")
    return website


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
    """The build whose preview is live or asleep (while a newer one builds, the previous one's is)."""
    return session.exec(
        select(BuildJob)
        .where(BuildJob.website_id == website.id, col(BuildJob.status).in_(PREVIEW))
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
        typical[StepName.INSTALL] = 0.0  # a hit takes no time
    return remaining_seconds(typical, build.status, build.steps, utcnow())
