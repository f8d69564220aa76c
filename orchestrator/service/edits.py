"""Live edits: files changed in a live (or woken) preview at once, Vite's watcher turning them
into an HMR update, and recorded as the website's newest version.

An edit is copied into the preview's container first (Vite's watcher sends its update at
once), then recorded: the build's stored upload is replaced by the edited files, whole or not at
all, so that a rebuild, a wake or the next edit sees it. The answer comes once both are done,
and says which one failed if one did. Its type check runs afterwards in the preview's container
(``recheck``), and its result is kept on the build (``edit_check``) without taking the preview
down. An edit may not change what
is installed: package.json and lockfiles need a new upload, which installs them.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO

from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from orchestrator.adapters.uploads import read_upload, store_upload, upload_paths
from orchestrator.adapters.workspace import pack_for_container
from orchestrator.context import Context
from orchestrator.core import defaults, edit_checks
from orchestrator.core.exceptions import Conflict, InvalidUpload, OrchestratorError, ServiceUnavailable
from orchestrator.core.failures import failure_cause
from orchestrator.core.plan import make_plan, parse_package_json
from orchestrator.core.status import Status
from orchestrator.core.upload_rules import UploadLimits, clean_path, is_system_junk
from orchestrator.pipeline.sleep import wake
from orchestrator.service.lookups import get_website, live_build
from orchestrator.state.models import ApiToken, BuildJob

INSTALLED_BY = frozenset(
    {
        "package.json",
        "package-lock.json",
        "npm-shrinkwrap.json",
        "yarn.lock",
        "pnpm-lock.yaml",
        "pnpm-workspace.yaml",
        "bun.lock",
        "bun.lockb",
        ".npmrc",
        ".yarnrc.yml",
    }
)
"""Files whose change changes what is installed: an edit may not touch them."""

CHECK_LINES = 40
"""Lines of a failing type check kept on the build."""

BOOST_SECONDS = 3.0
"""An edit of a project with no type check keeps the build's CPU this long (for Vite's work)."""


@dataclass(frozen=True)
class Edit:
    website_id: str
    build_id: str
    edit: int
    """The build's edit number (its files' version)."""
    changed: list[str]
    deleted: list[str]
    check: str | None
    """The type check to run on it (None: the project has none)."""


def limits(ctx: Context) -> UploadLimits:
    s = ctx.settings
    return UploadLimits(s.max_upload_bytes, s.max_unpacked_bytes, s.max_files)


def digest(files: dict[str, bytes]) -> dict[str, str]:
    """Each file's SHA-256, by path (what `orchestrator push` compares with)."""
    return {path: hashlib.sha256(data).hexdigest() for path, data in sorted(files.items())}


def _editable(session: Session, principal: ApiToken, website_id: str) -> tuple[str, BuildJob]:
    website = get_website(session, principal, website_id)
    build = live_build(session, website)
    if build is None or build.container_id is None or build.allocated_port is None:
        raise Conflict(
            "the website has no live preview to edit: upload a new version instead "
            "(POST /api/websites with websiteId)"
        )
    if website.build_job_id != build.id:
        raise Conflict(
            f"build {website.build_job_id} of this website is in progress: edit once it is live, "
            "or the edit would be lost when it replaces this preview"
        )
    return website.id, build


def current_files(
    ctx: Context, session: Session, principal: ApiToken, website_id: str
) -> tuple[str, dict[str, str]]:
    """The live preview's build, and its files as last uploaded or edited: path → SHA-256."""
    _, build = _editable(session, principal, website_id)
    return build.id, digest(read_upload(ctx.settings.uploads_dir / f"{build.id}.zip", limits(ctx)))


def _paths(
    files: Sequence[tuple[str, IO[bytes]]], deletes: Sequence[str]
) -> tuple[dict[str, bytes], list[str]]:
    changed: dict[str, bytes] = {}
    for name, stream in files:
        path = clean_path(name)
        if path is None or is_system_junk(name):
            raise InvalidUpload(f"{name!r} is not a relative path inside the website")
        if path in changed:
            raise InvalidUpload(f"the file {path!r} appears twice in the edit")
        changed[path] = stream.read()
    deleted = []
    for name in deletes:
        path = clean_path(name)
        if path is None:
            raise InvalidUpload(f"{name!r} is not a relative path inside the website")
        if path in changed:
            raise InvalidUpload(f"{path!r} is both changed and deleted")
        deleted.append(path)
    if not changed and not deleted:
        raise InvalidUpload("nothing to change: send 'files' parts named by path, or 'delete' fields")
    for path in [*changed, *deleted]:
        if path in INSTALLED_BY:
            raise Conflict(
                f"{path} decides what is installed, which a live edit does not change: upload a new "
                "version instead (POST /api/websites with websiteId, or `orchestrator submit`)"
            )
    return changed, deleted


def apply_edit(
    ctx: Context,
    session: Session,
    principal: ApiToken,
    website_id: str,
    files: Sequence[tuple[str, IO[bytes]]],
    deletes: Sequence[str],
) -> Edit:
    """Apply an edit to the website's live preview and record it as its newest version."""
    changed, deleted = _paths(files, deletes)
    task = f"edit:{website_id}"
    deadline = time.monotonic() + 30
    while not ctx.stores.signals.due(task, 60):  # one edit of a website at a time
        if time.monotonic() > deadline:
            raise ServiceUnavailable("another edit of this website is still being applied: try again")
        time.sleep(0.02)
    try:
        return _apply(ctx, session, principal, website_id, changed, deleted)
    finally:
        ctx.stores.signals.done(task)


def _apply(
    ctx: Context,
    session: Session,
    principal: ApiToken,
    website_id: str,
    changed: dict[str, bytes],
    deleted: list[str],
) -> Edit:
    website_id, build = _editable(session, principal, website_id)
    upload = ctx.settings.uploads_dir / f"{build.id}.zip"
    missing = sorted(set(deleted) - set(upload_paths(upload, limits(ctx))))
    if missing:
        raise InvalidUpload(f"cannot delete {missing[0]!r}: the website has no such file")
    if build.status == Status.SLEEPING and (why := wake(ctx, build.id)) is not None:
        raise ServiceUnavailable(f"the preview is asleep and did not wake: {why}")
    assert build.allocated_port is not None and build.container_id is not None
    try:  # the preview first: Vite's watcher sends the update while the edit is recorded
        runtime = ctx.runtime_for(build.host_id)
        if changed:
            with pack_for_container(changed, user=defaults.build_user(build.allocated_port)) as tar:
                runtime.copy_in(build.container_id, tar)
        if deleted:
            paths = [f"{defaults.CONTAINER_WORKDIR}/{path}" for path in deleted]
            runtime.exec(build.container_id, ["rm", "-f", "--", *paths])
    except OrchestratorError as exc:
        raise ServiceUnavailable(
            f"the preview did not take the edit ({exc}); nothing was recorded: try again"
        ) from exc
    with contextlib.suppress(OrchestratorError):  # the build's cores while Vite and the check work
        runtime.set_cpus(build.container_id, ctx.settings.build_nano_cpus)
    try:
        files = read_upload(upload, limits(ctx))
        files.update(changed)
        for path in deleted:
            del files[path]
        store_upload([(path, io.BytesIO(data)) for path, data in sorted(files.items())], upload, limits(ctx))
        package = parse_package_json(files["package.json"]) if "package.json" in files else None
        check = make_plan(list(files), package, build.allocated_port).typecheck.command
        record = session.get(BuildJob, build.id)
        assert record is not None
        record.edits += 1
        record.files_hash = None  # edited: no longer the same files as any upload
        record.edit_check = edit_checks.begun(record.edits, bool(check), time.time())
        session.add(record)
        session.commit()
    except (OSError, SQLAlchemyError) as exc:
        raise ServiceUnavailable(
            f"the preview shows the edit, but it could not be recorded as the website's newest version "
            f"({exc}): send it again, or a rebuild or wake will not see it"
        ) from exc
    return Edit(website_id, build.id, record.edits, sorted(changed), sorted(deleted), check)


def recheck(ctx: Context, edit: Edit) -> None:
    """Run the type check on an edit in its preview's container, and keep its result on the
    build unless a newer edit came meanwhile (the preview stays up either way). Then the
    preview's CPU goes back to its share, unless a newer edit is still at work."""
    with ctx.session() as session:
        build = session.get(BuildJob, edit.build_id)
        container = build.container_id if build else None
        host_id = build.host_id if build else None
    if container is None:
        return
    try:
        if edit.check is None:
            time.sleep(BOOST_SECONDS)  # Vite's own work on the edit
        else:
            _check(ctx, edit, container, host_id)
    finally:
        with ctx.session() as session:
            build = session.get(BuildJob, edit.build_id)
            newest = build is not None and build.edits == edit.edit
        if newest:
            with contextlib.suppress(OrchestratorError):
                ctx.runtime_for(host_id).set_cpus(container, ctx.settings.nano_cpus)


def _check(ctx: Context, edit: Edit, container: str, host_id: str | None) -> None:
    assert edit.check is not None
    deadline = time.monotonic() + ctx.settings.typecheck_timeout
    lines: list[str] = []
    try:
        runtime = ctx.runtime_for(host_id)
        exec_id, output = runtime.exec_start(container, ["sh", "-c", edit.check])
        lines = list(output)
        code = runtime.exec_exit_code(exec_id)
        while code is None and time.monotonic() < deadline:
            time.sleep(0.1)
            code = runtime.exec_exit_code(exec_id)
        status = "passed" if code == 0 else "failed"
    except OrchestratorError as exc:
        status, lines = "error", [f"the type check could not run: {exc}"]
    errors = [] if status == "passed" else [line for line in lines if line.strip()][-CHECK_LINES:]
    if status == "failed" and errors:
        errors = [f"type check failed: {failure_cause(errors)}", *errors]
    with ctx.session() as session:
        build = session.get(BuildJob, edit.build_id)
        if build is None or (build.edit_check or {}).get("edit") != edit.edit:
            return  # a newer edit's check decides
        build.edit_check = {"edit": edit.edit, "status": status, "errors": errors, "command": edit.check}
        session.add(build)
