"""The previews a caller may see, awake and asleep, with what they cost and how long they sat idle."""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlmodel import Session, col, select

from orchestrator.context import Context
from orchestrator.core.exceptions import OrchestratorError
from orchestrator.core.status import PREVIEW, Status
from orchestrator.service.auth import is_admin
from orchestrator.state.models import ApiToken, BuildJob, Website
from orchestrator.state.previews import live_since, observe_activity


@dataclass(frozen=True)
class Preview:
    build_id: str
    website_id: str
    website_name: str
    owner: str
    status: str
    """running (awake) or sleeping."""
    url: str | None
    website_url: str
    port: int | None
    memory_bytes: int | None
    idle_seconds: float
    age_seconds: float


def live_previews(ctx: Context, session: Session, principal: ApiToken) -> list[Preview]:
    """The previews the caller may see (an admin: all), awake or asleep, newest first."""
    query = (
        select(BuildJob, Website, ApiToken)
        .join(Website, col(Website.id) == BuildJob.website_id)
        .join(ApiToken, col(ApiToken.id) == BuildJob.owner_id)
        .where(col(BuildJob.status).in_(PREVIEW))
        .order_by(col(BuildJob.completed_at).desc())
    )
    if not is_admin(principal):
        query = query.where(BuildJob.owner_id == principal.id)
    now = time.time()
    found = []
    for build, website, owner in session.exec(query).all():
        activity = observe_activity(ctx, build, now)
        found.append(
            Preview(
                build_id=build.id,
                website_id=website.id,
                website_name=website.name,
                owner=owner.name,
                status=build.status,
                url=build.preview_url,
                website_url=ctx.settings.website_url(website.id),
                port=build.allocated_port,
                memory_bytes=memory_of(ctx, build),
                idle_seconds=round(now - activity.active_at, 1),
                age_seconds=round(now - live_since(build), 1),
            )
        )
    return found


def memory_of(ctx: Context, build: BuildJob) -> int | None:
    """What an awake preview's container uses now, on its host (None: asleep, or its host lost)."""
    if not build.container_id or build.status != Status.RUNNING:
        return None
    try:
        return ctx.runtime_for(build.host_id).memory_used(build.container_id)
    except OrchestratorError:
        return None
