"""Where the gateway sends a request: the preview a host name names (a website's newest live or
sleeping build, or one build), whether the caller may open it, and waking it."""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import col, select

from orchestrator.context import Context
from orchestrator.core.exceptions import RuntimeUnavailable, Unauthorized
from orchestrator.core.gateway import Route, RouteKind
from orchestrator.core.status import PREVIEW, Status
from orchestrator.service.auth import authenticate, is_admin
from orchestrator.service.shares import Access, access_of
from orchestrator.state.models import BuildJob, Website


@dataclass(frozen=True)
class Target:
    build_id: str
    website_id: str
    website_name: str
    owner_id: int
    status: Status
    address: str
    """host:port the preview's server listens on, as this process reaches its host."""
    upstream_host: str
    """The Host header its server accepts."""
    access: Access


def resolve(ctx: Context, route: Route) -> Target | None:
    """The preview ``route`` names now, None when it names none (no such website or build, or
    no preview of it is live or asleep)."""
    with ctx.session() as session:
        if route.kind is RouteKind.BUILD:
            build = session.get(BuildJob, route.id)
        else:
            build = session.exec(
                select(BuildJob)
                .where(BuildJob.website_id == route.id, col(BuildJob.status).in_(PREVIEW))
                .order_by(col(BuildJob.created_at).desc())
            ).first()
        if build is None or build.status not in PREVIEW or build.allocated_port is None:
            return None
        website = session.get(Website, build.website_id)
        if website is None or website.deleted_at is not None:
            return None
    s = ctx.settings
    try:
        address, public_host = ctx.reach(build.host_id)
    except RuntimeUnavailable:
        return None  # its host is lost: gc stops its previews with host-lost
    return Target(
        build_id=build.id,
        website_id=website.id,
        website_name=website.name,
        owner_id=website.owner_id,
        status=Status(build.status),
        address=f"{address}:{build.allocated_port}",
        upstream_host=f"{public_host}:{build.allocated_port}",
        access=access_of(s, website),
    )


def token_opens(ctx: Context, target: Target, token: str) -> bool:
    """Whether an API token opens a protected preview: its owner's, or an admin's."""
    with ctx.session() as session:
        try:
            principal = authenticate(session, token)
        except Unauthorized:
            return False
    return is_admin(principal) or principal.id == target.owner_id
