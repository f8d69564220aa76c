"""Live edits over the in-memory context: what is refused and why, what is recorded, what
reaches the preview's container, and the type check's result on the build."""

from __future__ import annotations

import io
import json

import pytest
from sqlmodel import Session

from orchestrator.adapters.memory_scripts import Script
from orchestrator.adapters.uploads import read_upload
from orchestrator.context import Context
from orchestrator.core.exceptions import Conflict, InvalidUpload
from orchestrator.core.upload_rules import UploadLimits
from orchestrator.service.edits import apply_edit, current_files, recheck
from orchestrator.state.models import ApiToken, BuildJob, Website
from tests.unit.conftest import record, site_zip
from tests.unit.test_gc_and_previews import live_preview, memory

PACKAGE = json.dumps(
    {"name": "s", "scripts": {"typecheck": "tsc --noEmit"}, "devDependencies": {"vite": "^8"}}
)


@pytest.fixture
def preview(ctx: Context, alice: ApiToken) -> BuildJob:
    """A live preview whose website's newest build it is, with its upload stored."""
    build = live_preview(ctx, alice)
    with ctx.session() as session:
        website = session.get(Website, build.website_id)
        assert website is not None
        website.build_job_id = build.id
        session.add(website)
    ctx.settings.uploads_dir.mkdir(parents=True, exist_ok=True)
    files = {"index.html": "<h1>one</h1>", "src/main.ts": "let a = 1", "package.json": PACKAGE}
    (ctx.settings.uploads_dir / f"{build.id}.zip").write_bytes(
        site_zip({f"site/{k}": v for k, v in files.items()})
    )
    return build


def edit(ctx: Context, alice: ApiToken, website_id: str, files: dict[str, bytes], deletes=()):  # type: ignore[no-untyped-def]
    with Session(ctx.database.engine, expire_on_commit=False) as session:
        parts = [(name, io.BytesIO(data)) for name, data in files.items()]
        return apply_edit(ctx, session, alice, website_id, parts, list(deletes))


def test_an_edit_is_recorded_and_copied_into_the_preview(
    ctx: Context, alice: ApiToken, preview: BuildJob
) -> None:
    done = edit(
        ctx, alice, preview.website_id, {"src/main.ts": b"let a = 2", "src/new.ts": b"x"}, ["index.html"]
    )
    assert (done.edit, done.changed, done.deleted) == (1, ["src/main.ts", "src/new.ts"], ["index.html"])
    assert done.check == "npm run typecheck"
    stored = read_upload(ctx.settings.uploads_dir / f"{preview.id}.zip", UploadLimits())
    assert stored == {"src/main.ts": b"let a = 2", "src/new.ts": b"x", "package.json": PACKAGE.encode()}
    assert preview.container_id
    files = memory(ctx).containers[preview.container_id].files
    assert files["/app/src/main.ts"] == b"let a = 2" and files["/app/src/new.ts"] == b"x"
    after = record(ctx, preview.id)
    assert after.edits == 1 and after.files_hash is None
    assert after.edit_check is not None and after.edit_check.pop("startedAt") > 0
    assert after.edit_check == {"edit": 1, "status": "running", "errors": []}
    with Session(ctx.database.engine) as session:
        build_id, digests = current_files(ctx, session, alice, preview.website_id)
    assert build_id == preview.id and set(digests) == {"src/main.ts", "src/new.ts", "package.json"}


@pytest.mark.parametrize(
    ("files", "deletes", "error", "message"),
    [
        ({"package.json": b"{}"}, [], Conflict, "package.json decides what is installed"),
        ({"pnpm-lock.yaml": b""}, [], Conflict, "upload a new version"),
        ({}, ["package-lock.json"], Conflict, "package-lock.json decides"),
        ({"../escape.ts": b""}, [], InvalidUpload, "path leaving the upload's folder"),
        ({}, [], InvalidUpload, "nothing to change"),
        ({}, ["no/such.ts"], InvalidUpload, "no such file"),
        ({"a.ts": b""}, ["a.ts"], InvalidUpload, "both changed and deleted"),
    ],
)
def test_an_edit_that_cannot_apply_is_refused_saying_why(
    ctx: Context,
    alice: ApiToken,
    preview: BuildJob,
    files,
    deletes,
    error,
    message,  # type: ignore[no-untyped-def]
) -> None:
    with pytest.raises(error, match=message):
        edit(ctx, alice, preview.website_id, files, deletes)
    assert record(ctx, preview.id).edits == 0


def test_an_edit_needs_a_live_preview_that_no_build_is_replacing(
    ctx: Context, alice: ApiToken, preview: BuildJob
) -> None:
    with ctx.session() as session:
        website = session.get(Website, preview.website_id)
        assert website is not None
        website.build_job_id = "a-newer-build"
        session.add(website)
    with pytest.raises(Conflict, match="in progress: edit once it is live"):
        edit(ctx, alice, preview.website_id, {"a.ts": b""})
    with ctx.session() as session:
        site = Website(owner_id=alice.id or 0, name="none", type="vite")
        session.add(site)
        session.flush()
        empty = site.id
    with pytest.raises(Conflict, match="no live preview to edit"):
        edit(ctx, alice, empty, {"a.ts": b""})


def test_the_type_check_of_an_edit_is_kept_on_the_build(
    ctx: Context, alice: ApiToken, preview: BuildJob
) -> None:
    memory(ctx).scripts["npm run typecheck"] = Script(("src/main.ts(1,5): error TS2322: no.",), exit_code=2)
    first = edit(ctx, alice, preview.website_id, {"src/main.ts": b"let a: number = 'x'"})
    assert preview.container_id
    assert ctx.runtime.limits(preview.container_id)["nano_cpus"] == ctx.settings.build_nano_cpus  # boosted
    recheck(ctx, first)
    assert ctx.runtime.limits(preview.container_id)["nano_cpus"] == ctx.settings.nano_cpus  # and back
    check = record(ctx, preview.id).edit_check
    assert check is not None and check["status"] == "failed" and check["edit"] == 1
    assert check["errors"][0] == "type check failed: src/main.ts(1,5): error TS2322: no."
    memory(ctx).scripts["npm run typecheck"] = Script((), exit_code=0)
    second = edit(ctx, alice, preview.website_id, {"src/main.ts": b"let a = 3"})
    recheck(ctx, first)  # an older edit's check finishing late changes nothing
    running = record(ctx, preview.id).edit_check or {}
    assert running.pop("startedAt") > 0 and running == {"edit": 2, "status": "running", "errors": []}
    recheck(ctx, second)
    assert (record(ctx, preview.id).edit_check or {})["status"] == "passed"


def test_a_check_left_running_by_a_stopped_service_is_shown_interrupted() -> None:
    from orchestrator.core.edit_checks import INTERRUPTED, as_shown, begun

    check = begun(3, checked=True, now=1000.0)
    assert as_shown(check, now=1000.0 + 120, timeout=120) == check  # within its timeout and grace
    shown = as_shown(check, now=1000.0 + 200, timeout=120)
    assert shown == {**check, "status": "error", "errors": [INTERRUPTED]}
    done = {"edit": 3, "status": "passed", "errors": []}
    assert as_shown(done, now=10**9, timeout=120) == done and as_shown(None, 0, 120) is None
