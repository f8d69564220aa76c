from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile
from sqlmodel import Session

from api.deps import PrincipalDep, SessionDep, SettingsDep
from api.schemas import BuildStatus, UploadAccepted, WebsitePublic
from orchestrator import defaults
from orchestrator.jobs import admission
from orchestrator.models import BuildJob, Website
from orchestrator.states import Status
from orchestrator.websites import (
    create_website,
    estimate,
    get_build,
    get_website,
    latest_build,
    list_websites,
    rebuild_website,
)

router = APIRouter(prefix="/api/websites", tags=["websites"])


def _public(website: Website, build: BuildJob | None) -> WebsitePublic:
    return WebsitePublic(
        id=website.id,
        name=website.name,
        type=website.type,
        build_job_id=website.build_job_id,
        created_at=website.created_at,
        status=build.status if build else None,
        preview_url=build.preview_url if build else None,
    )


def _accepted(website: Website, build: BuildJob, message: str) -> UploadAccepted:
    return UploadAccepted(website=_public(website, build), message=message)


@router.post("", status_code=202, response_model=UploadAccepted, response_model_by_alias=True)
def upload_website(
    session: SessionDep,
    settings: SettingsDep,
    principal: PrincipalDep,
    files: Annotated[
        list[UploadFile] | None, File(description="One .zip, or many files named by their relative paths")
    ] = None,
    name: Annotated[str | None, Form()] = None,
    priority: Annotated[int | None, Form(description="Clamped to what the caller's role may ask")] = None,
    website_id: Annotated[
        str | None, Form(alias="websiteId", description="Upload a new version of this website")
    ] = None,
) -> UploadAccepted:
    """Accept a website and queue its build; answers at once, before any build step runs."""
    uploads = [(f.filename or "", f.file) for f in files or []]
    website, build = create_website(session, settings, principal, uploads, name, priority, website_id)
    return _accepted(website, build, "Website uploaded successfully. Build process started in background.")


@router.post(
    "/{website_id}/rebuild", status_code=202, response_model=UploadAccepted, response_model_by_alias=True
)
def rebuild(
    website_id: str, session: SessionDep, settings: SettingsDep, principal: PrincipalDep
) -> UploadAccepted:
    """Build the website's newest files again."""
    website, build = rebuild_website(session, settings, principal, website_id)
    return _accepted(website, build, "Rebuild queued.")


@router.get("", response_model=list[WebsitePublic], response_model_by_alias=True)
def websites(session: SessionDep, principal: PrincipalDep) -> list[WebsitePublic]:
    """The caller's websites, newest first (an admin's: everyone's)."""
    return [_public(w, latest_build(session, w)) for w in list_websites(session, principal)]


@router.get("/{website_id}", response_model=WebsitePublic, response_model_by_alias=True)
def website(website_id: str, session: SessionDep, principal: PrincipalDep) -> WebsitePublic:
    site = get_website(session, principal, website_id)
    return _public(site, latest_build(session, site))


@router.get("/{website_id}/build-status", response_model=BuildStatus, response_model_by_alias=True)
def build_status(website_id: str, session: SessionDep, principal: PrincipalDep) -> BuildStatus:
    """The newest build of the website: status, progress, step, the last 50 log lines."""
    site = get_website(session, principal, website_id)
    build = get_build(session, principal, site.build_job_id or "")
    return status_of(session, build)


def status_of(session: Session, build: BuildJob) -> BuildStatus:
    return BuildStatus(
        website_id=build.website_id,
        job_id=build.id,
        status=build.status,
        progress=build.progress,
        current_step=build.current_step,
        logs=build.logs[-defaults.STATUS_LOG_LINES :],
        preview_url=build.preview_url,
        error=build.error,
        error_step=build.error_step,
        estimated_time_remaining=estimate(session, build),
        queue_position=admission().position(build.id) if build.status == Status.QUEUED else None,
        wait_reason=build.wait_reason if build.status == Status.QUEUED else None,
        priority=build.priority,
        cancelled_by=build.cancelled_by,
        project_type=build.project_type,
        created_at=build.created_at,
        started_at=build.started_at,
        completed_at=build.completed_at,
    )
