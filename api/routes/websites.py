import time

from fastapi import APIRouter, Request
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from api.deps import ContextDep, PrincipalDep, SessionDep
from api.schemas import (
    BuildStatus,
    UploadAccepted,
    WebsiteDeleted,
    WebsitePublic,
    files_field,
    multipart_form,
)
from orchestrator.context import Context
from orchestrator.core import defaults, edit_checks
from orchestrator.core.exceptions import InvalidUpload
from orchestrator.core.status import PREVIEW, Status
from orchestrator.service.lookups import (
    estimate,
    get_build,
    get_website,
    latest_build,
    list_websites,
    live_build,
)
from orchestrator.service.quotas import check_may_upload
from orchestrator.service.removal import delete_website
from orchestrator.service.shares import access_of
from orchestrator.service.submissions import create_website, rebuild_website
from orchestrator.state import logs
from orchestrator.state.models import BuildJob, Website

router = APIRouter(prefix="/api/websites", tags=["websites"])


def _public(ctx: Context, session: Session, website: Website, build: BuildJob | None) -> WebsitePublic:
    live = build if build is not None and build.status in PREVIEW else live_build(session, website)
    return WebsitePublic(
        id=website.id,
        name=website.name,
        type=website.type,
        build_job_id=website.build_job_id,
        created_at=website.created_at,
        status=build.status if build else None,
        preview_url=live.preview_url if live else None,
        live_build_id=live.id if live else None,
        website_url=ctx.settings.website_url(website.id),
        preview_access=access_of(ctx.settings, website).value,
    )


def _accepted(
    ctx: Context, session: Session, website: Website, build: BuildJob, message: str
) -> UploadAccepted:
    return UploadAccepted(website=_public(ctx, session, website, build), message=message)


MAX_FORM_FIELDS = 16
MAX_FIELD_BYTES = 64 * 1024

UPLOAD_FORM = multipart_form(
    required=("files",),
    files=files_field("One .zip (or .tar.gz), or many files named by relative paths"),
    name={"type": "string", "description": "Website name (default: from package.json)"},
    priority={"type": "integer", "description": "Clamped to what the caller's role may ask"},
    websiteId={"type": "string", "description": "Upload a new version of this website"},
)


@router.post(
    "",
    status_code=202,
    response_model=UploadAccepted,
    response_model_by_alias=True,
    openapi_extra=UPLOAD_FORM,
)
async def upload_website(
    request: Request, session: SessionDep, ctx: ContextDep, principal: PrincipalDep
) -> UploadAccepted:
    """Accept a website and queue its build; answers at once, before any build step runs.

    The form is read here, after the token was checked (FastAPI reads a body it is told about
    before any dependency runs), with its parts bounded; the body's size is bounded while it
    arrives (api/limits.py)."""
    await run_in_threadpool(check_may_upload, ctx, session, principal)  # before the body, too
    form = await request.form(
        max_files=ctx.settings.max_files, max_fields=MAX_FORM_FIELDS, max_part_size=MAX_FIELD_BYTES
    )
    try:
        files = [part for part in form.getlist("files") if isinstance(part, UploadFile)]
        fields = {key: value for key, value in form.multi_items() if isinstance(value, str)}
        priority = fields.get("priority")
        if priority is not None and not priority.lstrip("-").isdigit():
            raise InvalidUpload(f"priority must be a whole number, not {priority[:20]!r}")
        uploads = [(f.filename or "", f.file) for f in files]
        website, build = await run_in_threadpool(
            create_website,
            ctx,
            session,
            principal,
            uploads,
            fields.get("name"),
            int(priority) if priority is not None else None,
            fields.get("websiteId"),
        )
        message = "Website uploaded successfully. Build process started in background."
        return _accepted(ctx, session, website, build, message)
    finally:
        await form.close()


@router.post(
    "/{website_id}/rebuild", status_code=202, response_model=UploadAccepted, response_model_by_alias=True
)
def rebuild(website_id: str, ctx: ContextDep, session: SessionDep, principal: PrincipalDep) -> UploadAccepted:
    """Build the website's newest files again."""
    website, build = rebuild_website(ctx, session, principal, website_id)
    return _accepted(ctx, session, website, build, "Rebuild queued.")


@router.get("", response_model=list[WebsitePublic], response_model_by_alias=True)
def websites(ctx: ContextDep, session: SessionDep, principal: PrincipalDep) -> list[WebsitePublic]:
    """The caller's websites, newest first (an admin's: everyone's)."""
    return [_public(ctx, session, w, latest_build(session, w)) for w in list_websites(session, principal)]


@router.get("/{website_id}", response_model=WebsitePublic, response_model_by_alias=True)
def website(website_id: str, ctx: ContextDep, session: SessionDep, principal: PrincipalDep) -> WebsitePublic:
    site = get_website(session, principal, website_id)
    return _public(ctx, session, site, latest_build(session, site))


@router.delete("/{website_id}", response_model=WebsiteDeleted, response_model_by_alias=True)
def delete(website_id: str, ctx: ContextDep, session: SessionDep, principal: PrincipalDep) -> WebsiteDeleted:
    """Delete the website: cancel its builds, stop its preview, remove its files. Its builds stay
    readable at /api/builds as history."""
    done = delete_website(ctx, session, principal, website_id)
    assert done.website.deleted_at is not None
    return WebsiteDeleted(
        id=done.website.id,
        deleted_at=done.website.deleted_at,
        cancelled_builds=done.cancelled,
        stopped_builds=done.stopped,
    )


@router.get("/{website_id}/build-status", response_model=BuildStatus, response_model_by_alias=True)
def build_status(
    website_id: str, ctx: ContextDep, session: SessionDep, principal: PrincipalDep
) -> BuildStatus:
    """The newest build of the website: status, progress, step, the last 50 log lines."""
    site = get_website(session, principal, website_id)
    build = get_build(session, principal, site.build_job_id or "")
    return status_of(ctx, session, build)


def status_of(ctx: Context, session: Session, build: BuildJob) -> BuildStatus:
    return BuildStatus(
        website_id=build.website_id,
        job_id=build.id,
        status=build.status,
        progress=build.progress,
        current_step=build.current_step,
        logs=logs.tail(session, build.id, defaults.STATUS_LOG_LINES),
        preview_url=build.preview_url,
        error=build.error,
        error_step=build.error_step,
        estimated_time_remaining=estimate(session, build),
        queue_position=ctx.stores.admission.position(build.id) if build.status == Status.QUEUED else None,
        wait_reason=build.wait_reason if build.status == Status.QUEUED else None,
        priority=build.priority,
        cancelled_by=build.cancelled_by,
        stop_reason=build.stop_reason,
        reused_from=build.reused_from,
        website_url=ctx.settings.website_url(build.website_id),
        build_url=ctx.settings.build_url(build.id) if build.status in PREVIEW else None,
        edits=build.edits,
        edit_check=edit_checks.as_shown(build.edit_check, time.time(), ctx.settings.typecheck_timeout),
        project_type=build.project_type,
        created_at=build.created_at,
        started_at=build.started_at,
        completed_at=build.completed_at,
    )
