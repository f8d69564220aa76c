"""Live edits of a website's preview (orchestrator.service.edits)."""

from fastapi import APIRouter, BackgroundTasks, Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from api.deps import ContextDep, PrincipalDep, SessionDep
from api.schemas import CamelModel, files_field, multipart_form
from orchestrator.service.edits import apply_edit, current_files, recheck

router = APIRouter(prefix="/api/websites", tags=["websites"])

MAX_DELETES = 10_000


class EditApplied(CamelModel):
    website_id: str
    build_id: str
    edit: int
    """The preview's files' version after this edit."""
    changed: list[str]
    deleted: list[str]
    type_check: str
    """"running" (its result comes to the build's editCheck) or "none" (the project has none)."""


class WebsiteFiles(CamelModel):
    build_id: str
    files: dict[str, str]
    """Relative path → SHA-256 of the live preview's files."""


EDIT_FORM = multipart_form(
    files=files_field("Changed or new files, each named by its relative path"),
    delete={"type": "array", "items": {"type": "string"}, "description": "Relative paths of files to delete"},
)


@router.patch(
    "/{website_id}/files", response_model=EditApplied, response_model_by_alias=True, openapi_extra=EDIT_FORM
)
async def edit_files(
    website_id: str,
    request: Request,
    background: BackgroundTasks,
    ctx: ContextDep,
    session: SessionDep,
    principal: PrincipalDep,
) -> EditApplied:
    """Apply changed and deleted files to the live preview at once (Vite's HMR shows them) and
    record them as the website's newest version; its type check runs afterwards. package.json
    and lockfiles are refused (409): they need a new upload."""
    form = await request.form(
        max_files=ctx.settings.max_files, max_fields=MAX_DELETES, max_part_size=64 * 1024
    )
    try:
        files = [
            (part.filename or "", part.file) for part in form.getlist("files") if isinstance(part, UploadFile)
        ]
        deletes = [value for value in form.getlist("delete") if isinstance(value, str)]
        edit = await run_in_threadpool(apply_edit, ctx, session, principal, website_id, files, deletes)
    finally:
        await form.close()
    background.add_task(recheck, ctx, edit)
    return EditApplied(
        website_id=edit.website_id,
        build_id=edit.build_id,
        edit=edit.edit,
        changed=edit.changed,
        deleted=edit.deleted,
        type_check="running" if edit.check else "none",
    )


@router.get("/{website_id}/files", response_model=WebsiteFiles, response_model_by_alias=True)
def files(website_id: str, ctx: ContextDep, session: SessionDep, principal: PrincipalDep) -> WebsiteFiles:
    """The live preview's files with their SHA-256 (what `orchestrator push` sends the changes of)."""
    build_id, found = current_files(ctx, session, principal, website_id)
    return WebsiteFiles(build_id=build_id, files=found)
