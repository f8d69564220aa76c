"""Counting what a user holds, for the quotas of orchestrator.core.quotas."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func
from sqlmodel import Session, col, select

from orchestrator.context import Context
from orchestrator.core.quotas import Quotas, Usage, check_previews, check_upload
from orchestrator.core.status import ACTIVE, Status
from orchestrator.service.auth import is_admin
from orchestrator.state.models import ApiToken, BuildJob, Website, as_utc, utcnow


def quotas(ctx: Context) -> Quotas:
    s = ctx.settings
    return Quotas(s.max_uploads_per_minute, s.max_queued_per_user, s.max_previews_per_user)


def check_may_upload(ctx: Context, session: Session, owner: ApiToken) -> None:
    """Before an upload's body is read: its rate and the user's builds waiting or in progress."""
    if is_admin(owner):
        return
    now = utcnow()
    recent = session.exec(
        select(func.count(), func.min(BuildJob.created_at)).where(
            BuildJob.owner_id == owner.id, col(BuildJob.created_at) > now - timedelta(minutes=1)
        )
    ).one()
    queued = session.exec(
        select(func.count()).where(BuildJob.owner_id == owner.id, col(BuildJob.status).in_(list(ACTIVE)))
    ).one()
    age = (now - as_utc(recent[1])).total_seconds() if recent[1] is not None else 60.0
    check_upload(quotas(ctx), Usage(recent[0], age, queued))


def check_may_go_live(ctx: Context, session: Session, owner: ApiToken, website_id: str | None) -> None:
    """A new website's upload (or a new version of one without a preview) adds a live preview."""
    if is_admin(owner):
        return
    live = session.exec(
        select(func.count(func.distinct(BuildJob.website_id)))
        .join(Website, col(Website.id) == BuildJob.website_id)
        .where(
            BuildJob.owner_id == owner.id,
            BuildJob.status == Status.RUNNING,  # awake: a sleeper holds a port and disk, no memory
            col(Website.deleted_at).is_(None),
            col(BuildJob.website_id) != (website_id or ""),
        )
    ).one()
    check_previews(quotas(ctx), live)
