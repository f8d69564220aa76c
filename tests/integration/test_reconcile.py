"""The database is the source of truth: a queued build that Redis lost waits again."""

from __future__ import annotations

import io
import os
import time
import zipfile
from pathlib import Path

import pytest
from sqlmodel import select

pytestmark = pytest.mark.integration


def test_a_queued_build_missing_from_redis_is_requeued_and_built(admin, ctx) -> None:
    from orchestrator.scheduling.queue import RQJobs, reconcile
    from orchestrator.state.models import ApiToken, BuildJob, Website

    with ctx.session() as session:
        owner = session.exec(select(ApiToken)).first()
        assert owner is not None and owner.id is not None
        site = Website(owner_id=owner.id, name="lost", type="static")
        session.add(site)
        session.flush()
        build = BuildJob(website_id=site.id, owner_id=owner.id, project_type="static", status="queued")
        session.add(build)
        session.flush()
        site.build_job_id = build.id
        build_id, site_id = build.id, site.id
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("index.html", "<h1>found again</h1>")
    uploads = Path(os.environ["ORCHESTRATOR_DATA_DIR"]) / "uploads"
    uploads.mkdir(parents=True, exist_ok=True)
    (uploads / f"{build_id}.zip").write_bytes(buffer.getvalue())
    admission = ctx.stores.admission
    assert admission.position(build_id) is None and build_id not in admission.active()

    assert build_id in reconcile(ctx, RQJobs(ctx))
    assert build_id not in reconcile(ctx, RQJobs(ctx))  # now held by Redis: not queued twice
    ctx.stores.signals.wake()

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        status = admin.get(f"/api/websites/{site_id}/build-status").json()
        if status["status"] in ("running", "failed"):
            break
        time.sleep(0.3)
    assert status["status"] == "running", status
