from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile

from api.deps import PrincipalDep, SessionDep, SettingsDep
from api.schemas import BuildStatus, UploadAccepted, WebsitePublic
from orchestrator import defaults
from orchestrator.models import Website
from orchestrator.websites import create_website, get_build, get_website, latest_build, list_websites

router = APIRouter(prefix="/api/websites", tags=["websites"])


def _public(session: SessionDep, website: Website) -> WebsitePublic:
    build = latest_build(session, website)
    return WebsitePublic(
        id=website.id,
        name=website.name,
        type=website.type,
        build_job_id=website.build_job_id,
        created_at=website.created_at,
        status=build.status if build else None,
        preview_url=build.preview_url if build else None,
    )


@router.post("", status_code=202, response_model=UploadAccepted, response_model_by_alias=True)
def upload_website(
    session: SessionDep,
    settings: SettingsDep,
    principal: PrincipalDep,
    files: Annotated[
        list[UploadFile] | None, File(description="One .zip, or many files named by their relative paths")
    ] = None,
    name: Annotated[str | None, Form()] = None,
) -> UploadAccepted:
    """Accept a website and queue its build; answers at once, before any build step runs."""
    uploads = [(f.filename or "", f.file) for f in files or []]
    website, build = create_website(session, settings, principal, uploads, name)
    return UploadAccepted(
        website=WebsitePublic(
            id=website.id,
            name=website.name,
            type=website.type,
            build_job_id=build.id,
            created_at=website.created_at,
            status=build.status,
        ),
        message="Website uploaded successfully. Build process started in background.",
    )


@router.get("", response_model=list[WebsitePublic], response_model_by_alias=True)
def websites(session: SessionDep, principal: PrincipalDep) -> list[WebsitePublic]:
    return [_public(session, w) for w in list_websites(session, principal)]


@router.get("/{website_id}", response_model=WebsitePublic, response_model_by_alias=True)
def website(website_id: str, session: SessionDep, principal: PrincipalDep) -> WebsitePublic:
    return _public(session, get_website(session, principal, website_id))


@router.get("/{website_id}/build-status", response_model=BuildStatus, response_model_by_alias=True)
def build_status(website_id: str, session: SessionDep, principal: PrincipalDep) -> BuildStatus:
    site = get_website(session, principal, website_id)
    build = get_build(session, principal, site.build_job_id or "")
    return BuildStatus(
        website_id=site.id,
        job_id=build.id,
        status=build.status,
        progress=build.progress,
        current_step=build.current_step,
        logs=build.logs[-defaults.STATUS_LOG_LINES :],
        preview_url=build.preview_url,
        error=build.error,
        estimated_time_remaining=None,
    )
