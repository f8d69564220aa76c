import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query
from sse_starlette import EventSourceResponse
from starlette.concurrency import run_in_threadpool

from api.deps import ContextDep, PrincipalDep, SessionDep
from api.routes.websites import status_of
from api.schemas import BuildPublic, BuildStatus, BuildSummary
from orchestrator.context import Context
from orchestrator.core.status import END_STATUSES, PREVIEW
from orchestrator.service.lookups import get_build, list_builds
from orchestrator.service.removal import cancel_build
from orchestrator.state import logs
from orchestrator.state.models import BuildJob
from orchestrator.state.recorder import status_event

router = APIRouter(prefix="/api/builds", tags=["builds"])


@router.get("", response_model=list[BuildSummary], response_model_by_alias=True)
def builds(
    session: SessionDep,
    principal: PrincipalDep,
    website_id: Annotated[str | None, Query(alias="websiteId")] = None,
) -> list[BuildSummary]:
    """The caller's builds, newest first (of one website with ?websiteId=)."""
    return [BuildSummary.model_validate(b) for b in list_builds(session, principal, website_id)]


@router.get("/{job_id}", response_model=BuildPublic, response_model_by_alias=True)
def build(job_id: str, ctx: ContextDep, session: SessionDep, principal: PrincipalDep) -> BuildPublic:
    """The whole job record, logs included (the newest lines kept)."""
    record = get_build(session, principal, job_id)
    lines = logs.tail(session, record.id, ctx.settings.log_lines_kept)
    url = ctx.settings.build_url(record.id) if record.status in PREVIEW else None
    return BuildPublic.model_validate({**record.model_dump(), "logs": lines, "build_url": url})


@router.get("/{job_id}/status", response_model=BuildStatus, response_model_by_alias=True)
def build_status(job_id: str, ctx: ContextDep, session: SessionDep, principal: PrincipalDep) -> BuildStatus:
    """The same answer as the website's build-status, for any build."""
    return status_of(ctx, session, get_build(session, principal, job_id))


@router.post("/{job_id}/cancel", response_model=BuildStatus, response_model_by_alias=True)
def cancel(job_id: str, ctx: ContextDep, session: SessionDep, principal: PrincipalDep) -> BuildStatus:
    """Cancel a queued build at once, or stop a building one (within 5 s); 409 otherwise."""
    return status_of(ctx, session, cancel_build(ctx, session, principal, job_id))


def _final_status(ctx: Context, build_id: str) -> dict[str, Any] | None:
    with ctx.session() as session:
        build = session.get(BuildJob, build_id)
        if build is None or build.status not in END_STATUSES:
            return None
        return status_event(build)


@router.get("/{job_id}/events")
def build_events(
    job_id: str,
    ctx: ContextDep,
    session: SessionDep,
    principal: PrincipalDep,
    last_event_id: Annotated[str | None, Header()] = None,
    after: Annotated[str | None, Query(description="Same as the Last-Event-ID header")] = None,
) -> EventSourceResponse:
    """Server-Sent Events: ``status``, ``progress`` and ``log`` events in order, each with an id.
    Reconnect with ``Last-Event-ID`` to get only what was missed. The stream ends after the
    build goes live or ends."""
    build_id = get_build(session, principal, job_id).id
    session.close()  # a stream can stay open for minutes: it holds no database connection

    async def is_over() -> dict[str, Any] | None:
        return await run_in_threadpool(_final_status, ctx, build_id)

    async def stream() -> AsyncIterator[dict[str, Any]]:
        async for event in ctx.stores.events.follow(build_id, last_event_id or after, is_over):
            message = {"event": event.type, "data": json.dumps(event.data)}
            yield {**message, "id": event.id} if event.id else message

    return EventSourceResponse(stream(), ping=15)
